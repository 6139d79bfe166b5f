//! End to end: "why does this process get no identity?" answered by the
//! agent log and by `spinel-agent debug explain -pid N` over the admin
//! socket, with real server and agent processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

const AGENT_ALIAS: &str = "spiffe://example.org/myagent";

fn my_ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u32 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

/// A child that lives until dropped.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(agent_extra: String) -> (ServerHandle, AgentHandle) {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            agent_extra,
            ..Default::default()
        },
    )
    .unwrap();
    (server, agent)
}

fn explain(agent: &AgentHandle, admin: &str, pid: u32, json: bool) -> String {
    let pid = pid.to_string();
    let mut args = vec!["debug", "explain", "-pid", &pid, "-adminSocketPath", admin];
    if json {
        args.extend(["-output", "json"]);
    }
    let out = spinel_test_fixtures::spinel::run_cli(
        &spinel_test_fixtures::bin_path("spinel-agent"),
        &args,
    )
    .unwrap();
    assert!(
        out.success(),
        "debug explain failed: {out:?}\nagent log:\n{}",
        agent.log()
    );
    out.stdout
}

/// Polls `check` on the agent's explanation of `pid` for up to 30 s.
fn wait_explained(
    agent: &AgentHandle,
    admin: &str,
    pid: u32,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: serde_json::Value = serde_json::from_str(&explain(agent, admin, pid, true)).unwrap();
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "explanation never matched: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn explain_names_the_selectors_a_process_lacks() {
    let (uid, gid) = my_ids();
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let admin = dir.path().join("admin/admin.sock");
    let admin = admin.to_str().unwrap();
    let (server, agent) = start(format!("    admin_socket_path = \"{admin}\""));

    // An entry the process nearly matches: right uid, wrong gid.
    let uid_sel = format!("unix:uid:{uid}");
    let entry = server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/db",
            "-selector",
            &uid_sel,
            "-selector",
            "unix:gid:424242",
        ])
        .unwrap();
    let sleeper = Sleeper(Command::new("sleep").arg("60").spawn().unwrap());
    let pid = sleeper.0.id();

    let v = wait_explained(&agent, admin, pid, |v| {
        v["closest"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["spiffe_id"] == "spiffe://example.org/db")
    });
    assert_eq!(v["uid"], uid);
    assert_eq!(v["gid"], gid);
    assert_eq!(v["ready"], true);
    let selectors: Vec<&str> = v["selectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(selectors.contains(&uid_sel.as_str()), "{selectors:?}");
    assert_eq!(v["identities"], serde_json::json!([]));
    // The join token's alias entry may tie with it (one selector missing).
    let db = v["closest"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["spiffe_id"] == "spiffe://example.org/db")
        .unwrap_or_else(|| panic!("db is not among the closest: {v}"));
    assert_eq!(db["entry_id"], entry.as_str());
    assert_eq!(db["missing"], serde_json::json!(["unix:gid:424242"]));

    let text = explain(&agent, admin, pid, false);
    assert!(
        text.contains("Identities: none")
            && text.contains("spiffe://example.org/db")
            && text.contains("    unix:gid:424242"),
        "{text}"
    );

    // A matching entry: the same command now names the identity.
    let gid_sel = format!("unix:gid:{gid}");
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/me",
            "-selector",
            &gid_sel,
        ])
        .unwrap();
    let v = wait_explained(&agent, admin, pid, |v| {
        !v["identities"].as_array().unwrap().is_empty()
    });
    assert_eq!(v["identities"][0]["spiffe_id"], "spiffe://example.org/me");

    // The admin socket is the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(admin).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A pid that does not exist is a clear error.
    let out = spinel_test_fixtures::spinel::run_cli(
        &spinel_test_fixtures::bin_path("spinel-agent"),
        &[
            "debug",
            "explain",
            "-pid",
            "999999999",
            "-adminSocketPath",
            admin,
        ],
    )
    .unwrap();
    assert!(!out.success());
    assert!(out.stderr.contains("process 999999999"), "{}", out.stderr);
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn denial_log_redacts_values_outside_log_selectors() {
    let (uid, _) = my_ids();
    // Only unix:uid values may be logged.
    let (server, agent) = start("    log_selectors = [\"unix:uid\"]".into());
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/db",
            "-selector",
            "unix:gid:424242",
        ])
        .unwrap();
    // Wait until the agent holds the entry, then be refused.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = agent.cli(&["api", "fetch", "x509"]).unwrap();
        assert!(!out.success());
        let log = agent.log();
        if let Some(line) = log
            .lines()
            .rfind(|l| l.contains("no identity issued") && l.contains("spiffe://example.org/db"))
        {
            assert!(line.contains(&format!("unix:uid:{uid}")), "{line}");
            assert!(line.contains("unix:gid:<redacted>"), "{line}");
            assert!(
                !line.contains("424242"),
                "the entry's gid value leaked: {line}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no denial log line naming the entry:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
}
