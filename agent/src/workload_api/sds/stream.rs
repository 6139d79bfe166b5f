//! `StreamSecrets` and `FetchSecrets`: a caller's resources from a
//! snapshot, and the loop of one stream.
//!
//! The stream's body is the loop: no task and no channel per stream. It
//! waits for the client's next request, a new cache snapshot, the earliest
//! expiry among the certificates it sent, or the agent stopping. On each
//! request or snapshot the caller is attested again (the process bound at
//! connect, as for every Workload API call) and matched against the
//! snapshot; what its names select is encoded once per snapshot and set
//! (`resources.rs`) and sent when [`Session`] says so. A refusal (the
//! caller gone, a name it may not have) ends the stream with that status,
//! as in SPIRE; the client ending its side ends it with OK.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use spinel_proto::envoy::service::discovery::v3::DiscoveryRequest;
use tokio::sync::watch;
use tonic::Status;

use crate::attestor::workload::Caller;
use crate::cache::Snapshot;

use super::super::state::Shared;
use super::config::SdsConfig;
use super::resources::{ResourceTable, Resources, SECRET_TYPE_URL};
use super::select::{select, Holdings, Pick};
use super::session::{Reply, Session, Stamp};
use super::wire::{self, Requests};

/// What every SDS call shares.
#[derive(Debug)]
pub(crate) struct Sds {
    /// The Workload API's state: cache, attestor, clock, stop signal.
    pub shared: Arc<Shared>,
    /// The `sds` settings.
    pub config: Arc<SdsConfig>,
    /// Encoded resources, shared between streams.
    pub table: ResourceTable,
}

impl Sds {
    /// Attests `caller`, matches it against `snapshot` and encodes what
    /// `names` select; also when to look again (the earliest NotAfter of
    /// the certificates picked).
    pub(crate) async fn resources(
        &self,
        caller: &Caller,
        snapshot: Arc<Snapshot>,
        names: &[String],
        spiffe_validation: bool,
    ) -> Result<(Arc<Resources>, Option<SystemTime>), Status> {
        let view = self.shared.view(caller, snapshot).await?;
        let now = self.shared.clock.now();
        let held = Holdings {
            own: &view.snapshot.bundle,
            federated: view.snapshot.federated_for(&view.identities),
            // Never an expired certificate, nor an entry without one yet.
            identities: view
                .identities
                .iter()
                .filter(|i| !i.svid.chain.is_empty() && i.svid.not_after > now)
                .cloned()
                .collect(),
        };
        let picks = select(names, &held, &self.config, spiffe_validation)?;
        let wake = picks
            .iter()
            .filter_map(|p| match p {
                Pick::Certificate { identity, .. } => Some(identity.svid.not_after),
                _ => None,
            })
            .min();
        let resources = self
            .table
            .get(view.snapshot.generation, &picks, spiffe_validation);
        Ok((resources, wake))
    }

    /// `FetchSecrets`: the resources `request` names, without version or
    /// nonce (as SPIRE answers).
    pub(crate) async fn fetch(
        &self,
        caller: &Caller,
        request: &DiscoveryRequest,
    ) -> Result<(Bytes, Bytes), Status> {
        let mut session = Session::default();
        session.on_request(request, &self.config, caller.pid);
        let names = super::select::normalize(&request.resource_names);
        let spiffe = session.spiffe_validation(&self.config);
        let snapshot = self.shared.cache.snapshot();
        let (resources, _) = self.resources(caller, snapshot, &names, spiffe).await?;
        let stamp = Stamp {
            version: String::new(),
            nonce: String::new(),
        };
        let head = wire::head(&stamp, type_url(request), &resources);
        tracing::debug!(
            pid = caller.pid,
            count = resources.count(),
            "sending FetchSecrets response"
        );
        Ok((head, resources.bytes().clone()))
    }
}

/// The type URL of a response: the request's, or the Secret's when the
/// request names none.
fn type_url(request: &DiscoveryRequest) -> &str {
    if request.type_url.is_empty() || request.type_url.len() > MAX_TYPE_URL {
        SECRET_TYPE_URL
    } else {
        &request.type_url
    }
}

/// The longest type URL a stream echoes (longer ones get the Secret's).
const MAX_TYPE_URL: usize = 256;

/// What the stream sends next.
pub(crate) enum Out {
    /// A response: its head, then the shared resources.
    Send(Bytes, Bytes),
    /// The end, with this status.
    End(Status),
}

/// One open `StreamSecrets`.
pub(crate) struct SecretStream {
    sds: Arc<Sds>,
    caller: Caller,
    requests: Requests,
    changes: watch::Receiver<Arc<Snapshot>>,
    stop: watch::Receiver<bool>,
    session: Session,
    /// The type URL of the last request that named one.
    type_url: Option<String>,
    wake_at: Option<SystemTime>,
    /// The second half of a response being sent.
    pub pending: Option<Bytes>,
}

impl SecretStream {
    /// Attests the caller (a refusal is the call's status) and readies the
    /// loop; nothing is sent before the first request.
    pub(crate) async fn open(
        sds: Arc<Sds>,
        caller: Caller,
        requests: Requests,
    ) -> Result<SecretStream, Status> {
        let mut changes = sds.shared.cache.subscribe();
        let snapshot = changes.borrow_and_update().clone();
        sds.shared.view(&caller, snapshot).await?;
        let stop = sds.shared.stop_signal();
        Ok(SecretStream {
            sds,
            caller,
            requests,
            changes,
            stop,
            session: Session::default(),
            type_url: None,
            wake_at: None,
            pending: None,
        })
    }

    /// Waits for what to send next.
    pub(crate) async fn next(&mut self) -> Out {
        loop {
            let wake = self.wake_at.map(|at| self.sds.shared.clock.instant_at(at));
            let respond = tokio::select! {
                _ = stopped(&mut self.stop) => {
                    return Out::End(Status::unavailable("the agent is shutting down"));
                }
                request = self.requests.next() => match request {
                    None => return Out::End(Status::ok("")),
                    Some(Err(status)) => return Out::End(status),
                    Some(Ok(request)) => self.take(&request),
                },
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return Out::End(Status::unavailable("the agent cache is gone"));
                    }
                    false
                }
                _ = sleep_until(wake) => false,
            };
            let Some(names) = self.session.names().map(<[String]>::to_vec) else {
                // Nothing asked for yet.
                continue;
            };
            let snapshot = self.changes.borrow_and_update().clone();
            let spiffe = self.session.spiffe_validation(&self.sds.config);
            let (resources, wake_at) = match self
                .sds
                .resources(&self.caller, snapshot, &names, spiffe)
                .await
            {
                Ok(found) => found,
                Err(status) => return Out::End(status),
            };
            self.wake_at = wake_at;
            if !respond && !self.session.changes(&resources) {
                continue;
            }
            let stamp = self.session.send(resources.clone());
            let type_url = self.type_url.as_deref().unwrap_or(SECRET_TYPE_URL);
            tracing::debug!(
                pid = self.caller.pid,
                version = %stamp.version,
                nonce = %stamp.nonce,
                count = resources.count(),
                "sending StreamSecrets response"
            );
            return Out::Send(
                wire::head(&stamp, type_url, &resources),
                resources.bytes().clone(),
            );
        }
    }

    /// Takes a request: true when it is to be answered.
    fn take(&mut self, request: &DiscoveryRequest) -> bool {
        // The type URL is echoed as SPIRE does, within reason: a stream
        // keeps no more than a type URL's worth of it.
        if !request.type_url.is_empty()
            && request.type_url.len() <= MAX_TYPE_URL
            && self.type_url.as_deref() != Some(request.type_url.as_str())
        {
            self.type_url = Some(request.type_url.clone());
        }
        self.session
            .on_request(request, &self.sds.config, self.caller.pid)
            == Reply::Respond
    }
}

/// Completes once the API is stopping (or its stop switch is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
