//! A raw agent (a tonic client, no `spinel-agent`) against a real
//! `spinel-server` process, for the `audit/` and `propagation/` tests (the
//! client itself is `spinel_test_fixtures::raw_agent`, shared with the
//! server's in-process tests). Also the admin socket as a gRPC channel and
//! the audit lines of the server's JSON log.

use spinel_test_fixtures::raw_agent::unix_channel;
pub use spinel_test_fixtures::raw_agent::{anonymous, attest, csr, id, Agent};
use spinel_test_fixtures::ServerHandle;
use tonic::transport::Channel;

/// A TLS channel to `server` authenticated with `agent`'s SVID.
pub async fn as_agent(server: &ServerHandle, agent: &Agent) -> Channel {
    agent.channel(server).await
}

/// A channel over the server's admin Unix socket (a local admin).
pub async fn admin(server: &ServerHandle) -> Channel {
    unix_channel(server.socket_path.clone()).await
}

/// The audit records in the server log, as JSON `fields` objects (the
/// server must run with `audit_log_enabled` and `log_format = "json"`).
pub fn audit_lines(server: &ServerHandle) -> Vec<serde_json::Value> {
    server
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["type"] == "audit")
        .map(|v| v["fields"].clone())
        .collect()
}

/// Waits (bounded, as a failure guard) for the audit line of `method`
/// (a path suffix) matching `keep`.
pub async fn audit_line(
    server: &ServerHandle,
    method: &str,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(line) = audit_lines(server)
            .into_iter()
            .find(|l| l["method"].as_str().is_some_and(|m| m.ends_with(method)) && keep(l))
        {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no audit line for {method}:\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
