//! One agent authorized for 10,000 entries, created before it starts (so
//! its first sync faces all of them at once, which used to be one 5.3 MB
//! `BatchNewX509SVID` response over the 4 MiB gRPC limit, retried
//! forever). The agent must hold an SVID for every entry, serve the
//! workload's, and stop asking the server once it has them: the server's
//! audit log counts its `BatchNewX509SVID` calls.
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::Duration;

use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{ServerHandle, ServerOptions};

use crate::support::raw_agent::audit_lines;

const NODE: &str = "spiffe://example.org/node";
const ENTRIES: usize = 10_000;
/// Entries the test process itself matches (the others name other uids).
const MINE: usize = 10;
/// The agent's chunk of `BatchNewX509SVID` (agent/src/manager/sync/svids.rs).
const CHUNK: usize = 256;

/// Creates `ENTRIES` entries under `NODE` with `entry create -data`;
/// entry `i < MINE` selects this process's uid.
fn create_entries(server: &ServerHandle) {
    let entries: Vec<serde_json::Value> = (0..ENTRIES)
        .map(|i| {
            let uid = if i < MINE {
                my_uid()
            } else {
                4_000_000 + i as u32
            };
            serde_json::json!({
                "spiffe_id": format!("spiffe://example.org/scale/{i:05}"),
                "parent_id": NODE,
                "selectors": [{"type": "unix", "value": format!("uid:{uid}")}],
            })
        })
        .collect();
    server.create_entries_from_data(&entries, 1_000).unwrap();
}

fn batch_calls(server: &ServerHandle) -> Vec<serde_json::Value> {
    audit_lines(server)
        .into_iter()
        .filter(|l| {
            l["method"]
                .as_str()
                .is_some_and(|m| m.ends_with("/BatchNewX509SVID"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_with_10000_entries_holds_them_all_and_stops_asking() {
    let server = ServerHandle::start(ServerOptions {
        key_manager: "memory".into(),
        server_extra: "    audit_log_enabled = true\n    log_format = \"json\"".into(),
        ..Default::default()
    })
    .unwrap();
    let token = server.generate_token(Some(NODE)).unwrap();
    create_entries(&server);

    let agent = super::agent_holding(&server, token, ENTRIES).await;

    // The workload gets its own SVIDs.
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let svids = client.fetch_all_x509_svids().await.unwrap();
    let mut ids: Vec<String> = svids.iter().map(|s| s.spiffe_id().to_string()).collect();
    ids.sort();
    let expected: Vec<String> = (0..MINE)
        .map(|i| format!("spiffe://example.org/scale/{i:05}"))
        .collect();
    assert_eq!(ids, expected);

    // Every call succeeded and asked for at most a chunk; all of them
    // together asked for each entry about once, not again and again.
    let calls = batch_calls(&server);
    for call in &calls {
        assert_eq!(call["status"], "success", "{call}");
        let asked = call["entity_ids"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .count();
        assert!(asked <= CHUNK, "a call asked for {asked} SVIDs");
    }
    let needed = ENTRIES.div_ceil(CHUNK);
    assert!(
        calls.len() <= needed + 2,
        "{} BatchNewX509SVID calls for {ENTRIES} entries ({needed} chunks)",
        calls.len()
    );
    // Several sync rounds later (one a second), no more are made.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        batch_calls(&server).len(),
        calls.len(),
        "the agent kept asking"
    );
    assert!(
        !agent.log().contains("sync with the server failed"),
        "{}",
        super::tail(&agent.log())
    );
}
