//! `spinel-agent api ...`: Workload API clients, in SPIRE's spelling.
//!
//! - `api fetch x509 [-write DIR] [-silent]`: the caller's X509-SVIDs;
//!   `-write` stores `svid.<i>.pem`, `svid.<i>.key` (mode 0600),
//!   `bundle.<i>.pem` and `federated_bundle.<i>.<j>.pem`;
//! - `api fetch jwt -audience A [-audience B | -audience A,B] [-spiffeID ID]`:
//!   JWT-SVIDs and the JWT bundles;
//! - `api validate jwt -audience A -svid TOKEN`;
//! - `api watch`: prints every X509-SVID update until interrupted.
//!
//! Every command takes `-socketPath` (default: `SPIFFE_ENDPOINT_SOCKET`,
//! then [`DEFAULT_SOCKET_PATH`](crate::config::DEFAULT_SOCKET_PATH)); the
//! client side (socket choice, dialling, certificates) is
//! [`crate::workload_client`]; the fetch and
//! validate commands take `-timeout` (Go duration) and `-output pretty|json`
//! (JSON as protobuf JSON with proto field names).

mod format;
mod jwt;
mod x509;

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Subcommand, ValueEnum};

/// `api` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Fetches SVIDs from the Workload API.
    #[command(subcommand)]
    Fetch(FetchCommand),
    /// Validates an SVID through the Workload API.
    #[command(subcommand)]
    Validate(ValidateCommand),
    /// Attaches to the Workload API and prints updates as they're received.
    Watch(WatchArgs),
}

/// `api fetch` subcommands.
#[derive(Debug, Subcommand)]
pub enum FetchCommand {
    /// Fetches X509-SVIDs from the Workload API.
    X509(FetchX509Args),
    /// Fetches JWT-SVIDs from the Workload API.
    Jwt(FetchJwtArgs),
}

/// `api validate` subcommands.
#[derive(Debug, Subcommand)]
pub enum ValidateCommand {
    /// Validates a JWT-SVID.
    Jwt(ValidateJwtArgs),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable, as SPIRE prints it.
    Pretty,
    /// Protobuf JSON.
    Json,
}

/// Flags every fetch/validate command takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Path to the Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET,
    /// then /tmp/spinel-agent/public/api.sock).
    #[arg(long = "socketPath")]
    pub socket_path: Option<PathBuf>,
    /// Time to wait for a response.
    #[arg(long = "timeout", default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// `api fetch x509` flags.
#[derive(Debug, Args)]
pub struct FetchX509Args {
    /// Socket and timeout.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Write SVID data to the specified path (only for pretty output).
    #[arg(long = "write")]
    pub write: Option<PathBuf>,
    /// Suppress stdout (Go boolean: `-silent`, `-silent=false`).
    #[arg(long = "silent", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = spinel_config::flags::parse_go_bool)]
    pub silent: bool,
    /// Desired output format.
    #[arg(long = "output", value_enum, default_value_t = Output::Pretty)]
    pub output: Output,
}

/// `api fetch jwt` flags.
#[derive(Debug, Args)]
pub struct FetchJwtArgs {
    /// Socket and timeout.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Audience values (repeat the flag or separate with commas).
    #[arg(long = "audience", action = ArgAction::Append)]
    pub audience: Vec<String>,
    /// SPIFFE ID subject (optional).
    #[arg(long = "spiffeID")]
    pub spiffe_id: Option<String>,
    /// Desired output format.
    #[arg(long = "output", value_enum, default_value_t = Output::Pretty)]
    pub output: Output,
}

/// `api validate jwt` flags.
#[derive(Debug, Args)]
pub struct ValidateJwtArgs {
    /// Socket and timeout.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Expected audience value.
    #[arg(long = "audience")]
    pub audience: Option<String>,
    /// The JWT-SVID.
    #[arg(long = "svid")]
    pub svid: Option<String>,
    /// Desired output format.
    #[arg(long = "output", value_enum, default_value_t = Output::Pretty)]
    pub output: Output,
}

/// `api watch` flags.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Path to the Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET,
    /// then /tmp/spinel-agent/public/api.sock).
    #[arg(long = "socketPath")]
    pub socket_path: Option<PathBuf>,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    spinel_config::duration::parse_go_duration(text).map_err(|e| e.to_string())
}

/// Runs an `api` subcommand.
pub async fn run(cmd: ApiCommand) -> anyhow::Result<()> {
    match cmd {
        ApiCommand::Fetch(FetchCommand::X509(args)) => x509::fetch(args).await,
        ApiCommand::Fetch(FetchCommand::Jwt(args)) => jwt::fetch(args).await,
        ApiCommand::Validate(ValidateCommand::Jwt(args)) => jwt::validate(args).await,
        ApiCommand::Watch(args) => x509::watch(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> ApiCommand {
        let all = std::iter::once("spinel-agent").chain(args.iter().copied());
        match spinel_config::flags::parse_go_style::<Cli>(all)
            .unwrap()
            .command
        {
            Command::Api(cmd) => cmd,
            other => panic!("not an api command: {other:?}"),
        }
    }

    #[test]
    fn go_style_flags() {
        let ApiCommand::Fetch(FetchCommand::X509(a)) = parse(&[
            "api",
            "fetch",
            "x509",
            "-write",
            "/tmp/",
            "-silent",
            "-socketPath",
            "/s.sock",
        ]) else {
            panic!("fetch x509 expected")
        };
        assert_eq!(a.write, Some(PathBuf::from("/tmp/")));
        assert!(a.silent);
        assert_eq!(a.common.socket_path, Some(PathBuf::from("/s.sock")));
        assert_eq!(a.common.timeout, Duration::from_secs(5));
        assert_eq!(a.output, Output::Pretty);

        let ApiCommand::Fetch(FetchCommand::Jwt(j)) = parse(&[
            "api",
            "fetch",
            "jwt",
            "-audience",
            "a",
            "-audience=b,c",
            "-spiffeID",
            "spiffe://example.org/w",
            "-output",
            "json",
            "-timeout",
            "1m",
        ]) else {
            panic!("fetch jwt expected")
        };
        assert_eq!(j.audience, ["a", "b,c"]);
        assert_eq!(j.spiffe_id.as_deref(), Some("spiffe://example.org/w"));
        assert_eq!(j.output, Output::Json);
        assert_eq!(j.common.timeout, Duration::from_secs(60));

        let ApiCommand::Validate(ValidateCommand::Jwt(v)) =
            parse(&["api", "validate", "jwt", "-audience", "a", "-svid", "t.o.k"])
        else {
            panic!("validate jwt expected")
        };
        assert_eq!(
            (v.audience.as_deref(), v.svid.as_deref()),
            (Some("a"), Some("t.o.k"))
        );

        let ApiCommand::Watch(w) = parse(&["api", "watch", "--socketPath", "/w.sock"]) else {
            panic!("watch expected")
        };
        assert_eq!(w.socket_path, Some(PathBuf::from("/w.sock")));
    }
}
