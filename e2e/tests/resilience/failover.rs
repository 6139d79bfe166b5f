//! Agents and unreachable servers, with real processes: a server back from
//! an outage longer than the agent's longest backoff is noticed promptly,
//! a list of addresses whose first ones are dead still reaches the live
//! server, a server in the list the agent's bundle does not trust is
//! passed over, never used, and an agent whose server dies moves to the
//! next one with no gap for workloads (here the next server is a copy of
//! the first's sled data, the same CA; `shared_database.rs` does it with
//! three servers and three CAs on one PostgreSQL database).
//!
//! Timings are printed (run with `--no-capture`; figures in
//! docs/benchmarks.md), not asserted beyond a generous bound.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};
use x509_parser::pem::Pem;

use crate::support::wait_until;

pub(super) const AGENT_ALIAS: &str = "spiffe://example.org/node";
pub(super) const WORKLOAD: &str = "spiffe://example.org/web";

/// The agent's longest backoff between sync attempts
/// (`spinel_agent::manager::MAX_BACKOFF`).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A join token for the agent, and an entry for this process's uid with a
/// `ttl`-second X509-SVID.
pub(super) fn register(server: &ServerHandle, ttl: &str) -> String {
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            WORKLOAD,
            "-selector",
            &format!("unix:uid:{}", my_uid()),
            "-x509SVIDTTL",
            ttl,
        ])
        .unwrap();
    token
}

/// The NotAfter of the SVID a workload fetch returns, or `None` when the
/// agent serves none.
pub(super) fn fetch(agent: &AgentHandle, dir: &Path) -> Option<SystemTime> {
    let _ = std::fs::remove_file(dir.join("svid.0.pem"));
    let out = agent
        .cli(&["api", "fetch", "x509", "-write", dir.to_str().unwrap()])
        .unwrap();
    if !out.success() {
        return None;
    }
    let pem = std::fs::read(dir.join("svid.0.pem")).ok()?;
    let pem = Pem::iter_from_buffer(&pem).next()?.ok()?;
    let cert = pem.parse_x509().ok()?;
    let secs = cert.validity().not_after.timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Ports nothing listens on (bound, then released).
fn dead_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

#[test]
fn a_server_back_after_an_outage_longer_than_the_backoff_is_noticed_promptly() {
    let mut server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = register(&server, "20");
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    let out = tempfile::tempdir_in("/tmp").unwrap();
    let log = || agent.log();
    wait_until("a first SVID", Duration::from_secs(60), log, || {
        fetch(&agent, out.path()).is_some()
    });

    server.kill();
    let down = Instant::now();
    // Down for longer than the backoff takes to reach its cap (1+2+4+8+16
    // s) plus a while: an agent that only backs off would now sleep ~30 s.
    std::thread::sleep(MAX_BACKOFF + Duration::from_secs(6));
    // The 20 s SVID expired meanwhile and is no longer served.
    assert!(
        fetch(&agent, out.path()).is_none(),
        "an expired SVID was served"
    );

    let restarting = Instant::now();
    server.start_process().unwrap();
    let healthy = restarting.elapsed();
    let fresh = wait_until(
        "a fresh SVID after the server returned",
        MAX_BACKOFF,
        log,
        || fetch(&agent, out.path()).is_some_and(|na| na > SystemTime::now()),
    );
    println!(
        "server down {:.1} s; restart to healthy {:.2} s; healthy to a fresh SVID at the workload {:.2} s",
        (restarting - down).as_secs_f64(),
        healthy.as_secs_f64(),
        fresh.as_secs_f64()
    );
    let agent_log = agent.log();
    assert!(
        agent_log.contains("probing for its return"),
        "the agent did not probe:\n{agent_log}"
    );
    assert!(agent_log.contains("sync with the server recovered"));
    // Generous: an agent sleeping out its backoff would take up to 30 s.
    assert!(
        fresh < Duration::from_secs(15),
        "a fresh SVID took {fresh:?} after the server was back; agent log:\n{agent_log}"
    );
}

/// An agent of `server` configured with `servers_list` (TOML strings)
/// instead of SPIRE's `server_address` + `server_port`, started.
pub(super) fn agent_with_list(
    server: &ServerHandle,
    token: String,
    servers_list: &[String],
) -> AgentHandle {
    let mut agent = AgentHandle::configure(
        server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    let spire_keys = format!(
        "server_address = \"127.0.0.1\"\n    server_port = \"{}\"",
        server.port
    );
    let config = std::fs::read_to_string(&agent.config_path).unwrap();
    assert!(config.contains(&spire_keys), "{config}");
    let config = config.replace(
        &spire_keys,
        &format!("server_addresses = [{}]", servers_list.join(", ")),
    );
    std::fs::write(&agent.config_path, config).unwrap();
    agent.start_process().unwrap();
    agent
}

#[test]
fn a_list_with_dead_addresses_first_reaches_the_live_server() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = register(&server, "600");
    // Three dead addresses, then the server: whichever the agent starts
    // at (a random position), it reaches the live one.
    let mut addresses: Vec<String> = dead_ports(3)
        .into_iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    addresses.push(format!("\"127.0.0.1:{}\"", server.port));
    let agent = agent_with_list(&server, token, &addresses);

    let out = tempfile::tempdir_in("/tmp").unwrap();
    wait_until(
        "an SVID through the live server",
        Duration::from_secs(60),
        || agent.log(),
        || fetch(&agent, out.path()).is_some_and(|na| na > SystemTime::now()),
    );
    assert!(agent.log().contains("node attestation succeeded"));
}

#[test]
fn a_server_of_another_ca_in_the_list_is_passed_over() {
    // Same trust domain name, its own CA: the agent's bundle does not
    // trust it, so its TLS handshake fails and the agent moves on.
    let impostor = ServerHandle::start(ServerOptions::default()).unwrap();
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = register(&server, "600");
    let addresses = [
        format!("\"127.0.0.1:{}\"", dead_ports(1)[0]),
        format!("\"127.0.0.1:{}\"", impostor.port),
        format!("\"127.0.0.1:{}\"", server.port),
    ];
    let agent = agent_with_list(&server, token, &addresses);
    let out = tempfile::tempdir_in("/tmp").unwrap();
    wait_until(
        "an SVID through the trusted server",
        Duration::from_secs(60),
        || agent.log(),
        || fetch(&agent, out.path()).is_some_and(|na| na > SystemTime::now()),
    );
    let agents = |s: &ServerHandle| {
        s.cli(&["agent", "list"])
            .unwrap()
            .stdout
            .matches("spiffe://example.org/spire/agent/join_token/")
            .count()
    };
    assert_eq!(agents(&server), 1);
    // Whether the agent tried it first or not (its start is random), it
    // never attested to the server it does not trust; when it tried, it
    // says why it passed it over.
    assert_eq!(agents(&impostor), 0, "{}", impostor.log());
    let log = agent.log();
    let tried = format!("127.0.0.1:{}: TLS handshake failed", impostor.port);
    if let Some(line) = log.lines().find(|l| l.contains(&tried)) {
        assert!(line.contains("does not chain"), "{line}");
        println!("the impostor was tried and passed over: {line}");
    } else {
        println!("the agent started past the impostor");
    }
}

/// Copies a directory tree (files and folders only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_agent_moves_to_the_next_server_when_its_own_dies() {
    // Servers on sled cannot share a datastore (sled is one process's); a
    // second server started from a copy of the first's data (the same CA
    // key, the agent and the entry) is a standby with the first's CA.
    let mut first = ServerHandle::start(ServerOptions::default()).unwrap();
    let mut second = ServerHandle::configure(ServerOptions::default()).unwrap();
    let token = register(&first, "20");
    let agent = agent_with_list(
        &first,
        token,
        &[
            format!("\"127.0.0.1:{}\"", first.port),
            format!("\"127.0.0.1:{}\"", second.port),
        ],
    );
    let out = tempfile::tempdir_in("/tmp").unwrap();
    let log = || agent.log();
    wait_until("a first SVID", Duration::from_secs(60), log, || {
        fetch(&agent, out.path()).is_some()
    });
    first.stop().unwrap();
    copy_tree(
        &first.dir.path().join("data"),
        &second.dir.path().join("data"),
    );
    first.start_process().unwrap();
    second.start_process().unwrap();
    // The agent stays with the first server (the second was dead when it
    // attested): a restart of the first is no reason to move.
    std::thread::sleep(Duration::from_secs(2));
    assert!(fetch(&agent, out.path()).is_some());
    assert!(!agent.log().contains("moved to another server"));

    first.kill();
    let killed = SystemTime::now();
    // The SVIDs from the first server end by killed + 20 s; one signed by
    // the second ends later. Every fetch meanwhile gets an SVID: no gap.
    let mut moved = None;
    let signed = wait_until(
        "an SVID signed by the second server",
        Duration::from_secs(40),
        log,
        || {
            let not_after = fetch(&agent, out.path());
            assert!(
                not_after.is_some(),
                "a fetch got no SVID during the move:\n{}",
                agent.log()
            );
            if moved.is_none() && agent.log().contains("moved to another server") {
                moved = killed.elapsed().ok();
            }
            not_after.is_some_and(|na| na > killed + Duration::from_secs(21))
        },
    );
    // The new SVID comes when the old one is due (half its 20 s life):
    // the move itself is the first figure.
    println!(
        "first server killed to the agent on the second: {:.2} s; to an SVID it signed: {:.2} s",
        moved.map_or(f64::NAN, |d| d.as_secs_f64()),
        signed.as_secs_f64()
    );
    let agent_log = agent.log();
    let line = agent_log
        .lines()
        .find(|l| l.contains("moved to another server"))
        .unwrap_or_else(|| panic!("no move logged:\n{agent_log}"));
    assert!(
        line.contains(&format!("127.0.0.1:{}", second.port)),
        "{line}"
    );
}
