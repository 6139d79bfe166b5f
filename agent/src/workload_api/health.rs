//! `grpc.health.v1.Health` on the Workload API socket.
//!
//! The whole server (empty service name) and `SpiffeWorkloadAPI` are
//! `SERVING` once the cache holds a first sync from the server,
//! `NOT_SERVING` before, and again once the server has refused the agent
//! for good (banned, or evicted with no way to attest again: the manager
//! then publishes a not-ready cache and the agent exits). `Watch` is not
//! offered.

use async_trait::async_trait;
use spinel_proto::grpc::health::v1::health_check_response::ServingStatus;
use spinel_proto::grpc::health::v1::health_server::Health;
use spinel_proto::grpc::health::v1::{HealthCheckRequest, HealthCheckResponse};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::cache::{Cache, Snapshot};

/// Service names this server answers for.
const SERVICES: [&str; 2] = ["", "SpiffeWorkloadAPI"];

/// The health service.
#[derive(Debug, Clone)]
pub(crate) struct HealthService {
    cache: Cache,
}

impl HealthService {
    /// Health of the Workload API over `cache`.
    pub(crate) fn new(cache: Cache) -> Self {
        HealthService { cache }
    }
}

fn status_of(snapshot: &Snapshot) -> HealthCheckResponse {
    let status = if snapshot.ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    HealthCheckResponse {
        status: status as i32,
    }
}

fn known(service: &str) -> Result<(), Status> {
    if SERVICES.contains(&service) {
        Ok(())
    } else {
        Err(Status::not_found(format!("unknown service {service:?}")))
    }
}

#[async_trait]
impl Health for HealthService {
    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        known(&request.get_ref().service)?;
        Ok(Response::new(status_of(&self.cache.snapshot())))
    }

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // An endless stream would hold up graceful shutdown; `Check` is
        // what health checkers use.
        Err(Status::unimplemented("Watch is not supported; use Check"))
    }
}
