//! The `spinel-server` command line, in SPIRE's spelling.
//!
//! `spinel-server run -config server.conf` starts the server; every other
//! subcommand (`entry`, `token`, `bundle`, `agent`, `federation`, `localauthority`,
//! `healthcheck`) is a client
//! of the server's admin API on its Unix socket (`-socketPath`). Flags take
//! Go's forms (`-flag value`, `-flag=value`, `--flag value`) through
//! [`spinel_config::flags`].

mod admin_client;
mod agent;
mod bundle;
mod entry;
mod federation;
mod localauthority;
mod output;
mod run_cmd;
mod token;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use admin_client::{connect_admin, AdminClientError, DEFAULT_SOCKET_PATH};

/// `spinel-server`.
#[derive(Debug, Parser)]
#[command(
    name = "spinel-server",
    version,
    about = "Spinel server: the SPIFFE trust domain's CA"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the server.
    Run(run_cmd::RunArgs),
    /// Checks that a running server is healthy.
    Healthcheck(run_cmd::HealthcheckArgs),
    /// Manages registration entries.
    #[command(subcommand)]
    Entry(entry::EntryCommand),
    /// Manages join tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Manages trust bundles.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Manages attested agents.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Manages federation relationships.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Manages the server's own signing authorities (manual CA rotation).
    #[command(subcommand, name = "localauthority")]
    LocalAuthority(localauthority::LocalAuthorityCommand),
}

/// Entry point of the binary: parses Go-style flags and runs the command.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// [`main`] with explicit arguments (the first is the program name).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli: Cli = match spinel_config::flags::parse_go_style::<Cli>(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let result = match cli.command {
            Command::Run(args) => run_cmd::run(args).await,
            Command::Healthcheck(args) => run_cmd::healthcheck(args).await,
            Command::Entry(cmd) => entry::run(cmd).await,
            Command::Token(cmd) => token::run(cmd).await,
            Command::Bundle(cmd) => bundle::run(cmd).await,
            Command::Agent(cmd) => agent::run(cmd).await,
            Command::Federation(cmd) => federation::run(cmd).await,
            Command::LocalAuthority(cmd) => localauthority::run(cmd).await,
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
