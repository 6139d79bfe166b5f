//! `spinel-agent run`, `validate` and `healthcheck`, with SPIRE's flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::ArgAction;
use hyper_util::rt::TokioIo;
use spinel_proto::grpc::health::v1::health_check_response::ServingStatus;
use spinel_proto::grpc::health::v1::health_client::HealthClient;
use spinel_proto::grpc::health::v1::HealthCheckRequest;

use crate::config::{AgentConfig, Overrides};

/// `run` flags.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Path to the agent config file.
    #[arg(long = "config", default_value = "conf/agent/agent.conf")]
    pub config: PathBuf,
    /// Join token to attest with.
    #[arg(long = "joinToken")]
    pub join_token: Option<String>,
    /// Directory to store runtime data to.
    #[arg(long = "dataDir")]
    pub data_dir: Option<PathBuf>,
    /// 'DEBUG', 'INFO', 'WARN' or 'ERROR'.
    #[arg(long = "logLevel")]
    pub log_level: Option<String>,
    /// IP address or DNS name of the server.
    #[arg(long = "serverAddress")]
    pub server_address: Option<String>,
    /// Port number of the server.
    #[arg(long = "serverPort")]
    pub server_port: Option<u16>,
    /// Path to bind the Workload API socket to.
    #[arg(long = "socketPath")]
    pub socket_path: Option<PathBuf>,
    /// Path to the bootstrap trust bundle.
    #[arg(long = "trustBundle")]
    pub trust_bundle: Option<PathBuf>,
    /// The trust domain the agent belongs to.
    #[arg(long = "trustDomain")]
    pub trust_domain: Option<String>,
    /// Trust the server without a bundle on first contact (development only).
    #[arg(long = "insecureBootstrap", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = spinel_config::flags::parse_go_bool)]
    pub insecure_bootstrap: bool,
    /// 'never', 'auto' or 'always' (overrides agent.rebootstrap_mode).
    #[arg(long = "rebootstrapMode")]
    pub rebootstrap_mode: Option<String>,
    /// Time to wait after the server is first seen untrusted before
    /// rebootstrapping, e.g. 10m (overrides agent.rebootstrap_delay).
    #[arg(long = "rebootstrapDelay", value_parser = parse_delay)]
    pub rebootstrap_delay: Option<std::time::Duration>,
    /// Expand environment variables in the config file.
    #[arg(long = "expandEnv", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = spinel_config::flags::parse_go_bool)]
    pub expand_env: bool,
}

/// `healthcheck` flags.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// Path to the Workload API socket.
    #[arg(long = "socketPath", default_value = crate::config::DEFAULT_SOCKET_PATH)]
    pub socket_path: PathBuf,
    /// Only check that the agent answers (accepted for SPIRE compatibility).
    #[arg(long = "shallow", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = spinel_config::flags::parse_go_bool)]
    pub shallow: bool,
    /// Print the reason when unhealthy.
    #[arg(long = "verbose", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = spinel_config::flags::parse_go_bool)]
    pub verbose: bool,
}

fn parse_delay(text: &str) -> Result<std::time::Duration, String> {
    spinel_config::duration::parse_go_duration(text).map_err(|e| e.to_string())
}

impl RunArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            join_token: self.join_token.clone(),
            data_dir: self.data_dir.clone(),
            log_level: self.log_level.clone(),
            server_address: self.server_address.clone(),
            server_port: self.server_port,
            socket_path: self.socket_path.clone(),
            trust_bundle_path: self.trust_bundle.clone(),
            trust_domain: self.trust_domain.clone(),
            insecure_bootstrap: self.insecure_bootstrap,
            rebootstrap_mode: self.rebootstrap_mode.clone(),
            rebootstrap_delay: self.rebootstrap_delay,
        }
    }
}

/// Runs the agent until it is stopped.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = AgentConfig::load(&args.config, &args.overrides(), args.expand_env)?;
    spinel_config::logging::init(
        &config.log_level,
        config.log_format,
        config.log_file.as_deref(),
    )?;
    crate::run::run(config).await?;
    Ok(())
}

/// `validate`: takes `run`'s flags, loads and checks the config and the
/// workload attestors' settings without starting anything, and prints
/// SPIRE's `SPIRE agent configuration file is valid.` (exit 0) or
/// `SPIRE agent configuration file is invalid: <why>` on stderr (exit 1).
pub fn validate(args: &RunArgs) -> std::process::ExitCode {
    let checked = AgentConfig::load(&args.config, &args.overrides(), args.expand_env)
        .map_err(|e| format!("{e:#}"))
        .and_then(|config| {
            spinel_config::logging::parse_level(&config.log_level).map_err(|e| e.to_string())?;
            crate::attestor::workload::build(&config.workload_attestors)
                .map(drop)
                .map_err(|e| e.to_string())
        });
    match checked {
        Ok(()) => {
            println!("SPIRE agent configuration file is valid.");
            std::process::ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("SPIRE agent configuration file is invalid: {reason}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Checks a running agent's health through the gRPC health service on its
/// Workload API socket.
pub async fn healthcheck(mut args: HealthcheckArgs) -> anyhow::Result<()> {
    args.socket_path = crate::workload_client::default_socket_path(&args.socket_path);
    let path = args.socket_path.clone();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    spinel_transport::unix_socket::connect(&path).await?,
                ))
            }
        }))
        .await
        .map_err(crate::workload_client::connect_error)
        .with_context(|| {
            format!(
                "Agent is unhealthy: cannot connect to {}",
                args.socket_path.display()
            )
        })?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map_err(|s| anyhow::anyhow!("Agent is unhealthy: {}: {}", s.code(), s.message()))?
        .into_inner();
    if response.status == ServingStatus::Serving as i32 {
        println!("Agent is healthy.");
        Ok(())
    } else {
        anyhow::bail!(
            "Agent is unhealthy: agent returned status \"NOT_SERVING\" (no successful sync with the server yet, \
             or the server refused the agent: banned or evicted; see the agent log)"
        )
    }
}
