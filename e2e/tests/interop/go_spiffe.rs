//! go-spiffe v2.9.0 in one trust domain: `workloadapi.X509Source` and
//! `JWTSource`, `ValidateJWTSVID` by the agent and `jwtsvid.ParseAndValidate`
//! with the source's bundles, `FetchWITSVID` (Unimplemented), and
//! `spiffetls` mutual TLS with the Rust
//! services of `examples/mtls` in both directions (each process registered
//! by its executable's path).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spinel_test_fixtures::{bin_path, Process};

use super::{run_peer, strings, Domain, Peer, PeerOutput};

const ID: &str = "spiffe://example.org/go-workload";
const GO_SERVER: &str = "spiffe://example.org/go-server";
const GO_CLIENT: &str = "spiffe://example.org/go-client";
const RUST_SERVER: &str = "spiffe://example.org/rust-server";
const RUST_CLIENT: &str = "spiffe://example.org/rust-client";

/// Runs the go-spiffe program `name` against `td`'s agent
/// (`SPIFFE_ENDPOINT_SOCKET`, as any go-spiffe workload finds it).
pub fn go(out: &Path, name: &str, td: &Domain, args: &[&str]) -> PeerOutput {
    let endpoint = td.agent.endpoint();
    run_peer(
        &out.join("go/bin").join(name),
        args,
        &[("SPIFFE_ENDPOINT_SOCKET", &endpoint)],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn go_spiffe_sources_fetch_and_validate() {
    let Some(out) = Peer::Go.built() else {
        return;
    };
    let td = Domain::start("example.org", false);
    td.register_me(ID, &["-hint", "go"]);
    td.wait_for_svid(ID).await;

    let x509 = go(&out, "gospiffe-workload", &td, &["x509"]).json();
    assert_eq!(x509["spiffe_id"], ID, "X509Source: {x509}");
    assert_eq!(
        x509["verified_id"], ID,
        "x509svid.Verify with the source's bundle: {x509}"
    );
    assert_eq!(x509["hint"], "go", "{x509}");
    assert_eq!(strings(&x509["svids"]), [ID]);
    assert_eq!(strings(&x509["trust_domains"]), ["example.org"]);

    let jwt = go(
        &out,
        "gospiffe-workload",
        &td,
        &["jwt", "-audience", "go-audience"],
    )
    .json();
    assert_eq!(jwt["spiffe_id"], ID, "JWTSource: {jwt}");
    assert_eq!(strings(&jwt["audience"]), ["go-audience"]);
    assert_eq!(jwt["local_valid_id"], ID, "jwtsvid.ParseAndValidate: {jwt}");
    assert_eq!(jwt["agent_valid_id"], ID, "ValidateJWTSVID: {jwt}");
    assert_eq!(jwt["agent_claims_sub"], ID, "ValidateJWTSVID claims: {jwt}");
    let wrong = jwt["wrong_audience_error"].as_str().unwrap();
    assert!(
        wrong.contains("InvalidArgument"),
        "other audience refused: {jwt}"
    );

    let bundles = go(&out, "gospiffe-workload", &td, &["bundles"]).json();
    assert_eq!(strings(&bundles["x509"]), ["example.org"], "{bundles}");
    assert_eq!(strings(&bundles["jwt"]), ["example.org"], "{bundles}");

    // The WIT-SVID profile is not served (nor by SPIRE 1.13): Unimplemented,
    // on which go-spiffe's WIT watchers stop instead of retrying.
    let wit = go(&out, "gospiffe-workload", &td, &["wit"]).json();
    assert!(
        wit["error"].as_str().unwrap().contains("Unimplemented"),
        "{wit}"
    );
}

fn exe(path: PathBuf) -> PathBuf {
    std::fs::canonicalize(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Starts a server of the line protocol (the Go or the Rust one, with its
/// own flag spelling in `args`) and returns it with its port, read from the
/// `<ID> listening on <addr>` line both servers print.
pub fn start_server(program: &Path, args: &[&str], endpoint: &str, dir: &Path) -> (Process, u16) {
    let log = dir.join(format!(
        "{}.log",
        program.file_name().unwrap().to_string_lossy()
    ));
    let mut server =
        Process::spawn(program, args, &[("SPIFFE_ENDPOINT_SOCKET", endpoint)], &log).unwrap();
    server
        .wait_for_log(" listening on ", Duration::from_secs(60))
        .unwrap();
    let port = server
        .log()
        .lines()
        .find_map(|l| l.rsplit_once(':').filter(|_| l.contains(" listening on ")))
        .and_then(|(_, p)| p.trim().parse().ok())
        .unwrap();
    (server, port)
}

/// Runs a client until it succeeds (the agent may not hold its entry yet).
pub fn client_ok(program: &Path, args: &[&str], endpoint: &str) -> PeerOutput {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = run_peer(program, args, &[("SPIFFE_ENDPOINT_SOCKET", endpoint)]);
        if out.code == 0 {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "client never succeeded: {out:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn go_spiffetls_and_the_rust_mtls_example_authenticate_each_other() {
    let Some(out) = Peer::Go.built() else {
        return;
    };
    let (go_server, go_client) = (
        exe(out.join("go/bin/gospiffe-mtls-server")),
        exe(out.join("go/bin/gospiffe-mtls-client")),
    );
    let (rust_server, rust_client) = (
        exe(bin_path("spinel-mtls-server")),
        exe(bin_path("spinel-mtls-client")),
    );
    let td = Domain::start("example.org", true);
    for (id, program) in [
        (GO_SERVER, &go_server),
        (GO_CLIENT, &go_client),
        (RUST_SERVER, &rust_server),
        (RUST_CLIENT, &rust_client),
    ] {
        td.register(id, &format!("unix:path:{}", program.display()), &[]);
    }
    let endpoint = td.agent.endpoint();
    let dir = tempfile::tempdir().unwrap();

    // The Rust server, a Go client (spiffetls.Dial).
    let (mut server, port) = start_server(
        &rust_server,
        &["--listen", "127.0.0.1:0", "--allow", GO_CLIENT],
        &endpoint,
        dir.path(),
    );
    let connect = format!("127.0.0.1:{port}");
    let go = client_ok(
        &go_client,
        &[
            "-connect",
            &connect,
            "-server-id",
            RUST_SERVER,
            "-pings",
            "3",
        ],
        &endpoint,
    );
    assert!(
        go.stdout.contains(&format!("connected 0 to {RUST_SERVER}")),
        "{go:#?}"
    );
    assert!(
        go.stdout
            .contains(&format!("pong 0.2 from {RUST_SERVER} to {GO_CLIENT}")),
        "{go:#?}\nserver log:\n{}",
        server.log()
    );
    // The Go client (which has its SVID by now) refuses a server with
    // another ID: the handshake fails.
    let wrong = run_peer(
        &go_client,
        &["-connect", &connect, "-server-id", GO_SERVER],
        &[("SPIFFE_ENDPOINT_SOCKET", &endpoint)],
    );
    assert!(
        wrong.code != 0 && wrong.stderr.contains("dial:"),
        "the Go client must refuse the wrong server ID in the handshake: {wrong:#?}"
    );
    server.kill();

    // A Go server (spiffetls.Listen), the Rust client.
    let (mut server, port) = start_server(
        &go_server,
        &["-listen", "127.0.0.1:0", "-allow", RUST_CLIENT],
        &endpoint,
        dir.path(),
    );
    let connect = format!("127.0.0.1:{port}");
    let rust = client_ok(
        &rust_client,
        &[
            "--connect",
            &connect,
            "--server-id",
            GO_SERVER,
            "--pings",
            "3",
        ],
        &endpoint,
    );
    assert!(
        rust.stdout.contains(&format!("connected 0 to {GO_SERVER}")),
        "{rust:#?}"
    );
    assert!(
        rust.stdout
            .contains(&format!("pong 0.2 from {GO_SERVER} to {RUST_CLIENT}")),
        "{rust:#?}\nserver log:\n{}",
        server.log()
    );
    // The Go server refuses a client it does not allow (the Go client): with
    // TLS 1.3 the client learns it on its first read.
    let refused = run_peer(
        &go_client,
        &["-connect", &connect, "-server-id", GO_SERVER],
        &[("SPIFFE_ENDPOINT_SOCKET", &endpoint)],
    );
    assert!(
        refused.code != 0 && refused.stderr.contains("tls"),
        "the Go server must refuse an ID not in -allow: {refused:#?}\nserver log:\n{}",
        server.log()
    );
    assert!(
        server.log().contains("refused"),
        "server log:\n{}",
        server.log()
    );
    server.kill();
}
