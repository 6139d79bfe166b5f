//! The `spinel-agent` command line, in SPIRE's spelling.
//!
//! `spinel-agent run -config agent.conf [-joinToken T]` runs the agent;
//! `api fetch x509|jwt`, `api validate jwt` and `api watch` are Workload API
//! clients; `debug explain -pid N` says why a process gets no identity
//! (admin socket); `logger get|set|reset` reads and sets its log level
//! (admin socket); `validate` checks a config without starting;
//! `healthcheck` checks a running agent. `api fetch` alone means
//! `api fetch x509`, as in SPIRE. Flags take Go's forms
//! through [`spinel_config::flags`].

pub mod api;
pub mod debug;
mod logger;
mod run_cmd;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `spinel-agent`.
#[derive(Debug, Parser)]
#[command(
    name = "spinel-agent",
    version,
    about = "Spinel agent: serves the SPIFFE Workload API"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the agent.
    Run(run_cmd::RunArgs),
    /// Validates an agent configuration file (takes `run`'s flags).
    Validate(run_cmd::RunArgs),
    /// Checks that a running agent is healthy.
    Healthcheck(run_cmd::HealthcheckArgs),
    /// Talks to the Workload API like a workload would.
    #[command(subcommand)]
    Api(api::ApiCommand),
    /// Keeps SVIDs as files in a directory (spiffe-helper's role and config).
    #[command(name = "svid-helper")]
    SvidHelper(SvidHelperArgs),
    /// Inspects a running agent through its admin socket.
    #[command(subcommand)]
    Debug(debug::DebugCommand),
    /// Gets, sets or resets the running agent's log level (admin socket).
    #[command(subcommand)]
    Logger(logger::LoggerCommand),
}

/// Entry point of the binary: parses Go-style flags and runs the command.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// [`main`] with explicit arguments (the first is the program name).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = fetch_defaults_to_x509(args.into_iter().collect());
    spinel_config::program::main_with_args(args, |cli: Cli| async move {
        let result = match cli.command {
            // In the runtime: the workload attestors' clients are built too.
            Command::Validate(args) => return Ok(run_cmd::validate(&args)),
            Command::Run(args) => run_cmd::run(args).await,
            Command::Healthcheck(args) => run_cmd::healthcheck(args).await,
            Command::Api(cmd) => api::run(cmd).await,
            Command::Debug(cmd) => debug::run(cmd).await,
            Command::SvidHelper(args) => svid_helper(args).await,
            Command::Logger(cmd) => logger::run(cmd).await,
        };
        result.map(|()| ExitCode::SUCCESS)
    })
}

/// `api fetch` without a subcommand is `api fetch x509`, as in SPIRE
/// (`spire-agent api fetch -socketPath ...`).
pub fn fetch_defaults_to_x509(mut args: Vec<OsString>) -> Vec<OsString> {
    let is = |i: usize, s: &str| args.get(i).is_some_and(|a| a == s);
    if is(1, "api") && is(2, "fetch") {
        let next = args.get(3).and_then(|a| a.to_str()).unwrap_or("");
        let help = matches!(next, "-h" | "-help" | "--help");
        if next.is_empty() || (next.starts_with('-') && !help) {
            args.insert(3, OsString::from("x509"));
        }
    }
    args
}

/// `svid-helper` flags (spiffe-helper's).
#[derive(Debug, clap::Args)]
pub struct SvidHelperArgs {
    /// Path to the spiffe-helper style configuration file.
    #[arg(long = "config", default_value = "helper.conf")]
    pub config: std::path::PathBuf,
    /// Overrides daemon_mode: false writes the files once and exits.
    #[arg(long = "daemonMode", alias = "daemon-mode")]
    pub daemon_mode: Option<bool>,
    /// Same as -daemonMode=false (spiffe-helper's older flag).
    #[arg(long = "exitWhenReady")]
    pub exit_when_ready: bool,
}

async fn svid_helper(args: SvidHelperArgs) -> anyhow::Result<()> {
    spinel_config::logging::init("INFO", spinel_config::logging::LogFormat::default(), None)?;
    let daemon_mode = if args.exit_when_ready {
        Some(false)
    } else {
        args.daemon_mode
    };
    let config = crate::svid_helper::HelperConfig::load(&args.config, daemon_mode)?;
    crate::svid_helper::run(config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn bare_api_fetch_is_x509() {
        for (given, want) in [
            (
                &["a", "api", "fetch"][..],
                &["a", "api", "fetch", "x509"][..],
            ),
            (
                &["a", "api", "fetch", "-socketPath", "/s"],
                &["a", "api", "fetch", "x509", "-socketPath", "/s"],
            ),
            (&["a", "api", "fetch", "jwt"], &["a", "api", "fetch", "jwt"]),
            (&["a", "api", "fetch", "-h"], &["a", "api", "fetch", "-h"]),
            (&["a", "run", "fetch"], &["a", "run", "fetch"]),
        ] {
            assert_eq!(fetch_defaults_to_x509(args(given)), args(want));
        }
        let cli: Cli = spinel_config::flags::parse_go_style(fetch_defaults_to_x509(args(&[
            "spinel-agent",
            "api",
            "fetch",
            "-socketPath",
            "/s.sock",
        ])))
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Api(api::ApiCommand::Fetch(api::FetchCommand::X509(_)))
        ));
    }
}
