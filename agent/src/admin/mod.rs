//! The agent's admin socket (`admin_socket_path`, SPIRE's key).
//!
//! A second Unix socket, separate from the Workload API's and open only to
//! its owner (mode 0600): whoever can open it may attest any process on
//! the node and see full selector values. It serves
//! `spinel.agent.debug.v1.Debug` (Spinel's own, for `spinel-agent debug
//! explain -pid N`), `spire.api.agent.logger.v1.Logger` (`logger.rs`, for
//! `spinel-agent logger get|set|reset`) and `grpc.health.v1.Health`.
//!
//! `ExplainWorkload` attests the process the way a Workload API call from
//! it would and answers with its selectors, the identities they give it
//! and, when none, the closest entries with the selectors each lacks:
//! the answer to "why does my pod get no identity issued?".

mod logger;

pub use logger::LoggerService;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use async_trait::async_trait;
use spinel_proto::grpc::health::v1::health_server::HealthServer;
use spinel_proto::spinel::agent::debug::v1::debug_server::{Debug, DebugServer};
use spinel_proto::spinel::agent::debug::v1::{
    ExplainWorkloadRequest, ExplainWorkloadResponse, Match,
};
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
/// only to its owner.
pub fn bind(socket_path: &Path) -> Result<UnixListener, workload_api::Error> {
    let listener = workload_api::bind(socket_path)?;
    std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o600)).map_err(
        |source| workload_api::Error::Permissions {
            path: socket_path.to_owned(),
            source,
        },
    )?;
    Ok(listener)
}

/// Serves the admin API on `listener` (bound at `socket_path` by [`bind`])
/// until `shutdown` completes, then removes the socket.
pub async fn serve(
    listener: UnixListener,
    socket_path: &Path,
    api: WorkloadApi,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), workload_api::Error> {
    tracing::info!(socket = %socket_path.display(), "serving the admin API");
    let health = HealthServer::new(workload_api::health_service(api.cache().clone()));
    let incoming = spinel_transport::unix::incoming(listener, LIMITS, "the admin socket");
    let result = spinel_transport::server::builder(false)
        .add_service(DebugServer::new(DebugService::new(api)))
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
