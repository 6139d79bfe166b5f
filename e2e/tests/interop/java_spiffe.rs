//! java-spiffe 0.8.17 (`io.spiffe:java-spiffe-core` with
//! `io.spiffe:grpc-netty-linux`): grpc-java over a Unix socket with Netty's
//! epoll transport, which sends the raw socket path as HTTP/2 `:authority`.
//! It fetches X509 and JWT SVIDs, validates a JWT-SVID by the agent and with
//! the JWT bundles, and is refused with PermissionDenied without an entry.

use std::path::Path;

use super::{run_peer, strings, Domain, Peer, PeerOutput};

const ID: &str = "spiffe://example.org/java-workload";

/// Runs `java -cp <classes and jars> spinel.interop.Peer SOCKET args...`.
fn java(out: &Path, socket: &str, args: &[&str]) -> PeerOutput {
    let target = out.join("java/target");
    let classpath = format!(
        "{}:{}/*",
        target.join("classes").display(),
        target.join("lib").display()
    );
    let mut all = vec!["-cp", &classpath, "spinel.interop.Peer", socket];
    all.extend_from_slice(args);
    run_peer(Path::new("java"), &all, &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn java_spiffe_over_netty_epoll_fetches_x509_and_jwt_svids() {
    let Some(out) = Peer::Java.built() else {
        return;
    };
    let td = Domain::start("example.org", false);
    let socket = td.socket();

    let denied = java(&out, &socket, &["denied"]).json();
    let error = denied["error"].as_str().unwrap_or_default();
    assert!(error.contains("PERMISSION_DENIED"), "{denied}");

    td.register_me(ID, &[]);
    td.wait_for_svid(ID).await;

    let x509 = java(&out, &socket, &["x509"]).json();
    assert_eq!(strings(&x509["svids"]), [ID], "{x509}");
    assert_eq!(x509["default_svid"], ID);
    assert_eq!(x509["source_svid"], ID, "DefaultX509Source: {x509}");
    assert!(x509["chain_len"].as_u64().unwrap() >= 1, "{x509}");
    assert_eq!(
        strings(&x509["context_trust_domains"]),
        ["example.org"],
        "{x509}"
    );
    assert_eq!(
        strings(&x509["bundle_trust_domains"]),
        ["example.org"],
        "{x509}"
    );

    let jwt = java(&out, &socket, &["jwt", "java-audience"]).json();
    assert_eq!(jwt["spiffe_id"], ID, "{jwt}");
    assert_eq!(strings(&jwt["audience"]), ["java-audience"]);
    assert_eq!(jwt["agent_valid_id"], ID, "validateJwtSvid: {jwt}");
    assert_eq!(jwt["local_valid_id"], ID, "JwtSvid.parseAndValidate: {jwt}");
    assert_eq!(strings(&jwt["jwt_trust_domains"]), ["example.org"], "{jwt}");
}
