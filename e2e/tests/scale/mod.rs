//! Scale: an agent authorized for many entries (issue 12), many agents
//! on several servers (issue 13).
//!
//! - `many_entries.rs`: 10,000 entries for one agent: every SVID is
//!   minted in chunks far under the gRPC message limit, the workload gets
//!   its SVIDs, and the agent does not keep asking once it has them all.
//! - `large_response.rs`: a workload whose X509-SVID response is over the
//!   4 MiB gRPC clients accept by default gets it with a raised limit,
//!   and the agent logs a warning naming the caller and the size.
//! - `ha_scale.rs`: `spinel-bench ha-scale` in a CI size: 200 simulated
//!   agents syncing with three servers on PostgreSQL; every agent gets
//!   exactly its entries and no sync fails.

mod ha_scale;
mod large_response;
mod many_entries;

use std::time::{Duration, Instant};

use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle};

/// Starts an agent of `server` attesting with `token` (memory keys) and
/// waits, up to 240 s, until it holds `count` SVIDs.
async fn agent_holding(server: &ServerHandle, token: String, count: usize) -> AgentHandle {
    let agent = AgentHandle::start(
        server,
        AgentOptions {
            join_token: Some(token),
            key_manager: Some("memory".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    while agent.published_identities() < count {
        assert!(
            Instant::now() < deadline,
            "the agent never held {count} SVIDs (at most {}); agent log tail:\n{}",
            agent.published_identities(),
            tail(&agent.log())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent
}

/// The last 40 lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
