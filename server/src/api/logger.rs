//! `spire.api.server.logger.v1.Logger`: the server's log level, read and
//! changed at run time (`spinel-server logger get|set|reset`). Local
//! callers only, as in SPIRE; the calls themselves are
//! [`spinel_config::logging::api`]'s.

use std::sync::Arc;

use spinel_config::logging::api::LoggerApi;
use spinel_proto::spire::api::server::logger::v1::logger_server::Logger;
use spinel_proto::spire::api::server::logger::v1::{
    GetLoggerRequest, ResetLogLevelRequest, SetLogLevelRequest,
};
use spinel_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::{method, ApiState};

const API: LoggerApi = LoggerApi::new("spinel-server");

/// The logger service.
#[derive(Debug)]
pub struct LoggerService {
    state: Arc<ApiState>,
}

impl LoggerService {
    /// The service over the shared API state (for authorization).
    pub fn new(state: Arc<ApiState>) -> Self {
        LoggerService { state }
    }
}

#[tonic::async_trait]
impl Logger for LoggerService {
    async fn get_logger(
        &self,
        request: Request<GetLoggerRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        self.state
            .authorize(request.extensions(), method::GET_LOGGER)
            .await?;
        API.get().map(Response::new)
    }

    async fn set_log_level(
        &self,
        request: Request<SetLogLevelRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        self.state
            .authorize(request.extensions(), method::SET_LOG_LEVEL)
            .await?;
        API.set(request.get_ref().new_level).map(Response::new)
    }

    async fn reset_log_level(
        &self,
        request: Request<ResetLogLevelRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        self.state
            .authorize(request.extensions(), method::RESET_LOG_LEVEL)
            .await?;
        API.reset().map(Response::new)
    }
}
