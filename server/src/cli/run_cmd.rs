//! `spinel-server run` and `spinel-server healthcheck`, with SPIRE's flags.
//!
//! `run` loads the config file, lets the flags override it (`-bindAddress`,
//! `-serverPort`, `-socketPath`, `-trustDomain`, `-dataDir`, `-logLevel`,
//! `-logFormat`, `-logFile`), sets up logging, and serves until SIGINT or
//! SIGTERM (see [`crate::run`]).
//!
//! `validate` takes `run`'s flags, loads and checks the config (and the
//! UpstreamAuthority's files) without starting anything, and prints
//! SPIRE's `SPIRE server configuration file is valid.` (exit 0) or
//! `SPIRE server configuration file is invalid: <why>` on stderr (exit 1).
//!
//! `healthcheck` asks the server's `grpc.health.v1.Health/Check` over the
//! admin socket and prints `Server is healthy.` (SPIRE's text), or fails
//! with `server is unhealthy: <why>`.

use std::path::PathBuf;
use std::time::Duration;

use clap::ArgAction;
use spinel_proto::grpc::health::v1::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::config::{self, Overrides};

/// `run` flags.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Path to a server config file.
    #[arg(long = "config", default_value = "conf/server/server.conf")]
    pub config: PathBuf,
    /// IP address or DNS name of the server.
    #[arg(long = "bindAddress")]
    pub bind_address: Option<String>,
    /// Port number of the server.
    #[arg(long = "serverPort")]
    pub server_port: Option<u16>,
    /// Path to bind the server's admin API socket to.
    #[arg(long = "socketPath")]
    pub socket_path: Option<PathBuf>,
    /// The trust domain that this server belongs to.
    #[arg(long = "trustDomain")]
    pub trust_domain: Option<String>,
    /// Directory to store runtime data to.
    #[arg(long = "dataDir")]
    pub data_dir: Option<PathBuf>,
    /// 'debug', 'info', 'warn', or 'error'.
    #[arg(long = "logLevel")]
    pub log_level: Option<String>,
    /// 'text' or 'json'.
    #[arg(long = "logFormat")]
    pub log_format: Option<String>,
    /// File to write logs to.
    #[arg(long = "logFile")]
    pub log_file: Option<PathBuf>,
    /// Expand environment variables in the config file.
    #[arg(long = "expandEnv", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = spinel_config::flags::parse_go_bool)]
    pub expand_env: bool,
}

/// `healthcheck` flags.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// Path to the server's admin socket.
    #[arg(long = "socketPath", default_value = super::DEFAULT_SOCKET_PATH)]
    pub socket_path: PathBuf,
    /// Perform a less stringent health check (accepted for SPIRE
    /// compatibility; the check is the same).
    #[arg(long = "shallow", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = spinel_config::flags::parse_go_bool)]
    pub shallow: bool,
    /// Print verbose information.
    #[arg(long = "verbose", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = spinel_config::flags::parse_go_bool)]
    pub verbose: bool,
}

impl RunArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            bind_address: self.bind_address.clone(),
            bind_port: self.server_port,
            socket_path: self.socket_path.clone(),
            trust_domain: self.trust_domain.clone(),
            data_dir: self.data_dir.clone(),
            log_level: self.log_level.clone(),
            log_format: self.log_format.clone(),
            log_file: self.log_file.clone(),
            expand_env: self.expand_env,
        }
    }
}

/// Runs the server until it is stopped.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = config::load(&args.config, &args.overrides())?;
    spinel_config::logging::init(
        &config.log_level,
        config.log_format,
        config.log_file.as_deref(),
    )?;
    crate::run::run(config).await?;
    Ok(())
}

/// `validate`: the exit code and what is printed, as SPIRE's command.
pub fn validate(args: &RunArgs) -> std::process::ExitCode {
    match check_config(args) {
        Ok(()) => {
            println!("SPIRE server configuration file is valid.");
            std::process::ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("SPIRE server configuration file is invalid: {reason}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Everything `run` checks before it opens the datastore.
fn check_config(args: &RunArgs) -> Result<(), String> {
    let config = config::load(&args.config, &args.overrides()).map_err(|e| format!("{e:#}"))?;
    spinel_config::logging::parse_level(&config.log_level).map_err(|e| e.to_string())?;
    if let Some(disk) = &config.plugins.upstream_authority {
        crate::upstream::load_disk(disk).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Checks a running server's health.
pub async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    if args.verbose {
        println!("Checking server health...");
    }
    match check(&args).await {
        Ok(Health::Healthy) => {
            println!("Server is healthy.");
            Ok(())
        }
        Ok(Health::Degraded) => {
            println!("Server is healthy, but degraded: its datastore cannot be reached. Agents are served from memory; registration changes are refused.");
            Ok(())
        }
        Err(reason) => anyhow::bail!("server is unhealthy: {reason}"),
    }
}

/// What `healthcheck` found.
enum Health {
    Healthy,
    /// Serving agents, but the Entry API (the datastore) is not.
    Degraded,
}

async fn check(args: &HealthcheckArgs) -> Result<Health, String> {
    let channel = super::connect_admin(&args.socket_path).await.map_err(|e| {
        // A socket of another user is named even without -verbose: it is
        // no health problem but a warning.
        if matches!(e, super::AdminClientError::Untrusted(_)) {
            return e.to_string();
        }
        if args.verbose {
            eprintln!("Failed to check health: {e}");
        }
        "unable to determine health".to_owned()
    })?;
    let mut client = HealthClient::new(channel);
    let mut ask = async |service: &str| {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: service.to_owned(),
        });
        request.set_timeout(Duration::from_secs(10));
        client
            .check(request)
            .await
            .map(|r| r.into_inner().status)
            .map_err(|status| {
                if args.verbose {
                    eprintln!("Failed to check health: {}", status.message());
                }
                "unable to determine health".to_owned()
            })
    };
    let status = ask("").await?;
    if status != ServingStatus::Serving as i32 {
        let name = ServingStatus::try_from(status)
            .map(|s| s.as_str_name().to_owned())
            .unwrap_or_else(|_| status.to_string());
        return Err(format!("server returned status {name:?}"));
    }
    if ask(crate::api::ENTRY_SERVICE).await? == ServingStatus::Serving as i32 {
        Ok(Health::Healthy)
    } else {
        Ok(Health::Degraded)
    }
}
