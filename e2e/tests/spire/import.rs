//! `spinel-server datastore import -from spire` against a datastore a real
//! `spire-server` 1.13.3 wrote: entries (selectors, DNS names, federated
//! trust domains, admin/downstream, expiry, hint), an agent a real
//! `spire-agent` attested, the server's bundle and a federated one, a
//! federation relationship and join tokens. The import is read back
//! through Spinel's CLI, a second run changes nothing, a SPIRE join token
//! attests a Spinel agent, and SPIRE's CA stays in Spinel's bundle next
//! to Spinel's own.

use crate::support::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

use super::{my_uid_selector, spire, SpireAgent, WorkloadCli};
use spinel_test_fixtures::bin_path;
use spinel_test_fixtures::spire::SpireServer;

const NODE: &str = "spiffe://example.org/spire-node";
const WEB: &str = "spiffe://example.org/web";

fn import(server: &ServerHandle, spire_db: &std::path::Path) -> String {
    let out = std::process::Command::new(bin_path("spinel-server"))
        .args([
            "datastore",
            "import",
            "-from",
            "spire",
            "-databaseType",
            "sqlite3",
            "-connectionString",
            spire_db.to_str().unwrap(),
            "-config",
            server.config_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_spire_datastore_imports_into_spinel_once() {
    let Some(spire) = spire() else { return };
    let spire_server = SpireServer::start(&spire, "").unwrap();
    let cli = |args: &[&str]| {
        let out = spire_server.cli(args).unwrap();
        assert!(out.success(), "{args:?}: {out:?}");
        out.stdout
    };
    // A federated bundle first (entries name it), then the relationship.
    let own_bundle = cli(&["bundle", "show"]);
    let bundle_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bundle_file.path(), &own_bundle).unwrap();
    cli(&[
        "bundle",
        "set",
        "-id",
        "spiffe://other.org",
        "-path",
        bundle_file.path().to_str().unwrap(),
    ]);
    cli(&[
        "federation",
        "create",
        "-trustDomain",
        "other.org",
        "-bundleEndpointURL",
        "https://other.example:8443",
        "-bundleEndpointProfile",
        "https_web",
    ]);
    let web_id = spire_server
        .create_entry(&[
            "-parentID",
            NODE,
            "-spiffeID",
            WEB,
            "-selector",
            &my_uid_selector(),
            "-dns",
            "web.example.org",
            "-federatesWith",
            "spiffe://other.org",
            "-x509SVIDTTL",
            "600",
            "-jwtSVIDTTL",
            "120",
            "-hint",
            "frontend",
        ])
        .unwrap();
    let admin_id = spire_server
        .create_entry(&[
            "-parentID",
            NODE,
            "-spiffeID",
            "spiffe://example.org/admin-tool",
            "-selector",
            "unix:uid:4242",
            "-selector",
            "k8s:ns:default",
            "-admin",
            "-downstream",
            "-entryExpiry",
            "1900000000",
        ])
        .unwrap();
    // An agent attests (an attested node with selectors), and a second
    // token stays unused.
    let used = spire_server.generate_token(NODE).unwrap();
    let agent = SpireAgent::start(&spire, &spire_server.endpoint().unwrap(), &used).unwrap();
    spire.wait_x509(&agent.socket_path, WEB).unwrap();
    drop(agent);
    let unused = spire_server.generate_token(NODE).unwrap();
    let spire_ca = spire_server
        .cli(&["bundle", "show", "-format", "pem"])
        .unwrap()
        .stdout;

    let mut server = ServerHandle::configure(ServerOptions::default()).unwrap();
    let first = import(&server, &spire_server.datastore_path());
    // Entries: WEB, the admin entry, and the node alias per token (SPIRE
    // registers one per `token generate -spiffeID`).
    assert!(
        first.contains("entries: 4 imported, 0 already present, 0 skipped"),
        "{first}"
    );
    assert!(first.contains("agents: 1 imported"), "{first}");
    assert!(first.contains("bundles: 2 imported"), "{first}");
    assert!(
        first.contains("federation relationships: 1 imported"),
        "{first}"
    );
    // The used token is gone from SPIRE's datastore; the unused one moves.
    assert!(first.contains("join tokens: 1 imported"), "{first}");
    assert!(!first.contains(&unused), "a token was printed");
    let again = import(&server, &spire_server.datastore_path());
    for line in [
        "entries: 0 imported, 4 already present, 0 skipped",
        "agents: 0 imported, 1 already present",
        "bundles: 0 imported, 2 already present",
        "federation relationships: 0 imported, 1 already present",
        "join tokens: 0 imported, 1 already present",
    ] {
        assert!(again.contains(line), "second run: {again}");
    }

    server.start_process().unwrap();
    // CLI output with runs of spaces folded, so fields read "Name : value".
    let show = |args: &[&str]| {
        let out = server.cli(args).unwrap().ok().unwrap().stdout;
        out.split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let web = show(&["entry", "show", "-entryID", &web_id]);
    for want in [
        WEB,
        "DNS name : web.example.org",
        "FederatesWith : other.org",
        "X509-SVID TTL : 600",
        "JWT-SVID TTL : 120",
        "Hint : frontend",
    ] {
        assert!(web.contains(want), "{want:?} missing:\n{web}");
    }
    let admin = show(&["entry", "show", "-entryID", &admin_id]);
    assert!(admin.contains("k8s:ns:default"), "{admin}");
    assert!(admin.contains("Admin : true"), "{admin}");
    assert!(admin.contains("Downstream : true"), "{admin}");
    let agent_id = format!("spiffe://example.org/spire/agent/join_token/{used}");
    let agents = show(&["agent", "show", "-spiffeID", &agent_id]);
    assert!(agents.contains("join_token"), "{agents}");
    assert!(show(&["federation", "list"]).contains("other.org"));
    // SPIRE's CA and Spinel's own, side by side.
    let bundle = show(&["bundle", "show", "-format", "pem"]);
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "{bundle}");
    assert!(
        bundle.contains(spire_ca.trim()),
        "SPIRE's CA was dropped:\n{bundle}"
    );

    // The SPIRE join token attests a Spinel agent.
    let spinel_agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(unused.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(spinel_agent.log().contains("node attestation succeeded"));
}
