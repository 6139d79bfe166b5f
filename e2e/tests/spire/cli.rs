//! Row (3): SPIRE's own `spire-server` CLI (a grpc-go client of SPIRE's
//! server API) on Spinel's admin socket: `entry create/show/update/count/
//! delete`, `token generate`, `bundle show/set/list/delete`, `agent
//! list/show/count`, `healthcheck`; what it writes is what Spinel's own
//! CLI reads back.

use serde_json::Value;

use crate::support::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

use super::{pem_certs, spire};

const NODE: &str = "spiffe://example.org/cli-node";
const WORKLOAD: &str = "spiffe://example.org/cli-workload";

/// The value of a `Key : value` line of SPIRE's text output.
fn field<'a>(stdout: &'a str, key: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .collect()
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn spire_server_cli_drives_spinels_admin_socket() {
    let Some(spire) = spire() else { return };
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let cli = |args: &[&str]| spire.server_cli(&server.socket_path, args).unwrap();
    let ok = |args: &[&str]| cli(args).ok().unwrap().stdout;

    assert_eq!(ok(&["healthcheck"]).trim(), "Server is healthy.");

    // token generate: a token a (Spinel) agent attests with.
    let out = ok(&["token", "generate", "-spiffeID", NODE, "-ttl", "300"]);
    let token = field(&out, "Token")[0].to_owned();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let agent_id = format!("spiffe://example.org/spire/agent/join_token/{token}");
    let token_json = json(&ok(&["token", "generate", "-output", "json"]));
    assert!(
        token_json["value"].as_str().is_some_and(|v| !v.is_empty()),
        "{token_json}"
    );

    // entry create with every common flag; Spinel's CLI reads it back.
    let created = ok(&[
        "entry",
        "create",
        "-parentID",
        NODE,
        "-spiffeID",
        WORKLOAD,
        "-selector",
        "unix:uid:1000",
        "-selector",
        "unix:gid:1000",
        "-dns",
        "cli.example.org",
        "-x509SVIDTTL",
        "120",
        "-jwtSVIDTTL",
        "60",
        "-hint",
        "cli",
        "-admin",
    ]);
    let id = field(&created, "Entry ID")[0].to_owned();
    assert_eq!(
        field(&created, "Selector"),
        ["unix:gid:1000", "unix:uid:1000"],
        "{created}"
    );
    let spinel_view = server
        .cli(&["entry", "show", "-entryID", &id])
        .unwrap()
        .ok()
        .unwrap()
        .stdout;
    for (key, value) in [
        ("SPIFFE ID", WORKLOAD),
        ("Parent ID", NODE),
        ("X509-SVID TTL", "120"),
        ("JWT-SVID TTL", "60"),
        ("DNS name", "cli.example.org"),
        ("Hint", "cli"),
        ("Admin", "true"),
    ] {
        assert_eq!(field(&spinel_view, key), [value], "{key} in {spinel_view}");
    }

    // entry show by each filter SPIRE's CLI offers.
    for filter in [
        &["-entryID", id.as_str()][..],
        &["-spiffeID", WORKLOAD],
        &["-parentID", NODE],
        &["-selector", "unix:uid:1000"],
        &[
            "-selector",
            "unix:gid:1000",
            "-matchSelectorsOn",
            "superset",
        ],
    ] {
        let mut args = vec!["entry", "show"];
        args.extend_from_slice(filter);
        let shown = ok(&args);
        assert_eq!(
            field(&shown, "Entry ID"),
            [id.as_str()],
            "{filter:?}: {shown}"
        );
    }
    let all = ok(&["entry", "show"]);
    // The alias entry `token generate -spiffeID` made, and ours.
    assert!(all.starts_with("Found 2 entries"), "{all}");
    assert_eq!(
        json(&ok(&["entry", "count", "-output", "json"]))["count"],
        2
    );
    let listed = json(&ok(&[
        "entry",
        "show",
        "-spiffeID",
        WORKLOAD,
        "-output",
        "json",
    ]));
    assert_eq!(listed["entries"][0]["id"], id.as_str(), "{listed}");

    // entry update, then delete.
    let updated = ok(&[
        "entry",
        "update",
        "-entryID",
        &id,
        "-parentID",
        NODE,
        "-spiffeID",
        WORKLOAD,
        "-selector",
        "unix:uid:1001",
        "-x509SVIDTTL",
        "200",
    ]);
    assert_eq!(field(&updated, "Revision"), ["1"], "{updated}");
    assert_eq!(field(&updated, "Selector"), ["unix:uid:1001"], "{updated}");
    let deleted = ok(&["entry", "delete", "-entryID", &id]);
    assert!(
        deleted.contains(&format!("Deleted entry with ID: {id}")),
        "{deleted}"
    );
    let gone = cli(&["entry", "show", "-entryID", &id]);
    assert!(
        !gone.success() && gone.stderr.contains("NotFound"),
        "{gone:?}"
    );

    // bundle show: the same certificates Spinel's CLI shows.
    let spire_pem = ok(&["bundle", "show"]);
    assert_eq!(
        pem_certs(&spire_pem),
        pem_certs(&server.bundle_pem().unwrap())
    );
    let spiffe = json(&ok(&["bundle", "show", "-format", "spiffe"]));
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
    // A federated bundle: set, list, delete.
    let fed_path = server.dir.path().join("other.pem");
    std::fs::write(&fed_path, &spire_pem).unwrap();
    let fed_path = fed_path.display().to_string();
    ok(&[
        "bundle",
        "set",
        "-id",
        "spiffe://other.org",
        "-path",
        &fed_path,
    ]);
    let fed = ok(&["bundle", "list", "-id", "spiffe://other.org"]);
    assert_eq!(pem_certs(&fed), pem_certs(&spire_pem));
    ok(&["bundle", "delete", "-id", "spiffe://other.org"]);
    assert!(ok(&["bundle", "list"]).trim().is_empty());

    // agent list/show/count.
    let agents = ok(&["agent", "list"]);
    assert!(agents.starts_with("Found 1 attested agent"), "{agents}");
    assert_eq!(field(&agents, "SPIFFE ID"), [agent_id.as_str()], "{agents}");
    let shown = ok(&["agent", "show", "-spiffeID", &agent_id]);
    assert_eq!(field(&shown, "Attestation type"), ["join_token"], "{shown}");
    assert_eq!(
        json(&ok(&["agent", "count", "-output", "json"]))["count"],
        1
    );
    drop(agent);
}
