//! `grpc.health.v1.Health` on the admin socket: `Check` answers `SERVING`
//! while the server runs and its datastore answers. The server as a whole
//! is the empty service name; each served API may also be asked for by
//! name. While the database cannot be reached the server is degraded: it
//! still serves agents from memory (the server, Agent, SVID and Bundle
//! APIs answer `SERVING`), but the Entry API answers `NOT_SERVING`, since
//! registration changes are refused. `Watch` is not offered.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use spinel_proto::grpc::health::v1::{
    health_check_response::ServingStatus, health_server::Health, HealthCheckRequest,
    HealthCheckResponse,
};
use tonic::{Request, Response, Status};

use super::auth::method;
use super::{ApiState, ServerHealth};

/// Service names `Check` knows, besides "" (the whole server).
const SERVICES: &[&str] = &[
    "spire.api.server.agent.v1.Agent",
    "spire.api.server.bundle.v1.Bundle",
    ENTRY_SERVICE,
    "spire.api.server.svid.v1.SVID",
];

/// The Entry API: not serving while the database cannot be reached.
pub const ENTRY_SERVICE: &str = "spire.api.server.entry.v1.Entry";

/// The health service.
#[derive(Debug, Clone)]
pub struct HealthService {
    state: Arc<ApiState>,
}

impl HealthService {
    /// The service over `state`.
    pub fn new(state: Arc<ApiState>) -> Self {
        HealthService { state }
    }
}

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::HEALTH_CHECK)
            .await?;
        let service = request.get_ref().service.as_str();
        if !service.is_empty() && !SERVICES.contains(&service) {
            return Err(Status::not_found(format!("unknown service {service:?}")));
        }
        let status = match self.state.health().await {
            ServerHealth::Serving => ServingStatus::Serving,
            ServerHealth::Degraded(_) if service != ENTRY_SERVICE => ServingStatus::Serving,
            ServerHealth::Degraded(_) | ServerHealth::Down(_) => ServingStatus::NotServing,
        };
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.state
            .authorize(request.extensions(), method::HEALTH_WATCH)
            .await?;
        Err(Status::unimplemented("Watch is not supported; use Check"))
    }
}
