//! Every Unix-socket gRPC listener of both binaries answers whatever
//! `:authority` a client sends (DESIGN.md invariant 12), and it never
//! changes who the caller is; the TCP listener keeps HTTP/2's validation.
//!
//! The requests are written frame by frame (`grpc_raw`), so they carry
//! exactly the `:authority` values gRPC C-core (py-spiffe) and grpc-java
//! send; without the guard in `spinel-transport`, `h2` resets these
//! streams with PROTOCOL_ERROR and this test fails.

use std::path::Path;
use std::time::{Duration, Instant};

use spinel_test_fixtures::grpc_raw::{authorities_for, RawCall, RawResponse};
use spinel_test_fixtures::process::my_uid;

use crate::support::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

const SECURITY_HEADER: (&str, &str) = ("workload.spiffe.io", "true");
const FETCH_X509: &str = "/SpiffeWorkloadAPI/FetchX509SVID";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
const COUNT_ENTRIES: &str = "/spire.api.server.entry.v1.Entry/CountEntries";
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;

async fn call(
    socket: &Path,
    path: &str,
    authority: Option<&str>,
    metadata: &[(&str, &str)],
) -> RawResponse {
    RawCall {
        path,
        authority,
        metadata,
        message: &[],
    }
    .unix(socket)
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{path} on {} with :authority {authority:?}: {e:#}",
            socket.display()
        )
    })
}

/// Asserts the call was answered by the service (not reset by HTTP/2).
fn answered(r: &RawResponse, what: &str) {
    assert_eq!(r.reset, None, "{what}: stream reset by the server");
    assert!(
        r.message.is_some() || r.grpc_status.is_some(),
        "{what}: no answer: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_unix_socket_answers_any_authority() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let admin_dir = tempfile::Builder::new()
        .prefix("spinel-adm")
        .tempdir_in("/tmp")
        .unwrap();
    let admin_socket = admin_dir.path().join("private/admin.sock");
    let token = server
        .generate_token(Some("spiffe://example.org/node"))
        .unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            agent_extra: format!("    admin_socket_path = \"{}\"\n", admin_socket.display()),
            ..Default::default()
        },
    )
    .unwrap();

    // No entry for this user yet: every authority gets PermissionDenied,
    // and without the security header InvalidArgument. `:authority` never
    // stands in for the caller's identity.
    for authority in authorities_for(&agent.socket_path) {
        let a = authority.as_deref();
        let denied = call(&agent.socket_path, FETCH_X509, a, &[SECURITY_HEADER]).await;
        answered(&denied, &format!("FetchX509SVID {a:?}"));
        assert_eq!(
            denied.grpc_status,
            Some(PERMISSION_DENIED),
            "{a:?}: {denied:?}"
        );
        let no_header = call(&agent.socket_path, FETCH_X509, a, &[]).await;
        assert_eq!(
            no_header.grpc_status,
            Some(INVALID_ARGUMENT),
            "{a:?}: {no_header:?}"
        );
    }

    let uid = my_uid();
    server
        .create_entry(&[
            "-parentID",
            "spiffe://example.org/node",
            "-spiffeID",
            "spiffe://example.org/authority-test",
            "-selector",
            &format!("unix:uid:{uid}"),
        ])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(
            &agent.socket_path,
            FETCH_X509,
            Some("localhost"),
            &[SECURITY_HEADER],
        )
        .await;
        if r.message.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no SVID within 30 s: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for authority in authorities_for(&agent.socket_path) {
        let a = authority.as_deref();
        let svid = call(&agent.socket_path, FETCH_X509, a, &[SECURITY_HEADER]).await;
        answered(&svid, &format!("Workload API {a:?}"));
        let message = svid.message.unwrap_or_default();
        assert!(
            message
                .windows(b"spiffe://example.org/authority-test".len())
                .any(|w| w == b"spiffe://example.org/authority-test"),
            "{a:?}: the response does not carry the SVID"
        );
    }
    for authority in authorities_for(&admin_socket) {
        let a = authority.as_deref();
        let health = call(&admin_socket, HEALTH_CHECK, a, &[]).await;
        answered(&health, &format!("agent admin socket {a:?}"));
        assert!(
            health.message.is_some(),
            "agent admin health {a:?}: {health:?}"
        );
    }
    for authority in authorities_for(&server.socket_path) {
        let a = authority.as_deref();
        let health = call(&server.socket_path, HEALTH_CHECK, a, &[]).await;
        answered(&health, &format!("server admin socket {a:?}"));
        assert!(health.message.is_some(), "server health {a:?}: {health:?}");
        let count = call(&server.socket_path, COUNT_ENTRIES, a, &[]).await;
        answered(&count, &format!("server CountEntries {a:?}"));
        assert!(
            count.message.is_some() || count.grpc_status == Some(OK),
            "CountEntries {a:?}: {count:?}"
        );
    }
}
