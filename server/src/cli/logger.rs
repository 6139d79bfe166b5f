//! `spinel-server logger get|set|reset`: the running server's log level
//! through `spire.api.server.logger.v1.Logger` on the admin socket, with
//! SPIRE's flags (`-level`, `-socketPath`, `-output`) and output
//! (`Logger Level : debug` / `Launch Level : info`).

use spinel_config::logging::{api_level_name, parse_api_level};
use spinel_proto::spire::api::server::logger::v1::logger_client::LoggerClient;
use spinel_proto::spire::api::server::logger::v1::{
    GetLoggerRequest, ResetLogLevelRequest, SetLogLevelRequest,
};
use spinel_proto::spire::api::types::Logger;

use super::admin_client::{connect_admin, AdminArgs, AdminClientError, OutputFormat};
use super::output::print_proto_json;

/// `logger` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LoggerCommand {
    /// Gets the logger details.
    Get(AdminArgs),
    /// Sets the logger details.
    Set(SetArgs),
    /// Resets the logger details to the launch level.
    Reset(AdminArgs),
}

/// `logger set` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct SetArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The new log level, one of (panic, fatal, error, warn, info, debug, trace).
    #[arg(long = "level", value_name = "LEVEL")]
    pub level: Option<String>,
}

/// SPIRE's pretty layout of a logger.
pub fn logger_pretty(logger: &Logger) -> Result<String, AdminClientError> {
    let name = |n: i32, what: &str| {
        api_level_name(n).ok_or_else(|| {
            AdminClientError::Output(format!("the server returned an undefined {what} level {n}"))
        })
    };
    Ok(format!(
        "Logger Level : {}\nLaunch Level : {}\n\n",
        name(logger.current_level, "current")?,
        name(logger.launch_level, "launch")?
    ))
}

fn print(output: OutputFormat, logger: &Logger) -> Result<(), AdminClientError> {
    match output {
        OutputFormat::Pretty => {
            print!("{}", logger_pretty(logger)?);
            Ok(())
        }
        OutputFormat::Json => print_proto_json(logger, "spire.api.types.Logger"),
    }
}

/// Runs a `logger` subcommand.
pub async fn run(cmd: LoggerCommand) -> anyhow::Result<()> {
    match cmd {
        LoggerCommand::Get(common) => {
            let logger = client(&common)
                .await?
                .get_logger(GetLoggerRequest {})
                .await
                .map_err(|s| AdminClientError::rpc_while("error fetching logger", s))?
                .into_inner();
            print(common.output, &logger)?;
        }
        LoggerCommand::Set(args) => {
            let level = match args.level.as_deref() {
                None | Some("") => {
                    return Err(AdminClientError::usage("a value (-level) must be set").into())
                }
                Some(text) => parse_api_level(text).ok_or_else(|| {
                    AdminClientError::usage(format!("the value {text:?} is not a valid setting"))
                })?,
            };
            let logger = client(&args.common)
                .await?
                .set_log_level(SetLogLevelRequest { new_level: level })
                .await
                .map_err(|s| AdminClientError::rpc_while("failed to set log level", s))?
                .into_inner();
            print(args.common.output, &logger)?;
        }
        LoggerCommand::Reset(common) => {
            let logger = client(&common)
                .await?
                .reset_log_level(ResetLogLevelRequest {})
                .await
                .map_err(|s| AdminClientError::rpc_while("failed to reset logger", s))?
                .into_inner();
            print(common.output, &logger)?;
        }
    }
    Ok(())
}

async fn client(
    common: &AdminArgs,
) -> Result<LoggerClient<tonic::transport::Channel>, AdminClientError> {
    Ok(LoggerClient::new(connect_admin(&common.socket_path).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_uses_logrus_names() {
        let text = logger_pretty(&Logger {
            current_level: 4,
            launch_level: 5,
        })
        .unwrap();
        assert_eq!(text, "Logger Level : warning\nLaunch Level : info\n\n");
        assert!(logger_pretty(&Logger::default()).is_err());
    }
}
