//! Floods (SECURITY.md; DESIGN.md invariant 11): one caller holding
//! silent connections cannot starve the others, and neither listener
//! spins when it runs out of file descriptors.
//!
//! The attacker is `spinel-flood` (test-fixtures), run as another user
//! (uid 65534) against the agent's Workload API, and from another loopback
//! address (127.0.0.2) against the server's TCP port. These checks need
//! root (to act as another user and to lower the agent's open-file limit);
//! without it they say so and stop.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{bin_path, AgentHandle, AgentOptions, ServerHandle, ServerOptions};

use crate::support::{cpu_seconds, run_as_nobody, share_with_nobody};

const NODE: &str = "spiffe://example.org/node";
const WORKLOAD: &str = "spiffe://example.org/flood-survivor";

/// A server, and an agent whose Workload API has the given `limits`, with
/// an entry for this (root) user.
fn trust_domain(agent_limits: &str) -> (ServerHandle, AgentHandle) {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(Some(NODE)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            agent_extra: format!("    connection_limits {{\n{agent_limits}\n    }}\n"),
            ..Default::default()
        },
    )
    .unwrap();
    server
        .create_entry(&[
            "-parentID",
            NODE,
            "-spiffeID",
            WORKLOAD,
            "-selector",
            "unix:uid:0",
        ])
        .unwrap();
    (server, agent)
}

/// Fetches this user's SVID until `until`, counting failures; the first
/// fetch may wait up to 30 s for the entry to arrive.
async fn fetch_until(agent: &AgentHandle, until: Instant) -> (usize, usize) {
    let client = spiffe::WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let first = Instant::now() + Duration::from_secs(30);
    while client.fetch_x509_svid().await.is_err() {
        assert!(Instant::now() < first, "no SVID for {WORKLOAD} within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut ok, mut failed) = (0, 0);
    while Instant::now() < until {
        // A fresh connection each time: new connections must get through.
        let client = spiffe::WorkloadApiClient::connect_to(agent.endpoint())
            .await
            .unwrap();
        match client.fetch_x509_svid().await {
            Ok(svid) if svid.spiffe_id().to_string() == WORKLOAD => ok += 1,
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (ok, failed)
}

fn report(output: std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "spinel-flood failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn flood_as_nobody(socket: &Path, connections: usize, hold_secs: u32) -> std::process::Child {
    run_as_nobody(
        "spinel-flood",
        &[
            "--unix",
            socket.to_str().unwrap(),
            "--connections",
            &connections.to_string(),
            "--preface",
            "--hold",
            &hold_secs.to_string(),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn another_user_flooding_the_workload_api_starves_nobody() {
    if my_uid() != 0 {
        eprintln!("skipped: acting as another user needs root");
        return;
    }
    let (_server, agent) = trust_domain(
        "        max_connections_per_uid = 40\n        first_request_timeout = \"2s\"",
    );
    share_with_nobody(&agent);
    let agent_pid = agent.process.as_ref().unwrap().pid().unwrap();
    let cpu_before = cpu_seconds(agent_pid);
    let flood = flood_as_nobody(&agent.socket_path, 300, 6);
    let (ok, failed) = fetch_until(&agent, Instant::now() + Duration::from_secs(5)).await;
    let flood = report(flood.wait_with_output().unwrap());
    let cpu = cpu_seconds(agent_pid) - cpu_before;

    assert_eq!(
        failed,
        0,
        "{failed} of {} fetches failed during the flood",
        ok + failed
    );
    // Every silent connection was closed: the 40 the cap let in at the
    // first-request deadline, the rest at once.
    assert_eq!(flood["open_at_end"], 0, "{flood}");
    assert_eq!(flood["closed_by_server"], flood["opened"], "{flood}");
    assert!(
        agent.log().contains("per-user connection limit reached"),
        "no refusal logged"
    );
    // No spinning: a busy core for the 6 s would be 6 s of CPU.
    assert!(
        cpu < 3.0,
        "the agent used {cpu:.1} s of CPU during a 6 s flood"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_out_of_file_descriptors_backs_off_and_recovers() {
    if my_uid() != 0 {
        eprintln!("skipped: lowering another process's open-file limit needs root");
        return;
    }
    let (_server, agent) = trust_domain("        first_request_timeout = \"2s\"");
    share_with_nobody(&agent);
    let agent_pid = agent.process.as_ref().unwrap().pid().unwrap();
    // Make sure the agent is serving, then leave it 30 free descriptors.
    let _ = fetch_until(&agent, Instant::now()).await;
    let open_fds = std::fs::read_dir(format!("/proc/{agent_pid}/fd"))
        .unwrap()
        .count() as u64;
    let pid = rustix::process::Pid::from_raw(agent_pid as i32).unwrap();
    let limit = rustix::process::Rlimit {
        current: Some(open_fds + 30),
        maximum: Some(open_fds + 30),
    };
    rustix::process::prlimit(Some(pid), rustix::process::Resource::Nofile, limit).unwrap();

    let cpu_before = cpu_seconds(agent_pid);
    let flood = report(
        flood_as_nobody(&agent.socket_path, 200, 5)
            .wait_with_output()
            .unwrap(),
    );
    let cpu = cpu_seconds(agent_pid) - cpu_before;
    // Connections the agent could not accept waited in the listen backlog
    // (the flood sees them open); those it accepted it closed at the
    // deadline, freeing descriptors for the next ones.
    assert!(flood["closed_by_server"].as_u64().unwrap() > 0, "{flood}");
    assert!(
        agent.log().contains("accept failed; retrying"),
        "the agent never ran out of descriptors: {flood}"
    );
    assert!(
        cpu < 2.5,
        "the agent used {cpu:.1} s of CPU in a 5 s flood while out of descriptors"
    );
    // Once the flood is gone, the agent serves again.
    let (ok, failed) = fetch_until(&agent, Instant::now() + Duration::from_secs(1)).await;
    assert!(
        ok > 0 && failed == 0,
        "after the flood: {ok} ok, {failed} failed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_flood_from_one_address_leaves_the_server_to_everyone_else() {
    let server = ServerHandle::start(ServerOptions {
        server_extra: "    connection_limits {\n        max_connections_per_ip = 40\n        first_request_timeout = \"2s\"\n    }\n".into(),
        ..Default::default()
    })
    .unwrap();
    let ca = server.dir.path().join("flood-ca.pem");
    std::fs::write(&ca, server.bundle_pem().unwrap()).unwrap();
    let flood = Command::new(bin_path("spinel-flood"))
        .args([
            "--tcp",
            &format!("127.0.0.1:{}", server.port),
            "--source-ip",
            "127.0.0.2",
            "--tls-ca",
            ca.to_str().unwrap(),
            "--connections",
            "300",
            "--preface",
            "--hold",
            "8",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Meanwhile an agent from 127.0.0.1 attests and syncs, and the
    // server's health check answers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let token = server.generate_token(Some(NODE)).unwrap();
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
            NODE,
            "-spiffeID",
            WORKLOAD,
            "-selector",
            &format!("unix:uid:{}", my_uid()),
        ])
        .unwrap();
    let (ok, failed) = fetch_until(&agent, Instant::now() + Duration::from_secs(2)).await;
    assert!(
        ok > 0 && failed == 0,
        "during the flood: {ok} ok, {failed} failed"
    );
    server.cli(&["healthcheck"]).unwrap().ok().unwrap();

    let flood = report(flood.wait_with_output().unwrap());
    assert_eq!(flood["open_at_end"], 0, "{flood}");
    assert!(flood["opened"].as_u64().unwrap() <= 40, "{flood}");
    assert!(
        server
            .log()
            .contains("per-address connection limit reached"),
        "no refusal logged"
    );
}

/// The plain HTTP listeners share the server's file descriptors with the
/// agent-facing port, so a flood of the OIDC discovery port (often public)
/// must be capped too: before the cap, every connection stayed open until
/// the process ran out of descriptors.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_the_oidc_discovery_port_is_capped_per_address() {
    let oidc_port = spinel_test_fixtures::process::free_port().unwrap();
    let server = ServerHandle::start(ServerOptions {
        server_extra: format!(
            "    jwt_issuer = \"https://oidc.example.org\"\n    oidc_discovery {{\n        address = \"127.0.0.1\"\n        port = {oidc_port}\n        insecure_http = true\n    }}\n"
        ),
        ..Default::default()
    })
    .unwrap();
    let flood = Command::new(bin_path("spinel-flood"))
        .args([
            "--tcp",
            &format!("127.0.0.1:{oidc_port}"),
            "--source-ip",
            "127.0.0.2",
            "--connections",
            "200",
            "--hold",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Meanwhile another address is served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", oidc_port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: oidc.example.org\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");

    let flood = report(flood.wait_with_output().unwrap());
    assert_eq!(flood["open_at_end"], 64, "{flood}");
    assert!(
        flood["closed_by_server"].as_u64().unwrap() >= 100,
        "{flood}"
    );
    assert!(
        server
            .log()
            .contains("per-address connection limit reached"),
        "no refusal logged"
    );
}
