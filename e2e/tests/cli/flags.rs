//! The admin subcommands of the real `spinel-server` binary refuse bad
//! flags and unreachable sockets with errors that name the flag or the
//! socket, before and without any server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn spinel_server(args: &[&str]) -> Out {
    let out = Command::new(spinel_test_fixtures::bin_path("spinel-server"))
        .args(args)
        .output()
        .expect("run spinel-server");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A socket path that does not exist, so that a command which got past its
/// flag checks fails on the connection instead of reaching a real server.
const NO_SOCKET: &str = "/nonexistent/spinel-test/api.sock";

#[test]
fn bad_flag_values_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["entry", "create", "-spiffeID", "spiffe://EXAMPLE.org/a"],
            "spiffeID",
        ),
        (
            &[
                "entry",
                "create",
                "-spiffeID",
                "spiffe://example.org/a/../b",
            ],
            "spiffeID",
        ),
        (
            &["entry", "create", "-spiffeID", "spiffe://example.org/%2e/b"],
            "spiffeID",
        ),
        (
            &["entry", "create", "-spiffeID=spiffe://example.org/a/"],
            "spiffeID",
        ),
        (
            &["entry", "create", "--parentID", "example.org/agent"],
            "parentID",
        ),
        (&["entry", "create", "-selector", "uid1000"], "selector"),
        (&["entry", "create", "-x509SVIDTTL", "-1"], "x509SVIDTTL"),
        (&["entry", "create", "-jwtSVIDTTL", "1h"], "jwtSVIDTTL"),
        (
            &["entry", "create", "-federatesWith", "spiffe://a.org/x"],
            "federatesWith",
        ),
        (&["entry", "create", "-output", "yaml"], "output"),
        (
            &["entry", "show", "-matchSelectorsOn", "all"],
            "matchSelectorsOn",
        ),
        (&["token", "generate", "-ttl", "0"], "ttl"),
        (
            &["token", "generate", "-spiffeID", "spiffe://example.org/"],
            "spiffeID",
        ),
        (&["bundle", "show", "-format", "jwks"], "format"),
        (&["bundle", "set", "-id", "spiffe://Other.org"], "id"),
        (
            &["bundle", "delete", "-id", "other.org", "-mode", "purge"],
            "mode",
        ),
        (
            &["agent", "list", "-expiresBefore", "yesterday"],
            "expiresBefore",
        ),
        (
            &[
                "agent",
                "ban",
                "-spiffeID",
                "spiffe://example.org/spire/agent/..",
            ],
            "spiffeID",
        ),
    ];
    for (args, flag) in cases {
        let out = spinel_server(args);
        assert_eq!(
            out.code, 2,
            "{args:?} should be a usage error: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(flag),
            "{args:?}: stderr should name {flag}: {}",
            out.stderr
        );
    }
}

#[test]
fn missing_and_conflicting_flags_fail_before_connecting() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "entry",
                "create",
                "-spiffeID",
                "spiffe://example.org/a",
                "-parentID",
                "spiffe://example.org/p",
            ],
            "at least one selector is required",
        ),
        (
            &[
                "entry",
                "create",
                "-selector",
                "unix:uid:1",
                "-parentID",
                "spiffe://example.org/p",
            ],
            "a SPIFFE ID is required (-spiffeID)",
        ),
        (
            &[
                "entry",
                "create",
                "-selector",
                "unix:uid:1",
                "-spiffeID",
                "spiffe://example.org/a",
            ],
            "a parent ID is required",
        ),
        (
            &[
                "entry",
                "create",
                "-selector",
                "unix:uid:1",
                "-parentID",
                "spiffe://example.org/p",
                "-spiffeID",
                "spiffe://example.org/spire/server",
            ],
            "-spiffeID",
        ),
        (
            &[
                "entry",
                "create",
                "-node",
                "-federatesWith",
                "o.org",
                "-selector",
                "u:1",
                "-spiffeID",
                "spiffe://example.org/a",
            ],
            "node entries can not federate",
        ),
        (&["entry", "create", "-data", "-", "-hint", "x"], "-data"),
        (
            &[
                "entry",
                "update",
                "-selector",
                "u:1",
                "-parentID",
                "spiffe://example.org/p",
                "-spiffeID",
                "spiffe://example.org/a",
            ],
            "entry ID is required (-entryID)",
        ),
        (&["entry", "delete"], "an entry ID is required"),
        (
            &[
                "entry",
                "show",
                "-entryID",
                "x",
                "-spiffeID",
                "spiffe://example.org/a",
            ],
            "the -entryID flag can't be combined with others",
        ),
        (&["bundle", "set"], "id flag is required"),
        (&["bundle", "delete"], "id is required"),
        (&["agent", "show"], "a SPIFFE ID is required (-spiffeID)"),
        (&["agent", "evict"], "a SPIFFE ID is required (-spiffeID)"),
        (&["agent", "ban"], "a SPIFFE ID is required (-spiffeID)"),
    ];
    for (args, message) in cases {
        let mut all = args.to_vec();
        all.extend(["-socketPath", NO_SOCKET]);
        let out = spinel_server(&all);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("Error: ") && out.stderr.contains(message),
            "{args:?}: stderr should say {message:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

#[test]
fn bad_data_file_names_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("entries.json");
    std::fs::write(
        &path,
        r#"{"entries": [{"spiffe_id": "spiffe://example.org/ok", "parent_id": "spiffe://example.org/p",
            "selectors": [{"type": "unix", "value": "uid:1"}]},
           {"spiffe_id": "spiffe://example.org/bad/", "parent_id": "spiffe://example.org/p",
            "selectors": [{"type": "unix", "value": "uid:1"}]}]}"#,
    )
    .unwrap();
    let path = path.display().to_string();
    let out = spinel_server(&["entry", "create", "-data", &path, "-socketPath", NO_SOCKET]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(&format!("-data {path}: entry 2: invalid SPIFFE ID")),
        "{}",
        out.stderr
    );
}

#[test]
fn unreachable_socket_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("api.sock");
    let missing = missing.display().to_string();
    for args in [
        &["entry", "count"][..],
        &["entry", "show"],
        &["token", "generate"],
        &["bundle", "show"],
        &["agent", "list"],
    ] {
        let mut all = args.to_vec();
        all.extend(["-socketPath", &missing]);
        let out = spinel_server(&all);
        assert_eq!(out.code, 1, "{args:?}");
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "Error: cannot connect to the server admin socket {missing}: no such file (is the server running, and is -socketPath right?)"
            ),
            "{args:?}"
        );
    }

    // A socket file nobody listens on: the server is not running.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let stale = stale.display().to_string();
    let out = spinel_server(&["entry", "count", "-socketPath", &stale]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);
    assert!(out.stderr.contains(&stale), "{}", out.stderr);
}
