//! `spire.api.agent.logger.v1.Logger` on the admin socket: the agent's log
//! level, read and changed at run time (`spinel-agent logger
//! get|set|reset`). Whoever can open the admin socket (its owner) may call
//! it; the calls themselves are [`spinel_config::logging::api`]'s.

use spinel_config::logging::api::LoggerApi;
use spinel_proto::spire::api::agent::logger::v1::logger_server::Logger;
use spinel_proto::spire::api::agent::logger::v1::{
    GetLoggerRequest, ResetLogLevelRequest, SetLogLevelRequest,
};
use spinel_proto::spire::api::types;
use tonic::{Request, Response, Status};

const API: LoggerApi = LoggerApi::new("spinel-agent");

/// The logger service.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoggerService;

#[tonic::async_trait]
impl Logger for LoggerService {
    async fn get_logger(
        &self,
        _request: Request<GetLoggerRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        API.get().map(Response::new)
    }

    async fn set_log_level(
        &self,
        request: Request<SetLogLevelRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        API.set(request.get_ref().new_level).map(Response::new)
    }

    async fn reset_log_level(
        &self,
        _request: Request<ResetLogLevelRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        API.reset().map(Response::new)
    }
}
