//! `DataStore "sql"` end to end: a real `spinel-server` on SQLite, with the
//! DataStore block of SPIRE's stock `server.conf` (only the path made
//! absolute, as the test's working directory is not the server's), and on
//! a real PostgreSQL the test starts; a real agent attests with a join
//! token, an entry is created, the workload fetches its X509-SVID; the
//! server restarts and the entry is still there. And a trust domain on
//! sled moves to SQL with `datastore import -from sled`, keeping its CA.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{bin_path, AgentHandle, AgentOptions, ServerHandle};

use crate::support::sql::{postgres_block, postgres_with_database, server_with, SLED_BLOCK};

const AGENT_ALIAS: &str = "spiffe://example.org/myagent";
const WORKLOAD: &str = "spiffe://example.org/sql-workload";

/// Token, agent, entry, SVID; then a restart keeps the entry.
fn agent_gets_an_svid(mut server: ServerHandle) {
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    let selector = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            WORKLOAD,
            "-selector",
            &selector,
        ])
        .unwrap();
    fetch_until_served(&agent);
    server.restart().unwrap();
    let listed = server
        .cli(&["entry", "show", "-spiffeID", WORKLOAD])
        .unwrap();
    assert!(
        listed.stdout.contains(WORKLOAD),
        "entry lost on restart: {listed:?}"
    );
    drop(agent);
    drop(server);
}

fn fetch_until_served(agent: &AgentHandle) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = agent.cli(&["api", "fetch", "x509"]).unwrap();
        if out.success() && out.stdout.contains(WORKLOAD) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no SVID for {WORKLOAD}: {out:?}\nagent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn stock_spire_sqlite3_datastore_serves_an_svid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data/datastore.sqlite3");
    let block = format!(
        "    DataStore \"sql\" {{\n        plugin_data {{\n            database_type = \"sqlite3\"\n            connection_string = \"{}\"\n        }}\n    }}",
        file.display()
    );
    let server = server_with(&block);
    assert!(file.exists(), "the server made {}", file.display());
    agent_gets_an_svid(server);
}

#[test]
fn postgres_datastore_serves_an_svid() {
    let Some((_dir, pg)) = postgres_with_database() else {
        return;
    };
    agent_gets_an_svid(server_with(&postgres_block(&pg, "spinel")));
    drop(pg);
}

/// A trust domain on sled moves to SQL: `datastore import -from sled`
/// copies entries, agents, bundles and this server's CA journal; the
/// server restarts on SQLite with the same CA, and its agent carries on.
#[test]
fn a_sled_trust_domain_moves_to_sql_with_its_ca() {
    let mut server = ServerHandle::start(Default::default()).unwrap();
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            WORKLOAD,
            "-selector",
            &format!("unix:uid:{}", my_uid()),
        ])
        .unwrap();
    fetch_until_served(&agent);
    let bundle_before = server.bundle_pem().unwrap();
    server.stop().unwrap();

    let data = server.dir.path().join("data");
    let config = std::fs::read_to_string(&server.config_path).unwrap();
    let block = format!(
        "    DataStore \"sql\" {{\n        plugin_data {{\n            database_type = \"sqlite3\"\n            connection_string = \"{}\"\n        }}\n    }}",
        data.join("datastore.sqlite3").display()
    );
    std::fs::write(&server.config_path, config.replace(SLED_BLOCK, &block)).unwrap();
    let out = std::process::Command::new(bin_path("spinel-server"))
        .args(["datastore", "import", "-from", "sled", "-path"])
        .arg(data.join("datastore"))
        .arg("-config")
        .arg(&server.config_path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "agents: 1 imported",
        "bundles: 1 imported",
        "CA journal: 1 imported",
    ] {
        assert!(report.contains(line), "{line:?} missing:\n{report}");
    }
    assert!(
        report.contains("entries: 2 imported, 0 already present, 0 skipped"),
        "{report}"
    );

    server.start_process().unwrap();
    assert_eq!(
        server.bundle_pem().unwrap(),
        bundle_before,
        "the server kept its CA"
    );
    let listed = server
        .cli(&["entry", "show", "-spiffeID", WORKLOAD])
        .unwrap();
    assert!(listed.stdout.contains(WORKLOAD), "{listed:?}");
    // The agent's SVID, from the same CA and recorded in the copied agent
    // record, is accepted: it syncs again with no new attestation.
    let fresh = agent.cli(&["api", "fetch", "x509"]).unwrap();
    assert!(fresh.stdout.contains(WORKLOAD), "{fresh:?}");
    let log = server.log();
    assert_eq!(
        log.matches("Agent attestation request completed").count(),
        1,
        "the agent attested again:\n{log}"
    );
}
