//! `spinel-agent logger get|set|reset`: the running agent's log level
//! through `spire.api.agent.logger.v1.Logger` on its admin socket
//! (`admin_socket_path`), with the flags and output of SPIRE's server-side
//! `logger` commands (`-level`, `-socketPath`, `-output`; `Logger Level :
//! debug` / `Launch Level : info`). SPIRE 1.13's agent serves no logger
//! API and has no such command: this is Spinel's, on SPIRE's wire.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use spinel_config::logging::{api_level_enum_name, api_level_name, parse_api_level};
use spinel_proto::spire::api::agent::logger::v1::logger_client::LoggerClient;
use spinel_proto::spire::api::agent::logger::v1::{
    GetLoggerRequest, ResetLogLevelRequest, SetLogLevelRequest,
};
use spinel_proto::spire::api::types::Logger;

use super::api::Output;
use super::debug::DEFAULT_ADMIN_SOCKET_PATH;
use crate::workload_client::{status_error, unix_channel, with_timeout};

/// `logger` subcommands.
#[derive(Debug, Subcommand)]
pub enum LoggerCommand {
    /// Gets the logger details.
    Get(CommonArgs),
    /// Sets the logger details.
    Set(SetArgs),
    /// Resets the logger details to the launch level.
    Reset(CommonArgs),
}

/// Flags of every `logger` subcommand.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Path to the agent's admin socket (`admin_socket_path`).
    #[arg(long = "socketPath", default_value = DEFAULT_ADMIN_SOCKET_PATH)]
    pub socket_path: PathBuf,
    /// Desired output format.
    #[arg(long = "output", value_enum, default_value_t = Output::Pretty)]
    pub output: Output,
}

/// `logger set` flags.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// Socket and output.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The new log level, one of (panic, fatal, error, warn, info, debug, trace).
    #[arg(long = "level")]
    pub level: Option<String>,
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// SPIRE's pretty layout of a logger.
pub fn logger_pretty(logger: &Logger) -> anyhow::Result<String> {
    let name = |n: i32| {
        api_level_name(n).with_context(|| format!("the agent returned an undefined level {n}"))
    };
    Ok(format!(
        "Logger Level : {}\nLaunch Level : {}\n\n",
        name(logger.current_level)?,
        name(logger.launch_level)?
    ))
}

fn print(output: Output, logger: &Logger) -> anyhow::Result<()> {
    match output {
        Output::Pretty => print!("{}", logger_pretty(logger)?),
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "current_level": api_level_enum_name(logger.current_level),
                "launch_level": api_level_enum_name(logger.launch_level),
            })
        ),
    }
    Ok(())
}

async fn client(common: &CommonArgs) -> anyhow::Result<LoggerClient<tonic::transport::Channel>> {
    let channel = unix_channel(&common.socket_path, TIMEOUT, "agent admin API")
        .await
        .context("is admin_socket_path set in the agent config?")?;
    Ok(LoggerClient::new(channel))
}

/// Runs a `logger` subcommand.
pub async fn run(cmd: LoggerCommand) -> anyhow::Result<()> {
    let (common, logger) = match cmd {
        LoggerCommand::Get(common) => {
            let what = "error fetching logger";
            let logger = with_timeout(TIMEOUT, what, async {
                client(&common)
                    .await?
                    .get_logger(GetLoggerRequest {})
                    .await
                    .map_err(|s| status_error(what, &s))
            })
            .await?;
            (common, logger)
        }
        LoggerCommand::Set(args) => {
            let level = match args.level.as_deref() {
                None | Some("") => anyhow::bail!("a value (-level) must be set"),
                Some(text) => parse_api_level(text)
                    .with_context(|| format!("the value {text:?} is not a valid setting"))?,
            };
            let what = "failed to set log level";
            let logger = with_timeout(TIMEOUT, what, async {
                client(&args.common)
                    .await?
                    .set_log_level(SetLogLevelRequest { new_level: level })
                    .await
                    .map_err(|s| status_error(what, &s))
            })
            .await?;
            (args.common, logger)
        }
        LoggerCommand::Reset(common) => {
            let what = "failed to reset logger";
            let logger = with_timeout(TIMEOUT, what, async {
                client(&common)
                    .await?
                    .reset_log_level(ResetLogLevelRequest {})
                    .await
                    .map_err(|s| status_error(what, &s))
            })
            .await?;
            (common, logger)
        }
    };
    print(common.output, &logger.into_inner())
}
