//! What every Workload API call shares ([`Shared`]: the cache, the
//! JWT-SVID source, the attestor, the stop signal), and the step every call
//! starts with: attest the caller and match it against a snapshot
//! ([`Shared::view`], giving a [`View`]).
//!
//! `service.rs` (the methods) and `stream.rs` (the update loop) both use
//! it; it imports neither. It holds the responses callers share
//! (`shared.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use spinel_spiffe::{Clock, Selector};
use tokio::sync::watch;
use tonic::Status;

use crate::attestor::workload::{Caller, WorkloadAttestor};
use crate::cache::{Cache, Identity, JwtSvidSource, Snapshot};

use super::caller::{attest_failure, log_denial, no_identity};
use super::explain::SelectorLog;
use super::index::Indexes;
use super::shared::{Encoded, SharedResponses};

/// What every call needs.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The agent's identities and bundles.
    pub cache: Cache,
    /// Where JWT-SVIDs come from.
    pub jwt: Arc<dyn JwtSvidSource>,
    /// Who the caller is.
    pub attestor: Arc<dyn WorkloadAttestor>,
    /// The time, for SVID expiry.
    pub clock: Clock,
    /// Which selector values denial logs may show.
    pub selector_log: SelectorLog,
    /// Set to true to end every open stream.
    pub(super) stop: watch::Sender<bool>,
    /// The latest snapshot's identities by selector.
    pub(super) indexes: Indexes,
    /// X509-SVID responses, one per snapshot and identity set.
    pub(super) x509: SharedResponses<Encoded>,
}

impl Shared {
    /// A receiver that sees `true` once the API is stopping.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// A caller as seen against one snapshot.
#[derive(Debug)]
pub(crate) struct View {
    /// The snapshot.
    pub snapshot: Arc<Snapshot>,
    /// The caller's selectors.
    pub selectors: BTreeSet<Selector>,
    /// Identities whose selectors are all in `selectors`, by entry ID.
    pub identities: Vec<Arc<Identity>>,
}

impl Shared {
    /// Attests `caller` and matches it against `snapshot`.
    pub(crate) async fn view(
        &self,
        caller: &Caller,
        snapshot: Arc<Snapshot>,
    ) -> Result<View, Status> {
        if !snapshot.ready {
            return Err(Status::unavailable(
                "agent is not ready: identities have not been synced from the server yet",
            ));
        }
        let selectors: BTreeSet<Selector> = self
            .attestor
            .attest(caller)
            .await
            .and_then(|selectors| {
                // The selectors describe the caller only if the process
                // that connected is still the one with its pid.
                caller.check_still_connected()?;
                Ok(selectors)
            })
            .map_err(|e| attest_failure(caller, &e))?
            .into_iter()
            .collect();
        let identities = self.indexes.of(&snapshot).matching(&selectors);
        Ok(View {
            snapshot,
            selectors,
            identities,
        })
    }
}

impl View {
    /// `PermissionDenied` (logged) when the caller has no identity.
    pub(crate) fn require_identity(
        &self,
        caller: &Caller,
        method: &str,
        log: &SelectorLog,
    ) -> Result<(), Status> {
        if self.identities.is_empty() {
            log_denial(caller, method, &self.selectors, &self.snapshot, log);
            return Err(no_identity());
        }
        Ok(())
    }
}
