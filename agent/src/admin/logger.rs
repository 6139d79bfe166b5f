//! `spire.api.agent.logger.v1.Logger` on the admin socket: the agent's log
//! level, read and changed at run time (`spinel-agent logger
//! get|set|reset`). Whoever can open the admin socket (its owner) may call
//! it.
//!
//! The level is the one of the subscriber `spinel-agent run` installed
//! ([`spinel_config::logging::level_handle`]); without it (an agent run
//! in-process) the calls answer `FailedPrecondition`.

use spinel_config::logging::{api_level, level_from_api, level_handle, LevelHandle};
use spinel_proto::spire::api::agent::logger::v1::logger_server::Logger;
use spinel_proto::spire::api::agent::logger::v1::{
    GetLoggerRequest, ResetLogLevelRequest, SetLogLevelRequest,
};
use spinel_proto::spire::api::types;
use tonic::{Request, Response, Status};

/// The logger service.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoggerService;

fn handle() -> Result<LevelHandle, Status> {
    level_handle()
        .ok_or_else(|| Status::failed_precondition("logging was not set up by `spinel-agent run`"))
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
        _request: Request<GetLoggerRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        Ok(Response::new(logger(&handle()?)))
    }

    async fn set_log_level(
        &self,
        request: Request<SetLogLevelRequest>,
    ) -> Result<Response<types::Logger>, Status> {
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
        _request: Request<ResetLogLevelRequest>,
    ) -> Result<Response<types::Logger>, Status> {
        let handle = handle()?;
        handle.reset().map_err(Status::internal)?;
        tracing::info!(launch_level = %handle.launch(), "Logger level reset");
        Ok(Response::new(logger(&handle)))
    }
}
