//! A revoked CA's certificates authorize nothing on the server's TCP
//! listener (DESIGN.md invariant 9; issue 10, hole 1).
//!
//! An mTLS admin (`admin_ids`) holds an X509-SVID signed by the first CA.
//! The operator rotates away from that CA with `spinel-server
//! localauthority x509 prepare/activate/taint/revoke`. Afterwards:
//!
//! - a connection opened before the revocation is closed by the server
//!   (and answers nothing more);
//! - a client that resumed sessions before cannot get an answer with a
//!   resumed session (the server offers none, and would not accept one);
//! - a full handshake with the old certificate is refused;
//!
//! while the same client with an SVID from the new CA is served, and the
//! open connection survived the steps that kept its CA in the bundle.
//!
//! Before the fix the server resumed TLS 1.3 sessions from its session
//! cache, restoring the client's chain unchecked, and left open
//! connections alone: the first two points failed.

use std::time::Duration;

use super::mtls::{call_once, client_config, mint_x509_svid, Conn, OK};
use crate::support::{ServerHandle, ServerOptions};

const ADMIN: &str = "spiffe://example.org/tls-admin";
const COUNT_ENTRIES: &str = "/spire.api.server.entry.v1.Entry/CountEntries";
const LIST_AGENTS: &str = "/spire.api.server.agent.v1.Agent/ListAgents";

/// `spinel-server localauthority x509 <args> -output json`, which must succeed.
fn localauthority(server: &ServerHandle, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["localauthority", "x509"];
    all.extend(args);
    all.extend(["-output", "json"]);
    let out = server.cli(&all).unwrap();
    assert!(out.success(), "{args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn authority_id(v: &serde_json::Value, field: &str) -> String {
    v[field]["authority_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_ca_certificates_authorize_nothing() {
    let server = ServerHandle::start(ServerOptions {
        server_extra: format!("    admin_ids = [\"{ADMIN}\"]\n"),
        ..Default::default()
    })
    .unwrap();
    let port = server.port;
    let old_svid = mint_x509_svid(&server.socket_path, ADMIN).await;
    let old = client_config(&old_svid);

    // Before: the old SVID is served, on a connection kept open and on a
    // second one that leaves its session in the client's store.
    let mut open = Conn::open(port, &old).await.unwrap();
    assert_eq!(open.call(COUNT_ENTRIES).await.unwrap(), OK);
    let (status, _) = call_once(port, &old, LIST_AGENTS).await;
    assert_eq!(status.unwrap(), OK);

    // The operator rotates away from the first CA. While it is still in
    // the bundle (prepare, activate, taint), the open connection is served.
    let first = authority_id(&localauthority(&server, &["show"]), "active");
    let next = authority_id(&localauthority(&server, &["prepare"]), "prepared_authority");
    localauthority(&server, &["activate", "-authorityID", &next]);
    localauthority(&server, &["taint", "-authorityID", &first]);
    assert_eq!(
        open.call(COUNT_ENTRIES).await.unwrap(),
        OK,
        "a connection whose CA is still in the bundle keeps working\n{}",
        server.log()
    );
    localauthority(&server, &["revoke", "-authorityID", &first]);

    // Every way in with the old certificate; each failure is collected so
    // that one run shows every hole.
    let mut holes = Vec::new();

    // 1. The connection opened before the revocation.
    if !open.closed_within(Duration::from_secs(30)).await {
        holes.push("the connection opened before the revocation is still open".to_owned());
    }
    if let Ok(status) = open.call(COUNT_ENTRIES).await {
        holes.push(format!(
            "the connection opened before the revocation answered CountEntries: grpc-status {status}"
        ));
    }

    // 2. Resuming a session from before the revocation.
    let (status, resumed) = call_once(port, &old, LIST_AGENTS).await;
    if let Ok(status @ OK) = status {
        holes.push(format!(
            "a new connection (resumed: {resumed}) from the client that held sessions was answered: grpc-status {status}"
        ));
    }
    if resumed {
        holes.push("the server resumed a TLS session".to_owned());
    }

    // 3. A full handshake, from a client with an empty session store.
    let (status, resumed) = call_once(port, &client_config(&old_svid), COUNT_ENTRIES).await;
    assert!(!resumed, "a fresh session store cannot resume");
    if let Ok(status @ OK) = status {
        holes.push(format!(
            "a full handshake with the old certificate was answered: grpc-status {status}"
        ));
    }

    assert!(
        holes.is_empty(),
        "a revoked CA's certificate still authorizes requests:\n- {}\n{}",
        holes.join("\n- "),
        server.log()
    );

    // The refusals were about the certificate: the same admin with an SVID
    // from the new CA is served.
    let new_svid = mint_x509_svid(&server.socket_path, ADMIN).await;
    let (status, _) = call_once(port, &client_config(&new_svid), COUNT_ENTRIES).await;
    assert_eq!(status.unwrap(), OK, "{}", server.log());
}
