//! Agent resilience with real server and agent processes: outages longer
//! than an SVID's lifetime, agent restarts while the server is down,
//! corrupt state in `data_dir`, ban and evict.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};
use x509_parser::pem::Pem;

use crate::support::wait_until;

const AGENT_ALIAS: &str = "spiffe://example.org/node";
const WORKLOAD: &str = "spiffe://example.org/web";

/// A server, an agent attested with a join token, and an entry for this
/// process's uid with the given X509-SVID TTL. Returns the agent's ID too.
fn trust_domain(ttl: &str, agent_extra: &str) -> (ServerHandle, AgentHandle, String) {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token.clone()),
            agent_extra: agent_extra.to_owned(),
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
            "-x509SVIDTTL",
            ttl,
        ])
        .unwrap();
    let agent_id = format!("spiffe://example.org/spire/agent/join_token/{token}");
    (server, agent, agent_id)
}

/// What a workload fetch returned: the SVID's NotAfter, or `None` when the
/// agent issued none.
fn fetch(agent: &AgentHandle, dir: &Path) -> Option<SystemTime> {
    let _ = std::fs::remove_file(dir.join("svid.0.pem"));
    let out = agent
        .cli(&["api", "fetch", "x509", "-write", dir.to_str().unwrap()])
        .unwrap();
    if !out.success() {
        return None;
    }
    assert!(out.stdout.contains(WORKLOAD), "{}", out.stdout);
    let pem = std::fs::read(dir.join("svid.0.pem")).unwrap();
    let pem = Pem::iter_from_buffer(&pem).next().unwrap().unwrap();
    let cert = pem.parse_x509().unwrap();
    let secs = cert.validity().not_after.timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap()))
}

/// How long a step may take.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn outage_longer_than_the_svid_ttl_never_serves_an_expired_svid_and_recovers() {
    let (mut server, agent, _) = trust_domain("4", "");
    let out = tempfile::tempdir_in("/tmp").unwrap();
    wait_until(
        "a first SVID",
        LIMIT,
        || agent.log(),
        || fetch(&agent, out.path()).is_some(),
    );
    server.stop().unwrap();
    // While the server is away, every SVID served is unexpired, and once
    // the cached one expires the workload gets none.
    wait_until(
        "the expired SVID dropped",
        LIMIT,
        || agent.log(),
        || {
            let asked = SystemTime::now();
            match fetch(&agent, out.path()) {
                Some(not_after) => {
                    // One second of slack: NotAfter has second precision.
                    assert!(
                        not_after + Duration::from_secs(1) > asked,
                        "an expired SVID was served"
                    );
                    false
                }
                None => true,
            }
        },
    );
    server.start_process().unwrap();
    wait_until(
        "a fresh SVID after the server returned",
        LIMIT,
        || agent.log(),
        || fetch(&agent, out.path()).is_some_and(|na| na > SystemTime::now()),
    );
    assert!(agent.log().contains("sync with the server recovered"));
}

#[test]
fn restarted_agent_serves_stored_svids_while_the_server_is_down() {
    let (mut server, mut agent, _) = trust_domain("600", "");
    let out = tempfile::tempdir_in("/tmp").unwrap();
    wait_until(
        "a first SVID",
        LIMIT,
        || agent.log(),
        || fetch(&agent, out.path()).is_some(),
    );
    let stored = agent.dir.path().join("data/workload_cache.json");
    wait_until(
        "the workload cache saved",
        LIMIT,
        || agent.log(),
        || stored.exists(),
    );
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "workload_cache.json holds keys");
    server.stop().unwrap();
    agent.stop().unwrap();
    agent.start_process().unwrap();
    assert!(fetch(&agent, out.path()).is_some_and(|na| na > SystemTime::now()));
    assert!(agent
        .log()
        .contains("serving the workload SVIDs stored by the previous run"));
}

fn restart_fails_naming(agent: &mut AgentHandle, file: &str) {
    let err = format!("{:#}", agent.start_process().unwrap_err());
    assert!(err.contains(file), "the error does not name {file}:\n{err}");
    assert!(err.contains("rebootstrap_mode"), "{err}");
}

#[test]
fn corrupt_state_refuses_to_start_unless_rebootstrap_is_opted_in() {
    let (server, mut agent, _) = trust_domain("600", "");
    let out = tempfile::tempdir_in("/tmp").unwrap();
    wait_until(
        "a first SVID",
        LIMIT,
        || agent.log(),
        || fetch(&agent, out.path()).is_some(),
    );
    let data = agent.dir.path().join("data");
    wait_until(
        "the workload cache saved",
        LIMIT,
        || agent.log(),
        || data.join("workload_cache.json").exists(),
    );
    agent.stop().unwrap();

    // A truncated agent SVID.
    let svid = std::fs::read(data.join("agent_svid.der")).unwrap();
    std::fs::write(data.join("agent_svid.der"), &svid[..svid.len() / 2]).unwrap();
    restart_fails_naming(&mut agent, "agent_svid.der");
    assert!(
        data.join("agent_svid.der").exists(),
        "the file was overwritten"
    );
    std::fs::write(data.join("agent_svid.der"), &svid).unwrap();

    // A corrupt key.
    let key = std::fs::read(data.join("agent_svid.key")).unwrap();
    std::fs::write(data.join("agent_svid.key"), b"garbage").unwrap();
    restart_fails_naming(&mut agent, "agent_svid.key");
    std::fs::write(data.join("agent_svid.key"), &key).unwrap();

    // A truncated bundle.
    let bundle = std::fs::read(data.join("bundle.der")).unwrap();
    std::fs::write(data.join("bundle.der"), &bundle[..10]).unwrap();
    restart_fails_naming(&mut agent, "bundle.der");
    std::fs::write(data.join("bundle.der"), &bundle).unwrap();

    // A truncated workload cache.
    let cache = std::fs::read(data.join("workload_cache.json")).unwrap();
    std::fs::write(data.join("workload_cache.json"), &cache[..cache.len() / 3]).unwrap();
    restart_fails_naming(&mut agent, "workload_cache.json");

    // Opted in (with a new token): the agent discards what is unusable and attests again.
    std::fs::write(data.join("agent_svid.der"), &svid[..svid.len() / 2]).unwrap();
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let config = std::fs::read_to_string(&agent.config_path).unwrap();
    let config: String = config
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("join_token =") {
                format!("    join_token = \"{token}\"\n    rebootstrap_mode = \"auto\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&agent.config_path, config).unwrap();
    agent.start_process().unwrap();
    wait_until(
        "an SVID after rebootstrap",
        LIMIT,
        || agent.log(),
        || fetch(&agent, out.path()).is_some(),
    );
    assert!(agent
        .log()
        .contains("discarding it and bootstrapping again"));
}

#[test]
fn banned_agent_wipes_its_state_and_serves_no_identity() {
    let (server, agent, agent_id) = trust_domain("600", "");
    let out = tempfile::tempdir_in("/tmp").unwrap();
    wait_until(
        "a first SVID",
        LIMIT,
        || agent.log(),
        || fetch(&agent, out.path()).is_some(),
    );
    server
        .cli(&["agent", "ban", "-spiffeID", &agent_id])
        .unwrap()
        .ok()
        .unwrap();
    let data = agent.dir.path().join("data");
    wait_until(
        "the ban noticed",
        LIMIT,
        || agent.log(),
        // The recovery's own line: the watch stream's end (debug, "is
        // banned" too) comes before the wipe.
        || agent.log().contains("the server says this agent is banned"),
    );
    assert!(fetch(&agent, out.path()).is_none());
    assert!(!data.join("agent_svid.der").exists());
    assert!(!data.join("agent_svid.key").exists());
    assert!(!data.join("workload_cache.json").exists());
}

#[test]
fn evicted_join_token_agent_says_it_needs_a_new_token() {
    let (server, agent, agent_id) = trust_domain("600", "");
    let out = tempfile::tempdir_in("/tmp").unwrap();
    wait_until(
        "a first SVID",
        LIMIT,
        || agent.log(),
        || fetch(&agent, out.path()).is_some(),
    );
    server
        .cli(&["agent", "evict", "-spiffeID", &agent_id])
        .unwrap()
        .ok()
        .unwrap();
    wait_until(
        "the eviction noticed",
        LIMIT,
        || agent.log(),
        || agent.log().contains("needs a new join token"),
    );
    assert!(fetch(&agent, out.path()).is_none());
}

fn unix_now() -> i64 {
    i64::try_from(std::time::UNIX_EPOCH.elapsed().unwrap().as_secs()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_stream_loses_the_expired_svid_and_a_new_one_follows_the_outage() {
    use spiffe::WorkloadApiClient;
    let (mut server, agent, _) = trust_domain("4", "");
    let out = tempfile::tempdir_in("/tmp").unwrap();
    wait_until(
        "a first SVID",
        LIMIT,
        || agent.log(),
        || fetch(&agent, out.path()).is_some(),
    );
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let mut stream = client.stream_x509_svids().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.spiffe_id().to_string(), WORKLOAD);
    server.stop().unwrap();
    // Every update during the outage is unexpired; then the stream says
    // there is no identity (an error) or ends.
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.next().await {
                Some(Ok(svid)) => {
                    let (_, leaf) =
                        x509_parser::parse_x509_certificate(svid.leaf().as_bytes()).unwrap();
                    assert!(
                        leaf.validity().not_after.timestamp() + 1 >= unix_now(),
                        "the stream sent an expired SVID"
                    );
                }
                Some(Err(e)) => return Some(e.to_string()),
                None => return None,
            }
        }
    })
    .await
    .expect("the stream dropped the expired SVID within 60 s");
    if let Some(e) = &ended {
        assert!(!e.is_empty());
    }
    server.start_process().unwrap();
    let fresh = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(mut s) = client.stream_x509_svids().await {
                if let Some(Ok(svid)) = s.next().await {
                    return svid;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("a fresh SVID within 60 s of the server's return");
    let (_, leaf) = x509_parser::parse_x509_certificate(fresh.leaf().as_bytes()).unwrap();
    assert!(leaf.validity().not_after.timestamp() > unix_now());
    assert_ne!(fresh.leaf().as_bytes(), first.leaf().as_bytes());
}
