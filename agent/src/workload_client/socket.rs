//! Which Workload API socket a client dials when it was given none:
//! `SPIFFE_ENDPOINT_SOCKET`, else the agent's default
//! ([`DEFAULT_SOCKET_PATH`], the one `agent.conf` defaults to), else
//! SPIRE's default when only that one exists.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::config::DEFAULT_SOCKET_PATH;

/// The environment variable SPIFFE clients read the socket address from.
pub const ENDPOINT_SOCKET_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// SPIRE's default Workload API socket.
pub const SPIRE_SOCKET_PATH: &str = "/tmp/spire-agent/public/api.sock";

/// The Workload API socket a client uses when it was given none: Spinel's
/// default `path`, unless it is missing and SPIRE's default path exists (an
/// agent run with SPIRE's `agent.conf`, whose `socket_path` is SPIRE's
/// path, or SPIRE's own agent). See docs/compatibility.md.
pub fn default_socket_path(path: &Path) -> PathBuf {
    let spire = Path::new(SPIRE_SOCKET_PATH);
    if path == Path::new(DEFAULT_SOCKET_PATH) && !path.exists() && spire.exists() {
        return spire.to_owned();
    }
    path.to_owned()
}

/// The socket to use: `-socketPath`, else `SPIFFE_ENDPOINT_SOCKET`
/// (`unix:///path`), else the default (SPIRE's default path when only that
/// one exists: [`default_socket_path`]).
pub(crate) fn socket_path(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    match std::env::var(ENDPOINT_SOCKET_ENV) {
        Ok(v) if !v.is_empty() => socket_from_endpoint(&v),
        _ => Ok(default_socket_path(Path::new(DEFAULT_SOCKET_PATH))),
    }
}

/// The path of a `unix:` endpoint address (`unix:///p` or `unix:/p`).
pub(crate) fn socket_from_endpoint(addr: &str) -> anyhow::Result<PathBuf> {
    let Some(rest) = addr.strip_prefix("unix:") else {
        bail!("{ENDPOINT_SOCKET_ENV}={addr:?}: only unix:///path addresses are supported");
    };
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if !path.starts_with('/') {
        bail!("{ENDPOINT_SOCKET_ENV}={addr:?}: the socket path must be absolute");
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_addresses() {
        assert_eq!(
            socket_from_endpoint("unix:///tmp/a.sock").unwrap(),
            PathBuf::from("/tmp/a.sock")
        );
        assert_eq!(
            socket_from_endpoint("unix:/tmp/a.sock").unwrap(),
            PathBuf::from("/tmp/a.sock")
        );
        assert!(socket_from_endpoint("tcp://127.0.0.1:1").is_err());
        assert!(socket_from_endpoint("unix://relative").is_err());
        assert_eq!(
            socket_path(Some(Path::new("/x"))).unwrap(),
            PathBuf::from("/x")
        );
    }
}
