//! `DataStore "sql"` end to end: a real `spinel-server` on SQLite, with the
//! DataStore block of SPIRE's stock `server.conf` (only the path made
//! absolute, as the test's working directory is not the server's), and on
//! a real PostgreSQL the test starts; a real agent attests with a join
//! token, an entry is created, the workload fetches its X509-SVID; the
//! server restarts and the entry is still there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use spinel_test_fixtures::postgres::{self, Postgres, PostgresOptions};
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle};

use crate::support::sql::{postgres_block, server_with};

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
    let Some(install) = postgres::available() else {
        eprintln!("skipped: needs PostgreSQL under /usr/lib/postgresql");
        return;
    };
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let pg = Postgres::start(&install, dir.path(), &PostgresOptions::default()).unwrap();
    pg.create_database("spinel").unwrap();
    agent_gets_an_svid(server_with(&postgres_block(&pg, "spinel")));
    drop(pg);
}
