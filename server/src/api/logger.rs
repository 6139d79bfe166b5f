//! `spire.api.server.logger.v1.Logger`: the server's log level, read and
//! changed at run time (`spinel-server logger get|set|reset`). Local
//! callers only, as in SPIRE.
//!
//! The level is the one of the subscriber `spinel-server run` installed
//! ([`spinel_config::logging::level_handle`]); a server started in-process
//! without it answers `FailedPrecondition`.

use std::sync::Arc;

use spinel_config::logging::{api_level, level_from_api, level_handle, LevelHandle};
use spinel_proto::spire::api::server::logger::v1::logger_server::Logger;
use spinel_proto::spire::api::server::logger::v1::{
    GetLoggerRequest, ResetLogLevelRequest, SetLogLevelRequest,
};
use spinel_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::{method, ApiState};

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

fn handle() -> Result<LevelHandle, Status> {
    level_handle()
        .ok_or_else(|| Status::failed_precondition("logging was not set up by `spinel-server run`"))
}

fn logger(handle: &LevelHandle) -> types::Logger {
    types::Logger {
        current_level: api_level(handle.current()),
        launch_level: api_level(handle.launch()),
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
        Ok(Response::new(logger(&handle()?)))
    }

    async fn set_log_level(
        &self,
        request: Request<SetLogLevelRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        self.state
            .authorize(request.extensions(), method::SET_LOG_LEVEL)
            .await?;
        let n = request.get_ref().new_level;
        let level = level_from_api(n).ok_or_else(|| {
            Status::invalid_argument(format!(
                "newLevel value cannot be {n} (PANIC, FATAL, ERROR, WARN, INFO, DEBUG or TRACE)"
            ))
        })?;
        let handle = handle()?;
        handle.set(level).map_err(Status::internal)?;
        tracing::info!(new_level = %level, "Logger level set");
        Ok(Response::new(logger(&handle)))
    }

    async fn reset_log_level(
        &self,
        request: Request<ResetLogLevelRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        self.state
            .authorize(request.extensions(), method::RESET_LOG_LEVEL)
            .await?;
        let handle = handle()?;
        handle.reset().map_err(Status::internal)?;
        tracing::info!(launch_level = %handle.launch(), "Logger level reset");
        Ok(Response::new(logger(&handle)))
    }
}
