//! The PID-reuse attack (DESIGN.md invariant 10): a process connects to
//! the Workload API, hands the connection to a child and exits; once a
//! process with a better identity has its PID, the child calls. The agent
//! must not attest the PID's new owner for a connection it did not open.
//!
//! Here the better identity is `unix:uid:65534` + `unix:path:/usr/bin/sleep`
//! and the attacker is `spinel-handoff` running as uid 65534. The PID is
//! handed to `sleep` deterministically through
//! `/proc/sys/kernel/ns_last_pid`, which needs root.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use spinel_test_fixtures::process::my_uid;

use crate::support::{
    run_as_nobody, share_with_nobody, AgentHandle, AgentOptions, ServerHandle, ServerOptions,
    NOBODY,
};

const NODE: &str = "spiffe://example.org/node";
const VICTIM: &str = "spiffe://example.org/sleeper";

/// Starts `sleep 60` as uid 65534 with PID `pid` (any PID for 0), or
/// gives up.
fn sleep_with_pid(pid: u32) -> Child {
    use std::os::unix::process::CommandExt;
    for _ in 0..50 {
        if pid > 0 {
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        }
        let mut sleep = Command::new("/usr/bin/sleep")
            .arg("60")
            .uid(NOBODY)
            .gid(NOBODY)
            .spawn()
            .unwrap();
        if pid == 0 || sleep.id() == pid {
            return sleep;
        }
        let _ = sleep.kill();
        let _ = sleep.wait();
    }
    panic!("could not start sleep with pid {pid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_pid_does_not_inherit_an_identity() {
    if my_uid() != 0 || !std::path::Path::new("/proc/sys/kernel/ns_last_pid").exists() {
        eprintln!("skipped: needs root and /proc/sys/kernel/ns_last_pid");
        return;
    }
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(Some(NODE)).unwrap();
    let admin = tempfile::Builder::new()
        .prefix("spinel-adm")
        .tempdir_in("/tmp")
        .unwrap();
    let admin_socket = admin.path().join("admin.sock");
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            unix_plugin_data: "            discover_workload_path = true".into(),
            agent_extra: format!(
                "    admin_socket_path = \"{}\"\n    connection_limits {{\n        first_request_timeout = \"60s\"\n    }}\n",
                admin_socket.display()
            ),
            ..Default::default()
        },
    )
    .unwrap();
    server
        .create_entry(&[
            "-parentID",
            NODE,
            "-spiffeID",
            VICTIM,
            "-selector",
            &format!("unix:uid:{NOBODY}"),
            "-selector",
            "unix:path:/usr/bin/sleep",
        ])
        .unwrap();
    share_with_nobody(&agent);
    let trigger = tempfile::Builder::new()
        .prefix("spinel-handoff")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        trigger.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let trigger_file = trigger.path().join("go");

    // Wait until the entry has reached the agent: a real sleep of uid
    // 65534 would get it.
    let mut probe = sleep_with_pid(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = spinel_test_fixtures::spinel::run_cli(
            &spinel_test_fixtures::bin_path("spinel-agent"),
            &[
                "debug",
                "explain",
                "-pid",
                &probe.id().to_string(),
                "-adminSocketPath",
                admin_socket.to_str().unwrap(),
            ],
        )
        .unwrap();
        if out.stdout.contains(VICTIM) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the entry never reached the agent: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = probe.kill();
    let _ = probe.wait();

    let mut attacker = run_as_nobody(
        "spinel-handoff",
        &[
            "--socket",
            agent.socket_path.to_str().unwrap(),
            "--trigger",
            trigger_file.to_str().unwrap(),
        ],
    );
    let mut out = BufReader::new(attacker.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let parent: u32 = line
        .trim()
        .strip_prefix("parent ")
        .unwrap()
        .parse()
        .unwrap();
    // Reap the parent, so that its PID is free, and give it to sleep.
    assert!(attacker.wait().unwrap().success());
    let mut sleep = sleep_with_pid(parent);

    std::fs::write(&trigger_file, "").unwrap();
    let mut report = String::new();
    out.read_to_string(&mut report).unwrap();
    let _ = sleep.kill();
    let _ = sleep.wait();
    let report: serde_json::Value = serde_json::from_str(report.trim())
        .unwrap_or_else(|e| panic!("child's report {report:?}: {e}"));
    assert!(
        !report["message"]
            .as_str()
            .unwrap_or_default()
            .contains(VICTIM),
        "the connection of exited pid {parent} got sleep's identity (and key)"
    );
    assert_eq!(
        report["grpc_status"], 7,
        "expected PermissionDenied: {report}"
    );
    assert!(
        agent.log().contains("has exited"),
        "the agent did not say why"
    );
}
