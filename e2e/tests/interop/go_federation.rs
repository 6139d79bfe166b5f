//! go-spiffe v2.9.0 across two trust domains federated with each other
//! (each server holds the other's bundle, set with `bundle set` as
//! docs/federation.md seeds `https_spiffe`; the entries name the other
//! trust domain in `-federatesWith`): the X.509 and JWT bundle sets carry
//! both trust domains, a JWT-SVID of one is validated in the other (by
//! `jwtsvid.ParseAndValidate` and by the agent), and `spiffetls` connects a
//! client of one to a server of the other.

use std::path::Path;

use super::go_spiffe::{client_ok, go, start_server};
use super::{strings, Domain, Peer};

const TD_A: &str = "td-a.test";
const TD_B: &str = "td-b.test";
const A_ID: &str = "spiffe://td-a.test/go-client";
const B_ID: &str = "spiffe://td-b.test/go-server";

/// Stores `from`'s bundle in `into`'s server as a federated bundle.
fn seed_bundle(from: &Domain, into: &Domain, dir: &Path) {
    let bundle = from
        .server
        .cli(&["bundle", "show", "-format", "spiffe"])
        .unwrap()
        .ok()
        .unwrap()
        .stdout;
    let path = dir.join(format!("{}.json", from.server.trust_domain));
    std::fs::write(&path, bundle).unwrap();
    let id = format!("spiffe://{}", from.server.trust_domain);
    into.server
        .cli(&[
            "bundle",
            "set",
            "-format",
            "spiffe",
            "-id",
            &id,
            "-path",
            path.to_str().unwrap(),
        ])
        .unwrap()
        .ok()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn go_spiffe_trusts_a_federated_trust_domain() {
    let Some(out) = Peer::Go.built() else {
        return;
    };
    let a = Domain::start(TD_A, false);
    let b = Domain::start(TD_B, false);
    let dir = tempfile::tempdir().unwrap();
    seed_bundle(&b, &a, dir.path());
    seed_bundle(&a, &b, dir.path());
    a.register_me(A_ID, &["-federatesWith", &format!("spiffe://{TD_B}")]);
    b.register_me(B_ID, &["-federatesWith", &format!("spiffe://{TD_A}")]);
    a.wait_for_svid(A_ID).await;
    b.wait_for_svid(B_ID).await;

    let bundles = go(&out, "gospiffe-workload", &a, &["bundles"]).json();
    assert_eq!(strings(&bundles["x509"]), [TD_A, TD_B], "{bundles}");
    assert_eq!(strings(&bundles["jwt"]), [TD_A, TD_B], "{bundles}");
    let x509 = go(&out, "gospiffe-workload", &a, &["x509"]).json();
    assert_eq!(
        strings(&x509["trust_domains"]),
        [TD_A, TD_B],
        "X509Context bundles: {x509}"
    );

    // A JWT-SVID of td-b.test, validated in td-a.test.
    let jwt = go(
        &out,
        "gospiffe-workload",
        &b,
        &["jwt", "-audience", "td-a-service"],
    )
    .json();
    assert_eq!(jwt["spiffe_id"], B_ID, "{jwt}");
    let token = jwt["token"].as_str().unwrap();
    let validated = go(
        &out,
        "gospiffe-workload",
        &a,
        &["validate", "-token", token, "-audience", "td-a-service"],
    )
    .json();
    assert_eq!(
        validated["local_valid_id"], B_ID,
        "JWTSource bundles of td-b.test: {validated}"
    );
    assert_eq!(
        validated["agent_valid_id"], B_ID,
        "ValidateJWTSVID of a federated token: {validated}"
    );

    // spiffetls: a td-b.test server, a td-a.test client, each trusting the
    // other's trust domain only through the federated bundle.
    let (mut server, port) = start_server(
        &out.join("go/bin/gospiffe-mtls-server"),
        &["-listen", "127.0.0.1:0", "-allow", A_ID],
        &b.agent.endpoint(),
        dir.path(),
    );
    let connect = format!("127.0.0.1:{port}");
    let client = client_ok(
        &out.join("go/bin/gospiffe-mtls-client"),
        &["-connect", &connect, "-server-id", B_ID],
        &a.agent.endpoint(),
    );
    assert!(
        client
            .stdout
            .contains(&format!("pong 0.0 from {B_ID} to {A_ID}")),
        "{client:#?}\nserver log:\n{}",
        server.log()
    );
    server.kill();
}
