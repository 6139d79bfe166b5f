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

/// Writes the `-data` file of `count` entries under `/batch{round}/`.
fn batch_file(dir: &std::path::Path, round: usize, count: usize) -> String {
    let entries: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            serde_json::json!({
                "spiffe_id": format!("spiffe://example.org/batch{round}/w{i}"),
                "parent_id": PARENT,
                "selectors": [{"type": "unix", "value": format!("uid:{}", 20_000 + i)}],
            })
        })
        .collect();
    let path = dir.join(format!("batch{round}.json"));
    let json = serde_json::json!({ "entries": entries }).to_string();
    spinel_test_fixtures::process::write_file(&path, &json).unwrap();
    path.display().to_string()
}

/// A batch create is one durable write: acknowledged, it survives a
/// `kill -9` whole; killed after its write but before its flush
/// (`datastore:entries:batch-written`), the restarted server has all of
/// it or none of it, never a part, and the count agrees.
#[test]
fn kill_9_keeps_acknowledged_batches_and_never_half_a_batch() {
    if !crate::support::crash::failpoints_compiled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerHandle::start(ServerOptions::default()).unwrap();
    let acked = batch_file(dir.path(), 0, 200);
    server
        .cli(&["entry", "create", "-data", &acked])
        .unwrap()
        .ok()
        .unwrap();
    server.kill();
    server.start_process().unwrap();
    assert_eq!(
        entries(&server).len(),
        200,
        "an acknowledged batch is whole"
    );

    let torn = batch_file(dir.path(), 1, 300);
    let point = "datastore:entries:batch-written";
    let out = crate::support::crash::crash_during(
        &mut server,
        point,
        &["entry", "create", "-data", &torn],
    );
    assert!(!out.success(), "the batch was not acknowledged");
    let stored = entries(&server);
    let in_batch = stored
        .iter()
        .filter(|e| {
            e["spiffe_id"]["path"]
                .as_str()
                .unwrap()
                .starts_with("/batch1/")
        })
        .count();
    assert!(
        in_batch == 0 || in_batch == 300,
        "{in_batch} of 300 survived"
    );
    assert_eq!(stored.len(), 200 + in_batch);
    let count = server
        .cli(&["entry", "count"])
        .unwrap()
        .ok()
        .unwrap()
        .stdout;
    assert!(count.contains(&stored.len().to_string()), "{count}");
    // Sent again, the batch completes (each entry created or already there).
    server.cli(&["entry", "create", "-data", &torn]).unwrap();
    assert_eq!(entries(&server).len(), 500);
}
