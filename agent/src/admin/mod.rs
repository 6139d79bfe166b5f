//! The agent's admin socket (`admin_socket_path`, SPIRE's key).
//!
//! A second Unix socket, separate from the Workload API's and open only to
//! its owner (mode 0600): whoever can open it may attest any process on
//! the node and see full selector values. It serves
//! `spinel.agent.debug.v1.Debug` (Spinel's own, for `spinel-agent debug
//! explain -pid N`), `spire.api.agent.logger.v1.Logger` (`logger.rs`, for
//! `spinel-agent logger get|set|reset`), SPIRE's Delegated Identity API
//! (`spire.api.agent.delegatedidentity.v1`, `delegated/`: for the callers
//! `agent.authorized_delegates` lists) and `grpc.health.v1.Health`.
//!
//! `ExplainWorkload` attests the process the way a Workload API call from
//! it would and answers with its selectors, the identities they give it
//! and, when none, the closest entries with the selectors each lacks:
//! the answer to "why does my pod get no identity issued?".

pub mod delegated;
mod logger;

pub use delegated::{DelegatedIdentityService, Delegates};
pub use logger::LoggerService;

use std::future::Future;
use std::path::Path;

use async_trait::async_trait;
use spinel_proto::grpc::health::v1::health_server::HealthServer;
use spinel_proto::spinel::agent::debug::v1::debug_server::{Debug, DebugServer};
use spinel_proto::spinel::agent::debug::v1::{
    ExplainWorkloadRequest, ExplainWorkloadResponse, Match,
};
use spinel_transport::unix_socket::SocketModes;
use spinel_transport::ConnectionLimits;
use tokio::net::UnixListener;
use tonic::{Request, Response, Status};

use crate::attestor::workload::Caller;
use crate::workload_api::{self, EntryMatch, WorkloadApi};

/// The debug service over the agent's Workload API state.
#[derive(Debug, Clone)]
pub struct DebugService {
    api: WorkloadApi,
}

impl DebugService {
    /// A debug service attesting through `api`'s attestor and cache.
    pub fn new(api: WorkloadApi) -> Self {
        DebugService { api }
    }
}

fn to_match(m: EntryMatch) -> Match {
    Match {
        entry_id: m.entry_id,
        spiffe_id: m.spiffe_id,
        missing: m.missing.iter().map(ToString::to_string).collect(),
    }
}

#[async_trait]
impl Debug for DebugService {
    async fn explain_workload(
        &self,
        request: Request<ExplainWorkloadRequest>,
    ) -> Result<Response<ExplainWorkloadResponse>, Status> {
        let pid = request.into_inner().pid;
        if pid <= 0 {
            return Err(Status::invalid_argument(format!(
                "pid must be a positive process ID, not {pid}"
            )));
        }
        let caller = Caller::of_process(pid)
            .map_err(|e| Status::not_found(format!("process {pid}: {e}")))?;
        let mut response = ExplainWorkloadResponse {
            uid: caller.uid,
            gid: caller.gid,
            ready: self.api.cache().snapshot().ready,
            ..ExplainWorkloadResponse::default()
        };
        match self.api.explain(&caller).await {
            Ok((snapshot, selectors, explanation)) => {
                response.ready = snapshot.ready;
                response.selectors = selectors.iter().map(ToString::to_string).collect();
                response.identities = explanation.identities.into_iter().map(to_match).collect();
                response.closest = explanation.closest.into_iter().map(to_match).collect();
            }
            Err(e) => response.attestation_error = e.to_string(),
        }
        Ok(Response::new(response))
    }
}

/// The admin socket's connection limits: only its owner can connect, so
/// these only keep a runaway script from exhausting the agent.
pub const LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 64,
    max_connections_per_peer: 64,
    first_request_timeout: std::time::Duration::from_secs(10),
};

/// Binds the admin socket at `socket_path` (replacing a stale one), open
/// only to its owner: mode 0600 from the moment it exists (bound in a
/// private directory and renamed into place; see
/// [`spinel_transport::unix_socket`]), its directory created 0700 when
/// missing, refused when another user can change it.
pub fn bind(socket_path: &Path) -> Result<UnixListener, workload_api::Error> {
    workload_api::bind_with(socket_path, SocketModes::AGENT_ADMIN)
}

/// Serves the admin API on `listener` (bound at `socket_path` by [`bind`])
/// until `shutdown` completes, then removes the socket. The Delegated
/// Identity API serves the callers whose identities `delegates` lists.
pub async fn serve(
    listener: UnixListener,
    socket_path: &Path,
    api: WorkloadApi,
    delegates: Delegates,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), workload_api::Error> {
    tracing::info!(socket = %socket_path.display(), "serving the admin API");
    let health = HealthServer::new(workload_api::health_service(api.cache().clone()));
    let incoming = spinel_transport::unix::incoming(listener, LIMITS, "the admin socket");
    let delegated = DelegatedIdentityService::new(api.clone(), delegates).into_server();
    let result = spinel_transport::server::builder(false)
        .add_service(DebugServer::new(DebugService::new(api)))
        .add_service(delegated)
        .add_service(health)
        .add_service(
            spinel_proto::spire::api::agent::logger::v1::logger_server::LoggerServer::new(
                LoggerService,
            ),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    if let Err(e) = std::fs::remove_file(socket_path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(socket = %socket_path.display(), error = %e, "could not remove the admin socket");
        }
    }
    result.map_err(|source| workload_api::Error::Serve {
        path: socket_path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// How many times the socket is bound while another user tries to get
    /// in. The code this replaced (bind, chmod 0777, chmod 0600) let the
    /// other user in within 250 to 1,400 rounds on a loaded 2-core machine.
    const ROUNDS: usize = 3_000;

    /// The admin socket is never open to another user, not for an instant:
    /// a second user connecting as fast as it can while the socket is bound
    /// again and again never gets in.
    #[tokio::test]
    async fn the_admin_socket_is_never_open_to_another_user() {
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("not root: acting as another user needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // The other user may reach the directory, as in a real deployment.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("admin.sock");
        let (stop, got_in) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let racer = {
            let (path, stop, got_in) = (path.clone(), stop.clone(), got_in.clone());
            std::thread::spawn(move || {
                use rustix::thread::{set_thread_gid, set_thread_groups, set_thread_uid};
                set_thread_groups(&[]).unwrap();
                set_thread_gid(rustix::process::Gid::from_raw(65534)).unwrap();
                set_thread_uid(rustix::process::Uid::from_raw(65534)).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                        got_in.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            })
        };
        for _ in 0..ROUNDS {
            let listener = bind(&path).unwrap();
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            drop(listener);
            if got_in.load(Ordering::Relaxed) {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        racer.join().unwrap();
        assert!(
            !got_in.load(Ordering::Relaxed),
            "another user connected to the admin socket"
        );
    }
}
