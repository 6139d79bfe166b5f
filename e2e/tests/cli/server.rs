//! `spinel-server` commands against a real server, checked against the
//! output SPIRE's CLI prints.

use spinel_test_fixtures::process::bin_path;
use spinel_test_fixtures::spinel::run_cli;

use crate::support::{ServerHandle, ServerOptions};

fn ok(server: &ServerHandle, args: &[&str]) -> String {
    server.cli(args).unwrap().ok().unwrap().stdout
}

#[test]
fn admin_commands_print_what_spire_prints() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();

    // One API listener, one "Starting Server APIs" line each, as SPIRE.
    let log = server.log();
    let starts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Starting Server APIs"))
        .collect();
    assert_eq!(starts.len(), 2, "{log}");
    assert!(
        starts
            .iter()
            .any(|l| l.contains("network=\"tcp\"") || l.contains("network=tcp")),
        "{log}"
    );
    assert!(
        starts
            .iter()
            .any(|l| l.contains("network=\"unix\"") || l.contains("network=unix")),
        "{log}"
    );

    // entry show / entry count list downstream entries too, unless
    // -downstream asks for them alone (SPIRE sends by_downstream=false).
    server
        .create_entry(&[
            "-parentID",
            "spiffe://example.org/node",
            "-spiffeID",
            "spiffe://example.org/w",
            "-selector",
            "unix:uid:1",
        ])
        .unwrap();
    server
        .create_entry(&[
            "-parentID",
            "spiffe://example.org/node",
            "-spiffeID",
            "spiffe://example.org/ds",
            "-selector",
            "unix:uid:2",
            "-downstream",
        ])
        .unwrap();
    let shown = ok(&server, &["entry", "show"]);
    assert!(shown.starts_with("Found 2 entries"), "{shown}");
    assert!(
        shown.contains("spiffe://example.org/ds") && shown.contains("spiffe://example.org/w"),
        "{shown}"
    );
    let only = ok(&server, &["entry", "show", "-downstream"]);
    assert!(
        only.starts_with("Found 1 entry") && only.contains("/ds"),
        "{only}"
    );
    assert!(ok(&server, &["entry", "count"]).starts_with("2 "));
    assert!(ok(&server, &["entry", "count", "-downstream"]).starts_with("1 "));

    // federation show: SPIRE's header.
    ok(
        &server,
        &[
            "federation",
            "create",
            "-trustDomain",
            "other.org",
            "-bundleEndpointURL",
            "https://127.0.0.1:1",
            "-bundleEndpointProfile",
            "https_web",
        ],
    );
    let show = ok(
        &server,
        &["federation", "show", "-trustDomain", "other.org"],
    );
    assert!(
        show.starts_with("Found a federation relationship with trust domain other.org:\n\nTrust domain              : other.org\n"),
        "{show}"
    );

    // jwt mint: the token alone, for the ID and audience asked.
    let token = ok(
        &server,
        &[
            "jwt",
            "mint",
            "-spiffeID",
            "spiffe://example.org/minted",
            "-audience",
            "vault",
            "-ttl",
            "1m",
        ],
    );
    let claims = token.trim().split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "spiffe://example.org/minted");
    assert!(
        claims["aud"] == "vault" || claims["aud"] == serde_json::json!(["vault"]),
        "{claims}"
    );
    let no_aud = server
        .cli(&["jwt", "mint", "-spiffeID", "spiffe://example.org/minted"])
        .unwrap();
    assert!(
        !no_aud.success()
            && no_aud
                .stderr
                .contains("at least one audience must be specified")
    );

    // logger get|set|reset (the test server starts at DEBUG).
    assert_eq!(
        ok(&server, &["logger", "get"]),
        "Logger Level : debug\nLaunch Level : debug\n\n"
    );
    assert_eq!(
        ok(&server, &["logger", "set", "-level", "warn"]),
        "Logger Level : warning\nLaunch Level : debug\n\n"
    );
    ok(&server, &["token", "generate"]);
    assert!(
        !server.log().contains("join token created"),
        "an info line was logged at warn"
    );
    assert_eq!(
        ok(&server, &["logger", "get", "-output", "json"]).trim(),
        r#"{"current_level":"WARN","launch_level":"DEBUG"}"#
    );
    assert_eq!(
        ok(&server, &["logger", "reset"]),
        "Logger Level : debug\nLaunch Level : debug\n\n"
    );
    ok(&server, &["token", "generate"]);
    assert!(server.log().contains("join token created"));
    let bad = server.cli(&["logger", "set", "-level", "loud"]).unwrap();
    assert!(
        !bad.success() && bad.stderr.contains("\"loud\" is not a valid setting"),
        "{bad:?}"
    );

    // agent purge: nothing to purge; a join-token agent never is.
    assert_eq!(ok(&server, &["agent", "purge"]), "No agents to purge.\n");
    assert_eq!(
        ok(
            &server,
            &[
                "agent",
                "purge",
                "-dryRun",
                "-expiredFor",
                "1s",
                "-output",
                "json"
            ]
        )
        .trim(),
        r#"{"expired_agents":[]}"#
    );

    // upstreamauthority: SPIRE's command and flag; the server says it is
    // not supported, in SPIRE's error shape.
    let taint = server
        .cli(&["upstreamauthority", "taint", "-subjectKeyID", "abcd"])
        .unwrap();
    assert!(!taint.success());
    assert!(
        taint
            .stderr
            .contains("could not taint X.509 upstream authority: rpc error: code = Unimplemented"),
        "{taint:?}"
    );
}

#[test]
fn validate_checks_a_config_without_starting() {
    let server = ServerHandle::configure(ServerOptions::default()).unwrap();
    let config = server.config_path.display().to_string();
    let out = run_cli(
        &bin_path("spinel-server"),
        &["validate", "-config", &config],
    )
    .unwrap();
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "SPIRE server configuration file is valid.\n"),
        "{out:?}"
    );
    assert!(!server.socket_path.exists(), "validate started the server");

    let text = std::fs::read_to_string(&server.config_path).unwrap();
    std::fs::write(
        &server.config_path,
        text.replace(
            "log_level = \"DEBUG\"",
            "log_level = \"DEBUG\"\n    no_such_key = 1",
        ),
    )
    .unwrap();
    let out = run_cli(
        &bin_path("spinel-server"),
        &["validate", "-config", &config],
    )
    .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .starts_with("SPIRE server configuration file is invalid: "),
        "{out:?}"
    );
    assert!(out.stderr.contains("no_such_key"), "{out:?}");

    let out = run_cli(
        &bin_path("spinel-server"),
        &["validate", "-config", "invalid/path"],
    )
    .unwrap();
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("SPIRE server configuration file is invalid"),
        "{out:?}"
    );
}
