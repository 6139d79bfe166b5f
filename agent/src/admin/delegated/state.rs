//! What every Delegated Identity call shares ([`State`]), and the two
//! steps every call starts with: authorize the caller as a delegate
//! ([`State::authorize`], giving a [`Delegate`] that streams check again
//! on every update) and find the workload it asks about
//! ([`State::target`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use spinel_spiffe::Selector;
use tonic::{Request, Status};

use crate::attestor::workload::Caller;
use crate::cache::Snapshot;
use crate::workload_api::WorkloadApi;

use super::authorize::{Delegates, Target, NOT_A_DELEGATE};
use super::response::BundleMessages;

/// What every call needs.
#[derive(Debug)]
pub(crate) struct State {
    /// The Workload API's attestor, cache, index and JWT-SVID source.
    pub api: WorkloadApi,
    /// `agent.authorized_delegates`.
    pub delegates: Delegates,
    /// The bundle messages, shared by every stream.
    pub bundles: BundleMessages,
}

/// A caller authorized as a delegate: the process that connected and its
/// selectors when the call began (kept, as SPIRE keeps them, to check the
/// authorization again against every new snapshot).
#[derive(Debug)]
pub(crate) struct Delegate {
    caller: Caller,
    selectors: BTreeSet<Selector>,
}

/// The workload a call is about: its selectors and, when the agent
/// attested it by pid, its process (pinned at attestation).
#[derive(Debug)]
pub(crate) struct Workload {
    pub selectors: BTreeSet<Selector>,
    pub process: Option<Caller>,
}

impl Workload {
    /// Fails once a workload named by pid has exited: its pid may now
    /// name another process, so nothing more is sent for it.
    pub(crate) fn check_alive(&self) -> Result<(), Status> {
        match &self.process {
            Some(process) => process
                .check_still_connected()
                .map_err(|_| Status::not_found(format!("process {} has exited", process.pid))),
            None => Ok(()),
        }
    }
}

impl State {
    /// The latest snapshot, or `Unavailable` before the first sync.
    pub(crate) fn ready_snapshot(&self) -> Result<Arc<Snapshot>, Status> {
        let snapshot = self.api.cache().snapshot();
        if !snapshot.ready {
            return Err(Status::unavailable(
                "agent is not ready: identities have not been synced from the server yet",
            ));
        }
        Ok(snapshot)
    }

    /// Attests the process that made `request` (pinned when it connected)
    /// and checks that one of the entries it matches has an authorized
    /// delegate's SPIFFE ID; otherwise `PermissionDenied`, logged.
    pub(crate) async fn authorize<T>(
        &self,
        request: &Request<T>,
        method: &str,
    ) -> Result<Delegate, Status> {
        if self.delegates.is_empty() {
            tracing::warn!(
                method,
                "Delegated Identity API call refused: agent.authorized_delegates is empty"
            );
            return Err(Status::permission_denied(NOT_A_DELEGATE));
        }
        let (caller, selectors) = self.api.attest_peer(request).await?;
        let delegate = Delegate { caller, selectors };
        let snapshot = self.ready_snapshot()?;
        self.recheck(&delegate, &snapshot, method)?;
        Ok(delegate)
    }

    /// Checks `delegate` again against `snapshot`: still connected, and
    /// still holding an authorized delegate's identity.
    pub(crate) fn recheck(
        &self,
        delegate: &Delegate,
        snapshot: &Snapshot,
        method: &str,
    ) -> Result<(), Status> {
        let caller = &delegate.caller;
        caller
            .check_still_connected()
            .map_err(|_| Status::permission_denied("no identity issued"))?;
        let identities = self.api.matching(snapshot, &delegate.selectors);
        match self.delegates.authorize(&identities) {
            Ok(id) => {
                tracing::debug!(method, pid = caller.pid, delegate_id = %id, "caller authorized as a delegate");
                Ok(())
            }
            Err(status) => {
                tracing::warn!(
                    method,
                    pid = caller.pid,
                    uid = caller.uid,
                    gid = caller.gid,
                    entries = identities.len(),
                    first_id = identities
                        .first()
                        .map(|i| i.entry.spiffe_id.to_string())
                        .unwrap_or_default(),
                    reason = status.message(),
                    "Delegated Identity API call refused"
                );
                Err(status)
            }
        }
    }

    /// The workload `target` names: its selectors as given, or those the
    /// agent's workload attestors find for its pid.
    pub(crate) async fn target(&self, target: Target) -> Result<Workload, Status> {
        match target {
            Target::Selectors(selectors) => Ok(Workload {
                selectors,
                process: None,
            }),
            Target::Pid(pid) => {
                let process = Caller::of_process(pid)
                    .map_err(|e| Status::not_found(format!("process {pid}: {e}")))?;
                let selectors = self.api.attest_process(&process).await?;
                Ok(Workload {
                    selectors,
                    process: Some(process),
                })
            }
        }
    }
}
