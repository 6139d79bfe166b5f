//! The core of SPIRE's Logger API, which both binaries serve
//! (`spire.api.server.logger.v1.Logger` on the server's admin socket,
//! `spire.api.agent.logger.v1.Logger` on the agent's): read, set and reset
//! the level of the subscriber `run` installed ([`super::level_handle`]).
//! The two services differ only in who may call them, which they check
//! before calling in here.
//!
//! Without a level handle (a process that did not set logging up, e.g. a
//! server or agent started in-process by a test) each call answers
//! `FailedPrecondition`.

use spinel_proto::spire::api::types;
use tonic::Status;

use super::{api_level, level_from_api, level_handle, LevelHandle};

/// The Logger API of one program; `program` names it in errors
/// (`spinel-server`, `spinel-agent`).
#[derive(Debug, Clone, Copy)]
pub struct LoggerApi {
    program: &'static str,
}

impl LoggerApi {
    /// The API of `program`.
    pub const fn new(program: &'static str) -> Self {
        LoggerApi { program }
    }

    /// `GetLogger`: the current and the launch level.
    pub fn get(&self) -> Result<types::Logger, Status> {
        Ok(logger(&self.handle()?))
    }

    /// `SetLogLevel`: `new_level` is a `spire.api.types.LogLevel` number.
    pub fn set(&self, new_level: i32) -> Result<types::Logger, Status> {
        let level = level_from_api(new_level).ok_or_else(|| {
            Status::invalid_argument(format!(
                "newLevel value cannot be {new_level} (PANIC, FATAL, ERROR, WARN, INFO, DEBUG or TRACE)"
            ))
        })?;
        let handle = self.handle()?;
        handle.set(level).map_err(Status::internal)?;
        tracing::info!(new_level = %level, "Logger level set");
        Ok(logger(&handle))
    }

    /// `ResetLogLevel`: back to the level the program was launched with.
    pub fn reset(&self) -> Result<types::Logger, Status> {
        let handle = self.handle()?;
        handle.reset().map_err(Status::internal)?;
        tracing::info!(launch_level = %handle.launch(), "Logger level reset");
        Ok(logger(&handle))
    }

    fn handle(&self) -> Result<LevelHandle, Status> {
        level_handle().ok_or_else(|| {
            Status::failed_precondition(format!("logging was not set up by `{} run`", self.program))
        })
    }
}

fn logger(handle: &LevelHandle) -> types::Logger {
    types::Logger {
        current_level: api_level(handle.current()),
        launch_level: api_level(handle.launch()),
    }
}
