//! Mutual TLS between two services whose identities come from the Spinel
//! agent, with nothing but the SPIFFE client libraries (`spiffe` and
//! `spiffe-rustls` from crates.io): no certificate files, no rotation code.
//!
//! - `spinel-mtls-server --listen 127.0.0.1:8443 --allow spiffe://example.org/client`
//!   accepts TLS connections, requires a client X509-SVID whose SPIFFE ID is
//!   one of `--allow`, and answers each line `ping N` with
//!   `pong N from <its own SPIFFE ID> to <the client's>`.
//! - `spinel-mtls-client --connect 127.0.0.1:8443 --server-id spiffe://example.org/server`
//!   connects, accepts only a server presenting `--server-id`, and sends
//!   pings.
//!
//! Both find the agent through `SPIFFE_ENDPOINT_SOCKET`. The `X509Source`
//! follows the agent's stream, so every new handshake uses the current
//! SVID and bundle: rotation needs no restart, and a connection opened
//! before a rotation keeps working. Register them (e.g. with
//! `unix:path` selectors from `discover_workload_path`) and run them, as
//! `tests/e2e.rs` does.
#![forbid(unsafe_code)]

use anyhow::Context as _;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// The line protocol: the server's answer to `ping <n>`.
pub fn pong(n: &str, server_id: &str, client_id: &str) -> String {
    format!("pong {n} from {server_id} to {client_id}\n")
}

/// The SPIFFE ID (the one URI SAN) of a DER certificate.
pub fn spiffe_id_of(der: &[u8]) -> anyhow::Result<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow::anyhow!("peer certificate does not parse: {e}"))?;
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                san.general_names.iter().find_map(|n| match n {
                    GeneralName::URI(u) if u.starts_with("spiffe://") => Some((*u).to_owned()),
                    _ => None,
                })
            }
            _ => None,
        })
        .context("peer certificate has no SPIFFE ID")
}

/// The serial number (hex) of a DER certificate, to show rotation.
pub fn serial_of(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.raw_serial_as_string())
        .unwrap_or_default()
}

/// Connects to the Workload API named by `SPIFFE_ENDPOINT_SOCKET` and
/// waits for the first SVID.
pub async fn source() -> anyhow::Result<spiffe::X509Source> {
    spiffe::X509Source::new()
        .await
        .context("connecting to the Workload API (is SPIFFE_ENDPOINT_SOCKET set?)")
}
