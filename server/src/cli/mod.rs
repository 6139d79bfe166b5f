//! The `spinel-server` command line, in SPIRE's spelling.
//!
//! `spinel-server run -config server.conf` starts the server and
//! `validate -config server.conf` checks a config without starting; every
//! other subcommand (`entry`, `token`, `bundle`, `agent`, `federation`,
//! `localauthority`, `upstreamauthority`, `jwt`, `logger`, `healthcheck`) is
//! a client of the server's admin API on its Unix socket (`-socketPath`). Flags take
//! Go's forms (`-flag value`, `-flag=value`, `--flag value`) through
//! [`spinel_config::flags`].

mod admin_client;
mod agent;
mod bundle;
mod datastore;
mod entry;
mod federation;
mod jwt;
mod localauthority;
mod logger;
mod output;
mod run_cmd;
mod token;
mod upstreamauthority;

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
    /// Validates a server configuration file (takes `run`'s flags).
    Validate(run_cmd::RunArgs),
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
    /// Moves data into this server's datastore (`import -from spire`).
    #[command(subcommand)]
    Datastore(datastore::DatastoreCommand),
    /// Manages federation relationships.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Manages the server's own signing authorities (manual CA rotation).
    #[command(subcommand, name = "localauthority")]
    LocalAuthority(localauthority::LocalAuthorityCommand),
    /// Manages the upstream authority's X.509 CAs (taint, revoke).
    #[command(subcommand, name = "upstreamauthority")]
    UpstreamAuthority(upstreamauthority::UpstreamAuthorityCommand),
    /// Mints JWT-SVIDs.
    #[command(subcommand)]
    Jwt(jwt::JwtCommand),
    /// Gets, sets or resets the running server's log level.
    #[command(subcommand)]
    Logger(logger::LoggerCommand),
}

/// Entry point of the binary: parses Go-style flags and runs the command.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// [`main`] with explicit arguments (the first is the program name).
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    spinel_config::program::main_with_args(args, |cli: Cli| async move {
        let result = match cli.command {
            Command::Validate(args) => return Ok(run_cmd::validate(&args)),
            Command::Run(args) => run_cmd::run(args).await,
            Command::Healthcheck(args) => run_cmd::healthcheck(args).await,
            Command::Entry(cmd) => entry::run(cmd).await,
            Command::Token(cmd) => token::run(cmd).await,
            Command::Bundle(cmd) => bundle::run(cmd).await,
            Command::Agent(cmd) => agent::run(cmd).await,
            Command::Datastore(cmd) => datastore::run(cmd).await,
            Command::Federation(cmd) => federation::run(cmd).await,
            Command::LocalAuthority(cmd) => localauthority::run(cmd).await,
            Command::UpstreamAuthority(cmd) => upstreamauthority::run(cmd).await,
            Command::Jwt(cmd) => jwt::run(cmd).await,
            Command::Logger(cmd) => logger::run(cmd).await,
        };
        result.map(|()| ExitCode::SUCCESS)
    })
}
