//! `spinel-agent` commands, the agent's log lines SPIRE's suites grep for,
//! and what a banned agent does: its health turns bad and it exits, as
//! SPIRE's agent does, so that a supervisor or liveness probe notices.

use std::time::Duration;

use spinel_test_fixtures::process::{bin_path, my_uid, poll};
use spinel_test_fixtures::spinel::run_cli;

use crate::support::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

const AGENT_ALIAS: &str = "spiffe://example.org/node";
const WORKLOAD: &str = "spiffe://example.org/workload";

#[test]
fn agent_commands_and_a_ban() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let admin_dir = tempfile::Builder::new()
        .prefix("spinel-adm")
        .tempdir_in("/tmp")
        .unwrap();
    let admin_socket = admin_dir.path().join("admin.sock");
    let mut agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token.clone()),
            agent_extra: format!("    admin_socket_path = \"{}\"\n", admin_socket.display()),
            ..Default::default()
        },
    )
    .unwrap();
    let uid = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            WORKLOAD,
            "-selector",
            &uid,
        ])
        .unwrap();

    // `api fetch` alone is `api fetch x509`, as in SPIRE.
    let fetched = poll(
        Duration::from_secs(60),
        "an X509-SVID from bare `api fetch`",
        || {
            let out = agent.cli(&["api", "fetch"])?;
            Ok(out.stdout.contains(WORKLOAD).then_some(out.stdout))
        },
    )
    .unwrap();
    assert!(fetched.contains("SPIFFE ID:"), "{fetched}");
    // The agent logs the SPIFFE ID of each SVID it creates (debug).
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("Creating X509-SVID") && l.contains(WORKLOAD)),
        "{log}"
    );

    // validate: SPIRE's sentences and exit codes.
    let config = agent.config_path.display().to_string();
    let out = run_cli(&bin_path("spinel-agent"), &["validate", "-config", &config]).unwrap();
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "SPIRE agent configuration file is valid.\n"),
        "{out:?}"
    );
    let out = run_cli(
        &bin_path("spinel-agent"),
        &["validate", "-config", "invalid/path"],
    )
    .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("SPIRE agent configuration file is invalid"),
        "{out:?}"
    );

    // logger get|set|reset on the admin socket.
    let admin = admin_socket.display().to_string();
    let logger = |args: &[&str]| {
        let mut all = vec!["logger"];
        all.extend_from_slice(args);
        all.extend(["-socketPath", &admin]);
        run_cli(&bin_path("spinel-agent"), &all)
            .unwrap()
            .ok()
            .unwrap()
            .stdout
    };
    assert_eq!(
        logger(&["get"]),
        "Logger Level : debug\nLaunch Level : debug\n\n"
    );
    assert_eq!(
        logger(&["set", "-level", "error"]),
        "Logger Level : error\nLaunch Level : debug\n\n"
    );
    assert_eq!(
        logger(&["reset"]),
        "Logger Level : debug\nLaunch Level : debug\n\n"
    );

    // A ban: the server logs SPIRE's "Agent banned"; the agent stops
    // serving, says why in SPIRE's words, and exits with an error.
    let agent_id = format!("spiffe://example.org/spire/agent/join_token/{token}");
    server
        .cli(&["agent", "ban", "-spiffeID", &agent_id])
        .unwrap()
        .ok()
        .unwrap();
    assert!(server.log().contains("Agent banned"), "{}", server.log());
    let process = agent.process.as_mut().unwrap();
    poll(Duration::from_secs(60), "the banned agent to exit", || {
        Ok((!process.is_running()).then_some(()))
    })
    .unwrap();
    assert!(
        agent
            .log()
            .contains("Agent is banned: removing SVID and shutting down"),
        "{}",
        agent.log()
    );
    let health = agent.cli(&["healthcheck"]).unwrap();
    assert!(
        !health.success() && health.stderr.contains("Agent is unhealthy"),
        "{health:?}"
    );

    // Deleting it: SPIRE's "Agent deleted".
    server
        .cli(&["agent", "evict", "-spiffeID", &agent_id])
        .unwrap()
        .ok()
        .unwrap();
    assert!(server.log().contains("Agent deleted"), "{}", server.log());
}
