//! `spinel-server token generate`: a join token through the server's
//! `CreateJoinToken`, printed as SPIRE prints it (`Token: <value>`).
//!
//! With `-spiffeID`, the server also registers that ID as an alias of the
//! agent that will attest with the token (SPIRE passes `agent_id` in the
//! request; the server creates the entry).

use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, CreateJoinTokenRequest,
};
use spinel_proto::spire::api::types::JoinToken;
use spinel_spiffe::id::SpiffeId;

use super::admin_client::{
    connect_admin, id_to_proto, parse_spiffe_id, AdminArgs, AdminClientError, OutputFormat,
};
use super::output::print_proto_json;

/// SPIRE's default join token lifetime, in seconds.
pub const DEFAULT_TOKEN_TTL: i32 = 600;

/// `token` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Generates a join token.
    Generate(GenerateArgs),
}

/// `token generate` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Token TTL in seconds.
    #[arg(long = "ttl", value_name = "SECONDS", default_value_t = DEFAULT_TOKEN_TTL, allow_negative_numbers = true, value_parser = parse_token_ttl)]
    pub ttl: i32,
    /// Additional SPIFFE ID to assign the token owner (optional).
    #[arg(long = "spiffeID", value_name = "ID", value_parser = parse_spiffe_id)]
    pub spiffe_id: Option<SpiffeId>,
}

/// A token lifetime: at least one second, within `int32`.
fn parse_token_ttl(value: &str) -> Result<i32, String> {
    let n: i64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number of seconds"))?;
    if n < 1 {
        return Err("a token TTL of at least 1 second is required".to_owned());
    }
    i32::try_from(n).map_err(|_| format!("{n} is out of range (at most {})", i32::MAX))
}

impl GenerateArgs {
    /// The `CreateJoinToken` request.
    pub fn request(&self) -> CreateJoinTokenRequest {
        CreateJoinTokenRequest {
            ttl: self.ttl,
            token: String::new(),
            agent_id: self.spiffe_id.as_ref().map(id_to_proto),
        }
    }
}

/// `token generate`'s pretty output.
pub fn pretty(token: &JoinToken, with_spiffe_id: bool) -> String {
    let mut out = format!("Token: {}\n", token.value);
    if !with_spiffe_id {
        out.push_str("Warning: Missing SPIFFE ID.\n");
    }
    out
}

/// Runs a `token` subcommand.
pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Generate(args) => generate(&args).await?,
    }
    Ok(())
}

async fn generate(args: &GenerateArgs) -> Result<(), AdminClientError> {
    let request = args.request();
    let mut client = AgentClient::new(connect_admin(&args.common.socket_path).await?);
    let token = client
        .create_join_token(request)
        .await
        .map_err(AdminClientError::rpc)?
        .into_inner();
    match args.common.output {
        OutputFormat::Pretty => print!("{}", pretty(&token, args.spiffe_id.is_some())),
        OutputFormat::Json => print_proto_json(&token, "spire.api.types.JoinToken")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::admin_client::test_support::{parse, parse_err};
    use crate::cli::Command;
    use spinel_proto::spire::api::types::Spiffeid;

    fn generate_args(args: &[&str]) -> GenerateArgs {
        let mut full = vec!["token", "generate"];
        full.extend_from_slice(args);
        match parse(&full).command {
            Command::Token(TokenCommand::Generate(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_to_600_seconds() {
        let req = generate_args(&[]).request();
        assert_eq!(req.ttl, 600);
        assert!(req.agent_id.is_none());
        assert!(req.token.is_empty());
    }

    #[test]
    fn spiffe_id_becomes_agent_id() {
        let req =
            generate_args(&["-spiffeID", "spiffe://example.org/myagent", "-ttl=60"]).request();
        assert_eq!(req.ttl, 60);
        assert_eq!(
            req.agent_id,
            Some(Spiffeid {
                trust_domain: "example.org".into(),
                path: "/myagent".into()
            })
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["-ttl", "0"][..], "ttl"),
            (&["-ttl", "-1"][..], "ttl"),
            (&["-ttl", "soon"][..], "ttl"),
            (&["-spiffeID", "spiffe://example.org/a/"][..], "spiffeID"),
            (&["-spiffeID", "spiffe://Example.org/a"][..], "spiffeID"),
        ] {
            let mut full = vec!["token", "generate"];
            full.extend_from_slice(args);
            let err = parse_err(&full);
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn pretty_golden() {
        let token = JoinToken {
            value: "2b8a5c1e-0000-4000-8000-000000000000".into(),
            expires_at: 1,
        };
        assert_eq!(
            pretty(&token, true),
            "Token: 2b8a5c1e-0000-4000-8000-000000000000\n"
        );
        assert_eq!(
            pretty(&token, false),
            "Token: 2b8a5c1e-0000-4000-8000-000000000000\nWarning: Missing SPIFFE ID.\n"
        );
    }
}
