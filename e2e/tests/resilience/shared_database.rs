//! Three `spinel-server` processes on one PostgreSQL database serve one
//! trust domain (issue 13): each keeps its own CA and the stored bundle
//! holds all three; a join token made through one server attests the
//! agent on whichever it reaches; an entry made through another server
//! reaches the workload within about a second; when the server the agent
//! attested to and one more are killed, the agent moves to the last one,
//! which accepts the agent SVID another server signed and signs the next
//! SVIDs itself, with no gap for the workload. When the database goes
//! away, a server says so (errors, a degraded health check) and keeps
//! serving its agents from memory; when it restarts mid-write, nothing
//! acknowledged is lost. A ban written through one server is enforced by
//! another that holds the agent's record in memory.
//!
//! Timings are printed (run with `--no-capture`), not asserted beyond a
//! generous bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, SystemTime};

use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::ServerHandle;

use super::failover::{agent_with_list, fetch, register, AGENT_ALIAS};
use crate::support::sql::{postgres_block, postgres_with_database, server_with};
use crate::support::wait_until;

const OTHER: &str = "spiffe://example.org/made-elsewhere";

fn certificates(server: &ServerHandle) -> usize {
    server
        .bundle_pem()
        .map(|pem| pem.matches("BEGIN CERTIFICATE").count())
        .unwrap_or(0)
}

#[test]
fn three_servers_on_one_postgres_database_serve_one_trust_domain() {
    let Some((_dir, pg)) = postgres_with_database() else {
        return;
    };
    let block = postgres_block(&pg, "spinel");
    let mut servers: Vec<ServerHandle> = (0..3).map(|_| server_with(&block)).collect();

    // One bundle with the three CAs, served by every server.
    for s in &servers {
        wait_until(
            "the bundle with the three servers' CAs",
            Duration::from_secs(10),
            || s.log(),
            || certificates(s) == 3,
        );
    }

    // The token is in the shared database: any server takes it. The agent
    // starts at a random address of the list.
    let token = register(&servers[0], "20");
    let addresses: Vec<String> = servers
        .iter()
        .map(|s| format!("\"127.0.0.1:{}\"", s.port))
        .collect();
    let agent = agent_with_list(&servers[2], token, &addresses);
    let out = tempfile::tempdir_in("/tmp").unwrap();
    let log = || agent.log();
    wait_until("a first SVID", Duration::from_secs(60), log, || {
        fetch(&agent, out.path()).is_some()
    });

    // An entry made through another server reaches the workload promptly.
    let made = std::time::Instant::now();
    servers[1]
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            OTHER,
            "-selector",
            &format!("unix:uid:{}", my_uid()),
            "-x509SVIDTTL",
            "20",
        ])
        .unwrap();
    let propagated = wait_until(
        "the entry made through another server",
        Duration::from_secs(10),
        log,
        || {
            agent
                .cli(&["api", "fetch", "x509"])
                .is_ok_and(|o| o.stdout.contains(OTHER))
        },
    );
    println!(
        "entry created through another server to the workload: {:.0} ms (create call included: {:.0} ms)",
        propagated.as_secs_f64() * 1000.0,
        made.elapsed().as_secs_f64() * 1000.0
    );

    // Kill the server that attested the agent and one more; the last one
    // never saw the agent before.
    let attested = servers
        .iter()
        .position(|s| s.log().contains("Agent attestation request completed"))
        .unwrap_or_else(|| panic!("no server attested the agent:\n{}", agent.log()));
    let survivor = (attested + 1) % 3;
    for (i, s) in servers.iter_mut().enumerate() {
        if i != survivor {
            s.kill();
        }
    }
    let killed = SystemTime::now();
    // SVIDs signed before the kill end by killed + 20 s; a later one was
    // signed by the survivor. Every fetch meanwhile gets an SVID.
    let signed = wait_until(
        "an SVID signed by the surviving server",
        Duration::from_secs(60),
        log,
        || {
            let not_after = fetch(&agent, out.path());
            assert!(
                not_after.is_some(),
                "a fetch got no SVID during the move:\n{}",
                agent.log()
            );
            not_after.is_some_and(|na| na > killed + Duration::from_secs(21))
        },
    );
    println!(
        "two of three servers killed to an SVID the survivor signed: {:.2} s",
        signed.as_secs_f64()
    );
    let survivor_port = format!("127.0.0.1:{}", servers[survivor].port);
    let agent_log = agent.log();
    assert!(
        agent_log
            .lines()
            .any(|l| l.contains("moved to another server") && l.contains(&survivor_port)),
        "the agent did not move to {survivor_port}:\n{agent_log}"
    );
    assert!(
        !servers[survivor]
            .log()
            .contains("Agent attestation request completed"),
        "the survivor attested the agent again instead of accepting its SVID"
    );
    drop(agent);
    drop(servers);
    drop(pg);
}

/// Servers keep the records of the agents they serve in memory and follow
/// the database's agent change log: a ban written through one server is
/// enforced by another within about a second (the cache's interval is
/// half a second), not only after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_ban_through_one_server_is_enforced_by_another() {
    use spinel_proto::spire::api::server::entry::v1::entry_client::EntryClient;
    use spinel_proto::spire::api::server::entry::v1::GetAuthorizedEntriesRequest;

    use crate::support::raw_agent;

    let Some((_dir, pg)) = postgres_with_database() else {
        return;
    };
    let block = postgres_block(&pg, "spinel");
    let servers: Vec<ServerHandle> = (0..2).map(|_| server_with(&block)).collect();
    for s in &servers {
        wait_until(
            "the bundle with both servers' CAs",
            Duration::from_secs(10),
            || s.log(),
            || certificates(s) == 2,
        );
    }
    let token = servers[0].generate_token(None).unwrap();
    let agent = raw_agent::attest(&servers[0], &token).await.unwrap();
    let mut entries = EntryClient::new(raw_agent::as_agent(&servers[1], &agent).await);
    // The second server reads the agent's record and keeps it.
    for _ in 0..3 {
        entries
            .get_authorized_entries(GetAuthorizedEntriesRequest::default())
            .await
            .unwrap();
    }
    servers[0]
        .cli(&["agent", "ban", "-spiffeID", &agent.id])
        .unwrap()
        .ok()
        .unwrap();
    let banned = std::time::Instant::now();
    loop {
        match entries
            .get_authorized_entries(GetAuthorizedEntriesRequest::default())
            .await
        {
            Err(status) if status.code() == tonic::Code::PermissionDenied => break,
            Ok(_) => assert!(
                banned.elapsed() < Duration::from_secs(10),
                "the banned agent is still served by the other server 10 s after the ban:\n{}",
                servers[1].log()
            ),
            Err(other) => panic!("want PermissionDenied, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "ban through one server to refusal by the other: {:.0} ms",
        banned.elapsed().as_secs_f64() * 1000.0
    );
}

/// The database goes away under a running server: the server is degraded,
/// not down. Registration writes fail naming the database as unavailable
/// and the health check says degraded, while the server keeps serving its
/// agent from memory: the agent keeps renewing its workload's SVID, which
/// the server signs during the outage.
#[test]
fn a_server_whose_database_is_down_keeps_serving_its_agents() {
    let Some((_dir, pg)) = postgres_with_database() else {
        return;
    };
    let server = server_with(&postgres_block(&pg, "spinel"));
    let token = register(&server, "20");
    let agent = agent_with_list(&server, token, &[format!("\"127.0.0.1:{}\"", server.port)]);
    let out = tempfile::tempdir_in("/tmp").unwrap();
    let log = || agent.log() + &server.log();
    wait_until("a first SVID", Duration::from_secs(60), log, || {
        fetch(&agent, out.path()).is_some()
    });
    let healthy = server.cli(&["healthcheck"]).unwrap();
    assert_eq!(healthy.stdout.trim(), "Server is healthy.", "{healthy:?}");

    drop(pg);
    let down = SystemTime::now();
    let refused = server
        .cli(&[
            "entry",
            "create",
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            OTHER,
            "-selector",
            "unix:uid:4242",
        ])
        .unwrap();
    assert!(!refused.success(), "{refused:?}");
    assert!(
        refused.stderr.contains("unavailable"),
        "the error should say the database is unavailable: {refused:?}"
    );
    let health = server.cli(&["healthcheck"]).unwrap();
    assert!(health.success(), "{health:?}");
    assert!(health.stdout.contains("degraded"), "{health:?}");
    // Every SVID from before the outage ends by down + 20 s: a later one
    // was signed while the database was down. No fetch fails meanwhile.
    wait_until(
        "an SVID signed while the database is down",
        Duration::from_secs(40),
        log,
        || {
            let not_after = fetch(&agent, out.path());
            assert!(not_after.is_some(), "a fetch failed:\n{}", log());
            not_after.is_some_and(|na| na > down + Duration::from_secs(21))
        },
    );
}

/// PostgreSQL restarts while entries are being written: the server
/// reconnects by itself, and every entry it acknowledged is there after.
#[test]
fn postgres_restarted_mid_write_loses_no_acknowledged_entry() {
    let Some((_dir, mut pg)) = postgres_with_database() else {
        return;
    };
    let server = server_with(&postgres_block(&pg, "spinel"));

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (acknowledged, refused) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let (mut acknowledged, mut refused) = (Vec::new(), 0usize);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let id = format!("spiffe://example.org/restart/{n}");
                match server.create_entry(&[
                    "-parentID",
                    AGENT_ALIAS,
                    "-spiffeID",
                    &id,
                    "-selector",
                    "unix:uid:4242",
                ]) {
                    Ok(entry_id) => acknowledged.push(entry_id),
                    Err(_) => refused += 1,
                }
            }
            (acknowledged, refused)
        });
        std::thread::sleep(Duration::from_secs(2));
        pg.stop();
        std::thread::sleep(Duration::from_secs(1));
        pg.start_again().unwrap();
        // Writes succeed again without restarting the server.
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap()
    });
    println!(
        "{} entries acknowledged, {refused} refused while PostgreSQL restarted",
        acknowledged.len()
    );
    let after = server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/restart/after",
            "-selector",
            "unix:uid:4242",
        ])
        .unwrap_or_else(|e| panic!("no write after the restart: {e:#}\n{}", server.log()));
    let listed = server.cli(&["entry", "show", "-output", "json"]).unwrap();
    for id in acknowledged.iter().chain(std::iter::once(&after)) {
        assert!(
            listed.stdout.contains(id.as_str()),
            "acknowledged entry {id} lost"
        );
    }
    assert!(
        refused > 0 || acknowledged.len() > 10,
        "the writer never ran"
    );
}
