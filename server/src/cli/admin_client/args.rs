//! Flags shared by the admin subcommands, and parsers that check a flag's
//! value as clap reads it, so that a bad value is refused before any
//! connection is made and the error names the flag.

use std::path::{Path, PathBuf};

use spinel_proto::spire::api::types::{federates_with_match, selector_match, Selector, Spiffeid};
use spinel_spiffe::id::{parse_id, parse_trust_domain, SpiffeId, TrustDomain};

use super::DEFAULT_SOCKET_PATH;

/// SPIRE's default admin socket.
pub const SPIRE_SOCKET_PATH: &str = "/tmp/spire-server/private/api.sock";

/// The admin socket to dial for `path`: Spinel's default, unless it is
/// missing and SPIRE's default exists (a server run with SPIRE's
/// `socket_path`, or SPIRE's own server), so that scripts written for SPIRE
/// that omit `-socketPath` keep working. Any other path is used as given.
pub fn resolve_socket_path(path: &Path) -> PathBuf {
    let spire = Path::new(SPIRE_SOCKET_PATH);
    if path == Path::new(DEFAULT_SOCKET_PATH) && !path.exists() && spire.exists() {
        return spire.to_owned();
    }
    path.to_owned()
}

pub use spinel_config::flags::parse_go_bool;

/// `-socketPath` and `-output`, on every admin subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Path to the Spinel server admin API socket.
    #[arg(long = "socketPath", value_name = "PATH", default_value = DEFAULT_SOCKET_PATH)]
    pub socket_path: PathBuf,
    /// Desired output format: pretty or json.
    #[arg(long = "output", value_name = "FORMAT", default_value = "pretty", value_parser = parse_output)]
    pub output: OutputFormat,
}

/// How a subcommand prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// SPIRE's human-readable layout.
    Pretty,
    /// The response message as protobuf JSON (proto field names).
    Json,
}

/// `-output`: `pretty` (or `prettyprint`) or `json`, any case.
pub fn parse_output(value: &str) -> Result<OutputFormat, String> {
    match value.to_ascii_lowercase().as_str() {
        "pretty" | "prettyprint" => Ok(OutputFormat::Pretty),
        "json" => Ok(OutputFormat::Json),
        _ => Err(format!(
            "bad formatter flag: unknown format option: {value:?} (pretty or json)"
        )),
    }
}

/// A SPIFFE ID, parsed strictly (lower-case trust domain, no `..`, no
/// percent-encoding, no trailing `/`).
pub fn parse_spiffe_id(value: &str) -> Result<SpiffeId, String> {
    parse_id(value).map_err(|e| e.to_string())
}

/// A trust domain, by name (`example.org`) or ID (`spiffe://example.org`).
pub fn parse_td(value: &str) -> Result<TrustDomain, String> {
    parse_trust_domain(value).map_err(|e| e.to_string())
}

/// A `type:value` selector.
pub fn parse_selector(value: &str) -> Result<Selector, String> {
    let sel = spinel_spiffe::Selector::parse(value).map_err(|e| e.to_string())?;
    Ok(Selector {
        r#type: sel.kind,
        value: sel.value,
    })
}

/// A positive count of seconds that fits the API's `int32`.
pub fn parse_ttl(value: &str) -> Result<i32, String> {
    let n: i64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number of seconds"))?;
    if n < 0 {
        return Err("a positive TTL is required".to_owned());
    }
    i32::try_from(n).map_err(|_| format!("{n} is out of range (at most {})", i32::MAX))
}

/// Unix seconds, not negative.
pub fn parse_unix_seconds(value: &str) -> Result<i64, String> {
    let n: i64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number of seconds since the epoch"))?;
    if n < 0 {
        return Err("must not be negative".to_owned());
    }
    Ok(n)
}

/// A non-empty DNS name without spaces or control characters (the server
/// checks the rest).
pub fn parse_dns_name(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("a DNS name must not be empty".to_owned());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("DNS name {value:?} contains whitespace"));
    }
    Ok(value.to_owned())
}

/// `-matchSelectorsOn` / `-matchFederatesWithOn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOn {
    /// Exactly the given set.
    Exact,
    /// A subset of the given set.
    Subset,
    /// A superset of the given set (SPIRE's default).
    Superset,
    /// At least one of the given set.
    Any,
}

impl MatchOn {
    /// As `spire.api.types.SelectorMatch.MatchBehavior`.
    pub fn selector_match(self) -> selector_match::MatchBehavior {
        match self {
            MatchOn::Exact => selector_match::MatchBehavior::MatchExact,
            MatchOn::Subset => selector_match::MatchBehavior::MatchSubset,
            MatchOn::Superset => selector_match::MatchBehavior::MatchSuperset,
            MatchOn::Any => selector_match::MatchBehavior::MatchAny,
        }
    }

    /// As `spire.api.types.FederatesWithMatch.MatchBehavior`.
    pub fn federates_with_match(self) -> federates_with_match::MatchBehavior {
        match self {
            MatchOn::Exact => federates_with_match::MatchBehavior::MatchExact,
            MatchOn::Subset => federates_with_match::MatchBehavior::MatchSubset,
            MatchOn::Superset => federates_with_match::MatchBehavior::MatchSuperset,
            MatchOn::Any => federates_with_match::MatchBehavior::MatchAny,
        }
    }
}

/// `exact`, `subset`, `superset` or `any`.
pub fn parse_match(value: &str) -> Result<MatchOn, String> {
    match value {
        "exact" => Ok(MatchOn::Exact),
        "subset" => Ok(MatchOn::Subset),
        "superset" => Ok(MatchOn::Superset),
        "any" => Ok(MatchOn::Any),
        _ => Err(format!(
            "match behavior {value:?} unknown (exact, subset, superset or any)"
        )),
    }
}

/// A SPIFFE ID in the API's form.
pub fn id_to_proto(id: &SpiffeId) -> Spiffeid {
    Spiffeid {
        trust_domain: id.trust_domain_name().to_owned(),
        path: id.path().to_owned(),
    }
}

/// The text form of an API SPIFFE ID (empty when absent).
pub fn id_from_proto(id: Option<&Spiffeid>) -> String {
    match id {
        Some(id) => format!("spiffe://{}{}", id.trust_domain, id.path),
        None => String::new(),
    }
}
