//! The admin subcommands of the real `spinel-server` binary against a real
//! server (started by the same binary from a config file), checked against
//! SPIRE's output formats.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::Value;
use spinel_test_fixtures::spinel::entry_id_of;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `spinel-server <args> -socketPath <server's socket>`, feeding `stdin`.
fn run(server: &ServerHandle, args: &[&str], stdin: &[u8]) -> Out {
    let mut child = Command::new(spinel_test_fixtures::bin_path("spinel-server"))
        .args(args)
        .arg("-socketPath")
        .arg(&server.socket_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run spinel-server");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a command that must succeed; returns its stdout.
fn ok(server: &ServerHandle, args: &[&str]) -> String {
    let out = run(server, args, b"");
    assert_eq!(
        out.code,
        0,
        "{args:?} failed\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    out.stdout
}

/// Runs a command that must fail with exit code 1; returns it.
fn fails(server: &ServerHandle, args: &[&str]) -> Out {
    let out = run(server, args, b"");
    assert_eq!(
        out.code, 1,
        "{args:?} should fail\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out
}

fn json(text: &str) -> Value {
    assert!(
        text.ends_with('\n') && text.trim_end().lines().count() == 1,
        "{text:?}"
    );
    serde_json::from_str(text).unwrap()
}

fn server() -> ServerHandle {
    ServerHandle::start(ServerOptions {
        key_manager: "memory".into(),
        ..Default::default()
    })
    .unwrap()
}

const README_CREATE: &[&str] = &[
    "entry",
    "create",
    "-parentID",
    "spiffe://example.org/myagent",
    "-spiffeID",
    "spiffe://example.org/myservice",
    "-selector",
    "unix:uid:1000",
    "-dns",
    "example.org",
    "-hint",
    "myservice",
    "-jwtSVIDTTL",
    "60",
];

fn readme_block(id: &str) -> String {
    format!(
        "\
Entry ID                : {id}
SPIFFE ID               : spiffe://example.org/myservice
Parent ID               : spiffe://example.org/myagent
Revision                : 0
X509-SVID TTL           : default
JWT-SVID TTL            : 60
Selector                : unix:uid:1000
DNS name                : example.org
Hint                    : myservice

"
    )
}

#[test]
fn entries_round_trip() {
    let server = server();

    // create, as in the README: SPIRE's block, exactly.
    let created = ok(&server, README_CREATE);
    let id = entry_id_of(&created).unwrap();
    assert_eq!(created, readme_block(&id));

    // show by ID and by SPIFFE ID; count.
    let shown = ok(&server, &["entry", "show", "-entryID", &id]);
    assert_eq!(shown, format!("Found 1 entry\n{}", readme_block(&id)));
    let shown = ok(
        &server,
        &[
            "entry",
            "show",
            "-spiffeID",
            "spiffe://example.org/myservice",
        ],
    );
    assert_eq!(shown, format!("Found 1 entry\n{}", readme_block(&id)));
    assert_eq!(ok(&server, &["entry", "count"]), "1 registration entry\n");

    // -output json: protojson with proto names, 64-bit integers as strings.
    let listed = json(&ok(
        &server,
        &[
            "entry",
            "show",
            "-parentID",
            "spiffe://example.org/myagent",
            "-output",
            "json",
        ],
    ));
    let entry = &listed["entries"][0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["spiffe_id"]["path"], "/myservice");
    assert_eq!(entry["spiffe_id"]["trust_domain"], "example.org");
    assert_eq!(entry["jwt_svid_ttl"], 60);
    assert_eq!(entry["dns_names"][0], "example.org");
    assert_eq!(entry["revision_number"], "0");
    assert_eq!(entry["selectors"][0]["type"], "unix");

    // The same entry again: the failure is printed with its status, and the
    // command fails.
    let dup = fails(&server, README_CREATE);
    assert!(
        dup.stderr
            .starts_with("Failed to create the following entry (code: AlreadyExists, msg: "),
        "{}",
        dup.stderr
    );
    assert!(dup
        .stderr
        .contains("SPIFFE ID               : spiffe://example.org/myservice\n"));
    assert!(dup
        .stderr
        .ends_with("Error: failed to create one or more entries\n"));

    // update replaces the entry whole.
    let updated = ok(
        &server,
        &[
            "entry",
            "update",
            "-entryID",
            &id,
            "-parentID",
            "spiffe://example.org/myagent",
            "-spiffeID",
            "spiffe://example.org/myservice",
            "-selector",
            "unix:uid:1000",
            "-x509SVIDTTL",
            "120",
            "-hint",
            "updated",
        ],
    );
    assert!(
        updated.starts_with(&format!("Entry ID                : {id}\n")),
        "{updated}"
    );
    assert!(
        updated.contains("X509-SVID TTL           : 120\n"),
        "{updated}"
    );
    assert!(
        updated.contains("Hint                    : updated\n"),
        "{updated}"
    );
    assert!(!updated.contains("DNS name"), "{updated}");

    // -data from a file and from stdin, in SPIRE's format.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("entries.json");
    std::fs::write(
        &data,
        r#"{"entries": [
            {"spiffe_id": "spiffe://example.org/db", "parent_id": "spiffe://example.org/myagent",
             "selectors": [{"type": "unix", "value": "uid:1001"}], "x509_svid_ttl": 300},
            {"spiffe_id": "spiffe://example.org/cache", "parent_id": "spiffe://example.org/myagent",
             "selectors": [{"type": "unix", "value": "uid:1002"}], "dns_names": ["cache"]}]}"#,
    )
    .unwrap();
    let from_file = ok(
        &server,
        &["entry", "create", "-data", &data.display().to_string()],
    );
    assert_eq!(from_file.matches("Entry ID ").count(), 2, "{from_file}");
    let from_stdin = run(
        &server,
        &["entry", "create", "-data", "-"],
        br#"{"entries": [{"spiffe_id": "spiffe://example.org/queue",
            "parent_id": "spiffe://example.org/myagent",
            "selectors": [{"type": "unix", "value": "uid:1003"}]}]}"#,
    );
    assert_eq!(from_stdin.code, 0, "{}", from_stdin.stderr);
    let queue_id = entry_id_of(&from_stdin.stdout).unwrap();

    // A node alias is parented to the server.
    let node = ok(
        &server,
        &[
            "entry",
            "create",
            "-node",
            "-spiffeID",
            "spiffe://example.org/nodes",
            "-selector",
            "join_token:abc",
        ],
    );
    assert!(
        node.contains("Parent ID               : spiffe://example.org/spire/server\n"),
        "{node}"
    );
    assert_eq!(ok(&server, &["entry", "count"]), "5 registration entries\n");
    assert_eq!(
        json(&ok(&server, &["entry", "count", "-output", "json"])),
        serde_json::json!({"count": 5})
    );

    // Batch delete from a file: one ID exists, one does not.
    let ids = dir.path().join("ids.json");
    std::fs::write(
        &ids,
        format!(r#"{{"ids": ["{queue_id}", "no-such-entry"]}}"#),
    )
    .unwrap();
    let deleted = fails(
        &server,
        &["entry", "delete", "-file", &ids.display().to_string()],
    );
    assert!(
        deleted
            .stdout
            .starts_with(&format!("Deleted entry with ID: {queue_id}\n")),
        "{}",
        deleted.stdout
    );
    assert!(
        deleted
            .stdout
            .contains("Deleted 1 entries successfully, but failed to delete 1 entries"),
        "{}",
        deleted.stdout
    );
    assert!(
        deleted
            .stderr
            .starts_with("Failed to delete entry with ID no-such-entry (code: NotFound, msg: "),
        "{}",
        deleted.stderr
    );

    // Delete by ID, then it is gone.
    let deleted = ok(&server, &["entry", "delete", "-entryID", &id]);
    assert_eq!(
        deleted,
        format!("Deleted entry with ID: {id}\n\n\nDeleted 1 entries successfully\n")
    );
    let gone = fails(&server, &["entry", "show", "-entryID", &id]);
    assert!(
        gone.stderr.starts_with(&format!(
            "Error: error fetching entry ID {id}: rpc error: code = NotFound desc = "
        )),
        "{}",
        gone.stderr
    );
    assert_eq!(ok(&server, &["entry", "count"]), "3 registration entries\n");
}

#[test]
fn tokens_and_bundles() {
    let server = server();

    // token generate -spiffeID: the token and an alias entry for the agent.
    let out = ok(
        &server,
        &[
            "token",
            "generate",
            "-spiffeID",
            "spiffe://example.org/myagent",
        ],
    );
    let token = out
        .strip_prefix("Token: ")
        .and_then(|t| t.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(!token.is_empty() && !token.contains('\n'), "{out:?}");
    let alias = ok(
        &server,
        &["entry", "show", "-spiffeID", "spiffe://example.org/myagent"],
    );
    assert!(alias.starts_with("Found 1 entry\n"), "{alias}");
    assert!(
        alias.contains(&format!(
            "Parent ID               : spiffe://example.org/spire/agent/join_token/{token}\n"
        )),
        "{alias}"
    );

    let out = ok(&server, &["token", "generate"]);
    assert!(
        out.starts_with("Token: ") && out.ends_with("\nWarning: Missing SPIFFE ID.\n"),
        "{out:?}"
    );
    let out = json(&ok(
        &server,
        &["token", "generate", "-ttl", "60", "-output", "json"],
    ));
    assert!(
        out["value"].as_str().is_some_and(|v| !v.is_empty()),
        "{out}"
    );
    assert!(
        out["expires_at"]
            .as_str()
            .is_some_and(|v| v.parse::<i64>().is_ok()),
        "{out}"
    );

    // bundle show: PEM by default, SPIFFE JSON, protobuf JSON.
    let pem = ok(&server, &["bundle", "show"]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    let spiffe: Value =
        serde_json::from_str(&ok(&server, &["bundle", "show", "-format", "spiffe"])).unwrap();
    let uses: Vec<&str> = spiffe["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["use"].as_str())
        .collect();
    assert!(
        uses.contains(&"x509-svid") && uses.contains(&"jwt-svid"),
        "{spiffe}"
    );
    let proto = json(&ok(&server, &["bundle", "show", "-output", "json"]));
    assert_eq!(proto["trust_domain"], "example.org");
    let der = base64::engine::general_purpose::STANDARD
        .decode(proto["x509_authorities"][0]["asn1"].as_str().unwrap())
        .unwrap();
    x509_parser::parse_x509_certificate(&der).unwrap();

    // A federated bundle: set from a file, list, count, delete.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_pem = params.self_signed(&key).unwrap().pem();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.pem");
    std::fs::write(&path, &other_pem).unwrap();
    assert_eq!(
        ok(
            &server,
            &[
                "bundle",
                "set",
                "-id",
                "spiffe://other.org",
                "-path",
                &path.display().to_string()
            ]
        ),
        "bundle set.\n"
    );
    let rule = "****************************************";
    assert_eq!(
        ok(&server, &["bundle", "list"]),
        format!("{rule}\n* other.org\n{rule}\n{other_pem}")
    );
    let one = ok(
        &server,
        &["bundle", "list", "-id", "other.org", "-format", "spiffe"],
    );
    assert!(one.starts_with("{\n    \"keys\": [\n"), "{one}");
    assert_eq!(ok(&server, &["bundle", "count"]), "2 bundles\n");

    // From stdin, in SPIFFE format: the document just printed.
    let piped = run(
        &server,
        &["bundle", "set", "-id", "third.org", "-format", "spiffe"],
        one.as_bytes(),
    );
    assert_eq!(
        (piped.code, piped.stdout.as_str()),
        (0, "bundle set.\n"),
        "{}",
        piped.stderr
    );
    assert_eq!(ok(&server, &["bundle", "count"]), "3 bundles\n");

    assert_eq!(
        ok(&server, &["bundle", "delete", "-id", "other.org"]),
        "bundle deleted.\n"
    );
    let gone = fails(&server, &["bundle", "list", "-id", "other.org"]);
    assert!(
        gone.stderr.contains("rpc error: code = NotFound"),
        "{}",
        gone.stderr
    );
}

#[test]
fn agents() {
    let server = server();
    assert_eq!(
        ok(&server, &["agent", "list"]),
        "No attested agents found\n"
    );
    assert_eq!(ok(&server, &["agent", "count"]), "0 attested agents\n");
    let missing = fails(
        &server,
        &[
            "agent",
            "show",
            "-spiffeID",
            "spiffe://example.org/spire/agent/join_token/nope",
        ],
    );
    assert!(
        missing
            .stderr
            .starts_with("Error: rpc error: code = NotFound desc = "),
        "{}",
        missing.stderr
    );

    let token = server.generate_token(None).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token.clone()),
            key_manager: Some("memory".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let agent_id = format!("spiffe://example.org/spire/agent/join_token/{token}");

    let listed = ok(&server, &["agent", "list"]);
    assert!(
        listed.starts_with(&format!(
            "Found 1 attested agent:\n\nSPIFFE ID         : {agent_id}\nAttestation type  : join_token\nExpiration time   : "
        )),
        "{listed}"
    );
    assert!(listed.contains("\nSerial number     : "), "{listed}");
    assert!(listed.contains("\nCan re-attest     : false\n"), "{listed}");
    assert_eq!(ok(&server, &["agent", "count"]), "1 attested agent\n");
    let shown = ok(&server, &["agent", "show", "-spiffeID", &agent_id]);
    assert!(
        shown.starts_with(&format!(
            "Found an attested agent given its SPIFFE ID\n\nSPIFFE ID         : {agent_id}\n"
        )),
        "{shown}"
    );
    let as_json = json(&ok(&server, &["agent", "list", "-output", "json"]));
    assert_eq!(as_json["agents"][0]["attestation_type"], "join_token");
    assert!(
        as_json["agents"][0]["x509svid_expires_at"].is_string(),
        "{as_json}"
    );

    assert_eq!(
        ok(&server, &["agent", "ban", "-spiffeID", &agent_id]),
        "Agent banned successfully\n"
    );
    let banned = ok(&server, &["agent", "list", "-banned", "true"]);
    assert!(banned.contains("\nBanned            : true\n"), "{banned}");
    assert_eq!(
        ok(&server, &["agent", "list", "-banned", "false"]),
        "No attested agents found\n"
    );

    assert_eq!(
        ok(&server, &["agent", "evict", "-spiffeID", &agent_id]),
        "Agent evicted successfully\n"
    );
    assert_eq!(
        ok(&server, &["agent", "list"]),
        "No attested agents found\n"
    );
    drop(agent);
}
