//! SPIFFE IDs and trust domains, parsed strictly.
//!
//! The [`spiffe`] crate does the structural validation (scheme, allowed
//! characters, empty and dot segments, trailing slash, length). It accepts
//! an upper-case trust domain and folds it to lower case; input typed by an
//! operator or sent to the admin API is stricter here, as in SPIRE: an
//! upper-case scheme or trust domain is refused, so that what is stored is
//! exactly what was asked for.
//!
//! The crate checks the SPIFFE spec's 2,048-byte limit only when it builds
//! an ID from segments; [`parse_id`] checks it on every input, so an
//! over-long ID is refused wherever one enters (entries, CSRs, JWT `sub`,
//! Workload API requests, peer certificates, entries synced by an agent).

pub use spiffe::{SpiffeId, TrustDomain};

/// The path of the server's own ID, and the parent of node alias entries.
pub const SERVER_PATH: &str = "/spire/server";
/// The prefix of every agent ID path.
pub const AGENT_PATH_PREFIX: &str = "/spire/agent/";
/// Every path under this prefix is reserved for SPIRE-compatible components.
pub const RESERVED_PATH_PREFIX: &str = "/spire/";
/// The longest SPIFFE ID accepted, in bytes, `spiffe://` included (the
/// SPIFFE ID spec's limit: implementations must support IDs up to 2,048
/// bytes and should not make longer ones).
pub const MAX_ID_LEN: usize = 2048;
/// How much of a refused over-long ID an error message shows.
const SHOWN_PREFIX_LEN: usize = 64;

/// Why a SPIFFE ID or trust domain was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The input is not a valid SPIFFE ID or trust domain.
    #[error("invalid SPIFFE ID {input:?}: {reason}")]
    Invalid {
        /// The refused input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The ID belongs to another trust domain than the one expected.
    #[error("SPIFFE ID {id:?} is not a member of trust domain {trust_domain:?}")]
    ForeignTrustDomain {
        /// The refused ID.
        id: String,
        /// The expected trust domain.
        trust_domain: String,
    },
    /// The ID uses a path reserved for servers and agents.
    #[error("SPIFFE ID {id:?} uses the reserved path prefix {RESERVED_PATH_PREFIX:?}")]
    Reserved {
        /// The refused ID.
        id: String,
    },
    /// The ID is longer than [`MAX_ID_LEN`] bytes.
    #[error("SPIFFE ID {prefix:?}... is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// The first bytes of the refused input (never all of it).
        prefix: String,
        /// Its length in bytes.
        len: usize,
        /// The limit, [`MAX_ID_LEN`].
        max: usize,
    },
    /// The ID has no path, so it names a trust domain, not a workload.
    #[error("SPIFFE ID {id:?} has no path")]
    NoPath {
        /// The refused ID.
        id: String,
    },
}

fn invalid(input: &str, reason: impl ToString) -> IdError {
    IdError::Invalid {
        input: input.to_owned(),
        reason: reason.to_string(),
    }
}

/// Refuses `input` when it is longer than [`MAX_ID_LEN`] bytes.
pub fn check_length(input: &str) -> Result<(), IdError> {
    if input.len() <= MAX_ID_LEN {
        return Ok(());
    }
    let mut end = SHOWN_PREFIX_LEN;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    Err(IdError::TooLong {
        prefix: input[..end].to_owned(),
        len: input.len(),
        max: MAX_ID_LEN,
    })
}

/// Parses a SPIFFE ID, refusing upper case in the scheme or trust domain
/// and IDs longer than [`MAX_ID_LEN`] bytes.
pub fn parse_id(input: &str) -> Result<SpiffeId, IdError> {
    check_length(input)?;
    let authority_end = input
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| {
            input[start..]
                .find('/')
                .map(|j| start + j)
                .or(Some(input.len()))
        })
        .unwrap_or(0);
    if input[..authority_end]
        .bytes()
        .any(|b| b.is_ascii_uppercase())
    {
        return Err(invalid(input, "scheme and trust domain must be lower case"));
    }
    SpiffeId::new(input).map_err(|e| invalid(input, e))
}

/// Parses a trust domain given by name (`example.org`) or as an ID
/// (`spiffe://example.org`), refusing upper case and any path.
pub fn parse_trust_domain(input: &str) -> Result<TrustDomain, IdError> {
    if input.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid(input, "trust domain must be lower case"));
    }
    if let Some(rest) = input.strip_prefix("spiffe://") {
        if rest.contains('/') {
            return Err(invalid(input, "a trust domain has no path"));
        }
    }
    TrustDomain::new(input).map_err(|e| invalid(input, e))
}

/// The server's own ID: `spiffe://<td>/spire/server`.
pub fn server_id(td: &TrustDomain) -> SpiffeId {
    join(td, SERVER_PATH)
}

/// An agent ID: `spiffe://<td>/spire/agent/<attestor>/<rest...>`.
pub fn agent_id(td: &TrustDomain, attestor: &str, rest: &[&str]) -> Result<SpiffeId, IdError> {
    let mut segments = vec!["spire", "agent", attestor];
    segments.extend_from_slice(rest);
    SpiffeId::from_segments(td.clone(), &segments)
        .map_err(|e| invalid(&format!("{}/{}", td.id_string(), segments.join("/")), e))
}

fn join(td: &TrustDomain, path: &str) -> SpiffeId {
    // Both halves are valid by construction; fall back to parsing the string
    // form so that no panic path exists.
    SpiffeId::from_segments(
        td.clone(),
        &path
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| SpiffeId::new(td.id_string()).unwrap_or_else(|_| unreachable_id(td)))
}

#[allow(clippy::unreachable)]
fn unreachable_id(td: &TrustDomain) -> SpiffeId {
    unreachable!("trust domain {td} always forms a valid SPIFFE ID")
}

/// True when `id` is an agent ID (`/spire/agent/...`).
pub fn is_agent(id: &SpiffeId) -> bool {
    id.path().starts_with(AGENT_PATH_PREFIX)
}

/// True when `id` is the server ID of its trust domain.
pub fn is_server(id: &SpiffeId) -> bool {
    id.path() == SERVER_PATH
}

/// True when `id` is under the reserved `/spire/` prefix.
pub fn is_reserved(id: &SpiffeId) -> bool {
    id.path() == "/spire" || id.path().starts_with(RESERVED_PATH_PREFIX)
}

/// Checks that `id` may be given to a workload of trust domain `td`: a
/// member of `td`, with a path, outside the reserved prefix.
pub fn check_workload_id(id: &SpiffeId, td: &TrustDomain) -> Result<(), IdError> {
    if !id.is_member_of(td) {
        return Err(IdError::ForeignTrustDomain {
            id: id.to_string(),
            trust_domain: td.to_string(),
        });
    }
    if id.path().is_empty() {
        return Err(IdError::NoPath { id: id.to_string() });
    }
    if is_reserved(id) {
        return Err(IdError::Reserved { id: id.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        let id = parse_id("spiffe://example.org/ns/payments/sa/api").unwrap();
        assert_eq!(id.trust_domain().as_str(), "example.org");
        assert_eq!(id.path(), "/ns/payments/sa/api");
        assert_eq!(parse_id("spiffe://example.org").unwrap().path(), "");
    }

    #[test]
    fn refuses_malformed_ids() {
        for bad in [
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a/./b",
            "spiffe://example.org/%2e%2e/b",
            "spiffe://Example.org/a",
            "SPIFFE://example.org/a",
            "spiffe://example.org/a/",
            "spiffe://example.org//a",
            "spiffe://user@example.org/a",
            "spiffe://example.org:443/a",
            "spiffe://example.org/a?q=1",
            "spiffe://example.org/a#f",
            "https://example.org/a",
            "example.org/a",
            "",
        ] {
            let err = parse_id(bad).unwrap_err();
            assert!(
                err.to_string().contains("invalid SPIFFE ID"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn ids_over_2048_bytes_are_refused() {
        let prefix = "spiffe://example.org/";
        let at_limit = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
        assert_eq!(parse_id(&at_limit).unwrap().to_string().len(), 2048);
        let over = format!("{at_limit}b");
        let err = parse_id(&over).unwrap_err();
        assert!(err.to_string().contains("2048"), "{err}");
        assert!(
            err.to_string().len() < 300,
            "the error does not echo the whole input: {err}"
        );
    }

    #[test]
    fn upper_case_path_is_kept() {
        assert_eq!(parse_id("spiffe://example.org/Web").unwrap().path(), "/Web");
    }

    #[test]
    fn trust_domains() {
        assert_eq!(
            parse_trust_domain("example.org").unwrap().as_str(),
            "example.org"
        );
        assert_eq!(
            parse_trust_domain("spiffe://example.org").unwrap().as_str(),
            "example.org"
        );
        assert!(parse_trust_domain("Example.org").is_err());
        assert!(parse_trust_domain("spiffe://example.org/x").is_err());
        assert!(parse_trust_domain("").is_err());
    }

    #[test]
    fn reserved_and_agent_ids() {
        let td = parse_trust_domain("example.org").unwrap();
        assert_eq!(
            server_id(&td).to_string(),
            "spiffe://example.org/spire/server"
        );
        let agent = agent_id(&td, "join_token", &["abc"]).unwrap();
        assert_eq!(
            agent.to_string(),
            "spiffe://example.org/spire/agent/join_token/abc"
        );
        assert!(is_agent(&agent) && is_reserved(&agent));
        assert!(matches!(
            check_workload_id(&agent, &td),
            Err(IdError::Reserved { .. })
        ));
        let other = parse_id("spiffe://other.org/w").unwrap();
        assert!(matches!(
            check_workload_id(&other, &td),
            Err(IdError::ForeignTrustDomain { .. })
        ));
        assert!(check_workload_id(&parse_id("spiffe://example.org/w").unwrap(), &td).is_ok());
        assert!(
            check_workload_id(&parse_id("spiffe://example.org/spirefoo").unwrap(), &td).is_ok()
        );
    }
}
