//! The example run for real: a `spinel-server`, a `spinel-agent` with
//! path discovery, and the two example services as separate processes,
//! each registered by its executable's path (`unix:path`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spinel_test_fixtures::process::poll;
use spinel_test_fixtures::spinel::{run_cli, CliOutput};
use spinel_test_fixtures::{
    bin_path, AgentHandle, AgentOptions, Process, ServerHandle, ServerOptions,
};

const SERVER_ID: &str = "spiffe://example.org/server";
const CLIENT_ID: &str = "spiffe://example.org/client";

fn exe(name: &str) -> PathBuf {
    std::fs::canonicalize(bin_path(name)).unwrap()
}

fn trust_domain(td: &str) -> (ServerHandle, AgentHandle) {
    let server = ServerHandle::start(ServerOptions {
        trust_domain: td.into(),
        ..Default::default()
    })
    .unwrap();
    let alias = format!("spiffe://{td}/myagent");
    let token = server.generate_token(Some(&alias)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            unix_plugin_data: "            discover_workload_path = true".into(),
            ..Default::default()
        },
    )
    .unwrap();
    (server, agent)
}

fn register(server: &ServerHandle, id: &str, path: &Path, ttl: &str) {
    let alias = format!("spiffe://{}/myagent", server.trust_domain);
    let selector = format!("unix:path:{}", path.display());
    server
        .create_entry(&[
            "-parentID",
            &alias,
            "-spiffeID",
            id,
            "-selector",
            &selector,
            "-x509SVIDTTL",
            ttl,
        ])
        .unwrap();
}

/// Starts the example server; returns it and its port.
fn start_server(agent: &AgentHandle, dir: &Path) -> (Process, u16) {
    let log = dir.join("mtls-server.log");
    let mut server = Process::spawn(
        &exe("spinel-mtls-server"),
        &["--listen", "127.0.0.1:0", "--allow", CLIENT_ID],
        &[("SPIFFE_ENDPOINT_SOCKET", &agent.endpoint())],
        &log,
    )
    .unwrap();
    server
        .wait_for_log(" listening on ", Duration::from_secs(30))
        .unwrap();
    let port = server
        .log()
        .lines()
        .find_map(|l| l.rsplit_once(':').filter(|_| l.contains(" listening on ")))
        .and_then(|(_, p)| p.trim().parse().ok())
        .unwrap();
    (server, port)
}

fn client(program: &Path, agent: &AgentHandle, port: u16, extra: &[&str]) -> CliOutput {
    // run_cli passes no environment of its own: go through env(1).
    let endpoint = format!("SPIFFE_ENDPOINT_SOCKET={}", agent.endpoint());
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec![
        endpoint.as_str(),
        program.to_str().unwrap(),
        "--connect",
        &connect,
        "--server-id",
        SERVER_ID,
    ];
    args.extend_from_slice(extra);
    run_cli(Path::new("/usr/bin/env"), &args).unwrap()
}

/// Runs the client until it succeeds (the agent may not hold the new
/// entries yet), for up to 30 s.
fn client_ok(program: &Path, agent: &AgentHandle, port: u16, extra: &[&str]) -> CliOutput {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = client(program, agent, port, extra);
        if out.success() {
            return out;
        }
        assert!(Instant::now() < deadline, "client never succeeded: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn serials(out: &CliOutput) -> Vec<String> {
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("reply "))
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn services_authenticate_each_other_across_rotation() {
    let (td, agent) = trust_domain("example.org");
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let client_exe = exe("spinel-mtls-client");
    // Short TTL for the server: its SVID rotates during the test.
    register(&td, SERVER_ID, &exe("spinel-mtls-server"), "8");
    register(&td, CLIENT_ID, &client_exe, "3600");
    let (mut server, port) = start_server(&agent, dir.path());

    // One connection, held open across the server's SVID rotation.
    let out = client_ok(
        &client_exe,
        &agent,
        port,
        &["--pings", "20", "--interval-ms", "250"],
    );
    let replies: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("reply "))
        .collect();
    assert_eq!(replies.len(), 20, "{}", out.stdout);
    assert!(
        replies[19].ends_with(&format!("pong 0.19 from {SERVER_ID} to {CLIENT_ID}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&format!("connected 0 to {SERVER_ID}")));

    // New connections pick up the rotated SVID without a restart.
    let first = serials(&out)[0].clone();
    poll(Duration::from_secs(30), "a rotated server SVID", || {
        let again = client_ok(&client_exe, &agent, port, &[]);
        Ok((serials(&again).first() != Some(&first)).then_some(()))
    })
    .unwrap();
    assert!(server.is_running());

    // A client that expects another server ID refuses this one.
    let connect = format!("127.0.0.1:{port}");
    let endpoint = format!("SPIFFE_ENDPOINT_SOCKET={}", agent.endpoint());
    let out = run_cli(
        Path::new("/usr/bin/env"),
        &[
            &endpoint,
            client_exe.to_str().unwrap(),
            "--connect",
            &connect,
            "--server-id",
            "spiffe://example.org/someone-else",
        ],
    )
    .unwrap();
    assert!(
        !out.success(),
        "the client accepted the wrong server: {out:?}"
    );

    // A registered workload that the server does not allow is refused.
    let intruder = dir.path().join("intruder");
    std::fs::copy(&client_exe, &intruder).unwrap();
    register(&td, "spiffe://example.org/intruder", &intruder, "3600");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = client(&intruder, &agent, port, &[]);
        assert!(
            !out.success(),
            "the server let an unauthorized peer in: {out:?}"
        );
        if server.log().contains("refused") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(td);
}

#[test]
fn a_peer_from_another_trust_domain_is_refused() {
    let (td, agent) = trust_domain("example.org");
    let (other, other_agent) = trust_domain("other.org");
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let client_exe = exe("spinel-mtls-client");
    register(&td, SERVER_ID, &exe("spinel-mtls-server"), "3600");
    register(&td, CLIENT_ID, &client_exe, "3600");
    // The same client binary, registered in other.org under the same path.
    register(&other, "spiffe://other.org/client", &client_exe, "3600");
    let (server, port) = start_server(&agent, dir.path());
    client_ok(&client_exe, &agent, port, &[]);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = client(&client_exe, &other_agent, port, &[]);
        assert!(
            !out.success(),
            "a foreign-domain client was let in: {out:?}"
        );
        if server.log().matches("refused").count() >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop((td, other));
}
