//! py-spiffe 0.3.2 (PyPI `spiffe`) over gRPC C-core, which sends the
//! percent-encoded socket path as HTTP/2 `:authority`: the snippet
//! unchanged, X509 context (SVIDs and bundles), JWT fetch and validation,
//! bundles, a watch that sees the SVID rotate, PermissionDenied for a
//! process with no entry and InvalidArgument without the security header
//! (a raw grpcio call: py-spiffe always sends the header).

use std::path::PathBuf;

use super::{run_peer, strings, Domain, Peer, PeerOutput};

const ID: &str = "spiffe://example.org/py-workload";

/// Runs `py_spiffe_peer.py SOCKET args...` with the venv's Python.
fn py(out: &std::path::Path, socket: &str, args: &[&str]) -> PeerOutput {
    let script: PathBuf = super::interop_dir().join("python/py_spiffe_peer.py");
    let script = script.display().to_string();
    let mut all = vec![script.as_str(), socket];
    all.extend_from_slice(args);
    run_peer(&out.join("python/venv/bin/python"), &all, &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn py_spiffe_fetches_validates_and_is_refused_as_with_spire() {
    let Some(out) = Peer::Python.built() else {
        return;
    };
    let td = Domain::start("example.org", false);
    let socket = td.socket();

    // No entry yet: PermissionDenied, through py-spiffe's own error path.
    let denied = py(&out, &socket, &["denied"]).json();
    assert_eq!(denied["code"], "PERMISSION_DENIED", "{denied}");
    // No security header: InvalidArgument (a raw grpcio call).
    let no_header = py(&out, &socket, &["no-header"]).json();
    assert_eq!(no_header["code"], "INVALID_ARGUMENT", "{no_header}");

    td.register_me(ID, &["-hint", "py"]);
    td.wait_for_svid(ID).await;

    // The snippet: WorkloadApiClient("unix:///...").fetch_x509_svid().
    let snippet = py(&out, &socket, &["snippet"]).json();
    assert_eq!(snippet["spiffe_id"], ID, "{snippet}");
    assert!(snippet["chain_len"].as_u64().unwrap() >= 1, "{snippet}");

    let ctx = py(&out, &socket, &["x509-context"]).json();
    assert_eq!(strings(&ctx["svids"]), [ID], "{ctx}");
    assert_eq!(ctx["default_svid"], ID);
    assert_eq!(ctx["source_svid"], ID, "X509Source: {ctx}");
    assert_eq!(
        strings(&ctx["context_trust_domains"]),
        ["example.org"],
        "{ctx}"
    );
    assert_eq!(
        strings(&ctx["bundle_trust_domains"]),
        ["example.org"],
        "{ctx}"
    );
    assert!(ctx["authorities"].as_u64().unwrap() >= 1, "{ctx}");

    let jwt = py(&out, &socket, &["jwt", "py-audience"]).json();
    assert_eq!(jwt["spiffe_id"], ID, "{jwt}");
    assert_eq!(strings(&jwt["audience"]), ["py-audience"]);
    assert_eq!(jwt["agent_valid_id"], ID, "ValidateJWTSVID: {jwt}");
    assert_eq!(
        jwt["local_valid_id"], ID,
        "JwtSource + parse_and_validate: {jwt}"
    );
    assert_eq!(
        jwt["wrong_audience"], "INVALID_ARGUMENT",
        "ValidateJWTSVID, other audience: {jwt}"
    );

    let bundles = py(&out, &socket, &["bundles"]).json();
    assert_eq!(strings(&bundles["x509"]), ["example.org"], "{bundles}");
    assert_eq!(strings(&bundles["jwt"]), ["example.org"], "{bundles}");
    assert!(bundles["jwt_keys"].as_u64().unwrap() >= 1, "{bundles}");
}

#[tokio::test(flavor = "multi_thread")]
async fn py_spiffe_watch_sees_the_svid_rotate() {
    let Some(out) = Peer::Python.built() else {
        return;
    };
    let td = Domain::start("example.org", false);
    // A 10 s SVID is renewed at about half its life: the stream must carry
    // a second one within the peer's 90 s.
    td.register_me(ID, &["-x509SVIDTTL", "10"]);
    td.wait_for_svid(ID).await;

    let watch = py(&out, &td.socket(), &["watch", "2", "90"]);
    let result = watch.json();
    assert_eq!(result["error"], serde_json::Value::Null, "{watch:#?}");
    let serials = strings(&result["serials"]);
    assert_eq!(
        serials.len(),
        2,
        "a second SVID within 90 s: {watch:#?}\nagent log:\n{}",
        td.agent.log()
    );
    assert_ne!(serials[0], serials[1]);
    assert_eq!(watch.stdout.matches(ID).count(), 2, "{watch:#?}");
}
