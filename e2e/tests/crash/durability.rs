//! Crash durability (invariant 6): `kill -9` of a real server while
//! operators are writing entries and join tokens, then a restart on the
//! same data. Every acknowledged write is there, whole; at most the one
//! write in flight at the kill may also be there (never half of it); the
//! trust bundle is the same, so agents and workloads keep trusting it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spinel_test_fixtures::spinel::{entry_id_of, run_cli};
use spinel_test_fixtures::{bin_path, ServerHandle, ServerOptions};

const PARENT: &str = "spiffe://example.org/node";

/// Entry IDs acknowledged by `entry create`, with the selector written.
type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Creates entries one after the other until a call fails (the server was
/// killed) or `stop` is set.
fn writer(
    socket: String,
    round: usize,
    acked: Acked,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for i in 0..10_000 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let id = format!("spiffe://example.org/r{round}/w{i}");
            let selector = format!("unix:uid:{}", 10_000 + i);
            let out = run_cli(
                &bin_path("spinel-server"),
                &[
                    "entry",
                    "create",
                    "-socketPath",
                    &socket,
                    "-parentID",
                    PARENT,
                    "-spiffeID",
                    &id,
                    "-selector",
                    &selector,
                    "-dns",
                    "a.example.org",
                ],
            )
            .unwrap();
            if !out.success() {
                return;
            }
            acked
                .lock()
                .unwrap()
                .insert(entry_id_of(&out.stdout).unwrap(), selector);
        }
    })
}

fn entries(server: &ServerHandle) -> Vec<serde_json::Value> {
    let out = server
        .cli(&["entry", "show", "-output", "json"])
        .unwrap()
        .ok()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["entries"].as_array().cloned().unwrap_or_default()
}

#[test]
fn kill_9_during_writes_loses_no_acknowledged_entry_and_tears_none() {
    let mut server = ServerHandle::start(ServerOptions::default()).unwrap();
    let bundle = server.bundle_pem().unwrap();
    let acked: Acked = Arc::default();
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let socket = server.socket_path.display().to_string();
        let w = writer(socket, round, acked.clone(), stop.clone());
        // Let a few writes land, then crash the server mid-stream.
        std::thread::sleep(Duration::from_millis(400 + 250 * round as u64));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
        server.start_process().unwrap();

        let stored = entries(&server);
        let acked = acked.lock().unwrap();
        assert!(
            !acked.is_empty(),
            "round {round}: no write was acknowledged"
        );
        let by_id: BTreeMap<&str, &serde_json::Value> = stored
            .iter()
            .map(|e| (e["id"].as_str().unwrap(), e))
            .collect();
        for (id, selector) in acked.iter() {
            let e = by_id
                .get(id.as_str())
                .unwrap_or_else(|| panic!("round {round}: acknowledged entry {id} is gone"));
            let (kind, value) = selector.split_once(':').unwrap();
            assert_eq!(e["selectors"][0]["type"], kind, "{e}");
            assert_eq!(e["selectors"][0]["value"], value, "{e}");
        }
        // Nothing half-written: every stored entry is whole.
        for e in &stored {
            assert_eq!(e["parent_id"]["path"], "/node", "{e}");
            assert!(
                e["spiffe_id"]["path"].as_str().unwrap().starts_with("/r"),
                "{e}"
            );
            assert_eq!(e["selectors"].as_array().unwrap().len(), 1, "{e}");
            assert_eq!(e["dns_names"][0], "a.example.org", "{e}");
        }
        // At most the one create in flight at the kill is extra.
        assert!(
            stored.len() == acked.len() || stored.len() == acked.len() + 1,
            "round {round}: {} stored, {} acknowledged",
            stored.len(),
            acked.len()
        );
        // The count agrees with the listing (indexes consistent).
        let count = server
            .cli(&["entry", "count"])
            .unwrap()
            .ok()
            .unwrap()
            .stdout;
        assert!(count.contains(&stored.len().to_string()), "{count}");
    }
    // The CA survived every crash: the same trust bundle.
    assert_eq!(server.bundle_pem().unwrap(), bundle);
    // A join token acknowledged just before a crash still attests an agent.
    let token = server.generate_token(None).unwrap();
    server.kill();
    server.start_process().unwrap();
    let agent = spinel_test_fixtures::AgentHandle::start(
        &server,
        spinel_test_fixtures::AgentOptions {
            join_token: Some(token.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        agent.log().contains(&format!(
            "spiffe://example.org/spire/agent/join_token/{token}"
        )) || server
            .cli(&["agent", "list"])
            .unwrap()
            .stdout
            .contains(&token),
        "the agent did not attest with the pre-crash token"
    );
}
