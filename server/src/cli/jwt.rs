//! `spinel-server jwt mint`: a JWT-SVID for any SPIFFE ID, signed by the
//! server (`spire.api.server.svid.v1.SVID/MintJWTSVID`), with SPIRE's flags
//! (`-spiffeID`, `-audience` repeated, `-ttl` as a Go duration, `-write`)
//! and output (the token alone on stdout, or `JWT-SVID written to <file>`).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use spinel_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use spinel_proto::spire::api::server::svid::v1::MintJwtsvidRequest;
use spinel_spiffe::id::SpiffeId;

use super::admin_client::{
    connect_admin, id_to_proto, parse_spiffe_id, AdminArgs, AdminClientError, OutputFormat,
};
use super::output::print_proto_json;

/// `jwt` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JwtCommand {
    /// Mints a JWT-SVID.
    Mint(MintArgs),
}

/// `jwt mint` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct MintArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// SPIFFE ID of the JWT-SVID.
    #[arg(long = "spiffeID", value_name = "ID", value_parser = parse_spiffe_id)]
    pub spiffe_id: Option<SpiffeId>,
    /// TTL of the JWT-SVID (a Go duration, e.g. 5m; 0: the server default).
    #[arg(long = "ttl", value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Audience claim that will be included in the SVID. Can be used more than once.
    #[arg(long = "audience", value_name = "AUDIENCE")]
    pub audience: Vec<String>,
    /// File to write token to instead of stdout.
    #[arg(long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spinel_config::duration::parse_go_duration(text).map_err(|e| e.to_string())
}

/// Whole seconds, rounded up, as SPIRE sends them.
fn ttl_seconds(ttl: Duration) -> Result<i32, AdminClientError> {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i32::try_from(secs)
        .map_err(|_| AdminClientError::usage(format!("invalid value for TTL: {secs}s is too long")))
}

/// The `exp` claim of a compact JWT, unverified (only to warn about a
/// capped lifetime).
fn expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// Runs a `jwt` subcommand.
pub async fn run(cmd: JwtCommand) -> anyhow::Result<()> {
    let JwtCommand::Mint(args) = cmd;
    let Some(id) = &args.spiffe_id else {
        return Err(AdminClientError::usage("spiffeID must be specified").into());
    };
    if args.audience.is_empty() {
        return Err(AdminClientError::usage("at least one audience must be specified").into());
    }
    let ttl = ttl_seconds(args.ttl)?;
    let resp = SvidClient::new(connect_admin(&args.common.socket_path).await?)
        .mint_jwtsvid(MintJwtsvidRequest {
            id: Some(id_to_proto(id)),
            audience: args.audience.clone(),
            ttl,
        })
        .await
        .map_err(|s| AdminClientError::rpc_while("unable to mint SVID", s))?
        .into_inner();
    let token = resp
        .svid
        .as_ref()
        .map(|s| s.token.clone())
        .unwrap_or_default();
    if token.is_empty() {
        return Err(AdminClientError::usage("server response missing token").into());
    }
    match expiry(&token) {
        Some(exp) => {
            let now = spinel_spiffe::Clock::system().unix_seconds();
            if ttl > 0 && exp - now < i64::from(ttl) {
                eprintln!(
                    "JWT-SVID lifetime was capped shorter than specified ttl; expires {:?}",
                    super::output::go_utc_time(exp)
                );
            }
        }
        None => eprintln!("Unable to determine JWT-SVID lifetime: no readable exp claim"),
    }
    match &args.write {
        Some(path) => {
            spinel_spiffe::keyfile::write_private(path, token.as_bytes())
                .map_err(|e| AdminClientError::Output(format!("unable to write token: {e}")))?;
            println!("JWT-SVID written to {}", path.display());
        }
        None => match args.common.output {
            OutputFormat::Pretty => println!("{token}"),
            OutputFormat::Json => {
                print_proto_json(&resp, "spire.api.server.svid.v1.MintJWTSVIDResponse")?;
            }
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_like_spire() {
        assert_eq!(ttl_seconds(Duration::from_millis(1500)).unwrap(), 2);
        assert_eq!(ttl_seconds(Duration::ZERO).unwrap(), 0);
        assert!(ttl_seconds(Duration::from_secs(1 << 40)).is_err());
    }

    #[test]
    fn expiry_reads_the_claim() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!("{}.{}.sig", b64("{}"), b64(r#"{"exp":1700000000}"#));
        assert_eq!(expiry(&token), Some(1_700_000_000));
        assert_eq!(expiry("nope"), None);
    }
}
