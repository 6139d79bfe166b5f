//! The audit log, end to end: a real server with `audit_log_enabled` and
//! JSON logs; the lines of an entry create, a token generate (without the
//! token), an agent attestation and a refused call.
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use crate::support::raw_agent;
use spinel_proto::spire::api::server::entry::v1::{entry_client::EntryClient, ListEntriesRequest};
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

#[tokio::test(flavor = "multi_thread")]
async fn audit_lines_for_admin_and_agent_calls() {
    let server = ServerHandle::start(ServerOptions {
        server_extra: "    audit_log_enabled = true\n    log_format = \"json\"".into(),
        ..Default::default()
    })
    .unwrap();

    let token = server
        .generate_token(Some("spiffe://example.org/node"))
        .unwrap();
    let line = raw_agent::audit_line(&server, "/CreateJoinToken", |_| true).await;
    assert_eq!(line["caller_type"], "local");
    assert_eq!(line["status_code"], 0);
    assert_eq!(line["status"], "success");
    assert!(
        !server.log().contains(&token),
        "the token value must never be logged"
    );

    let entry_id = server
        .create_entry(&[
            "-parentID",
            "spiffe://example.org/node",
            "-spiffeID",
            "spiffe://example.org/w",
            "-selector",
            "unix:uid:1000",
        ])
        .unwrap();
    let line = raw_agent::audit_line(&server, "/BatchCreateEntry", |_| true).await;
    assert_eq!(line["caller_type"], "local");
    assert_eq!(line["status_code"], 0);
    assert_eq!(line["entity_ids"], entry_id.as_str());

    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let line = raw_agent::audit_line(&server, "/AttestAgent", |_| true).await;
    assert_eq!(line["caller_type"], "anonymous");
    assert_eq!(line["status_code"], 0);
    assert!(line["caller_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // The agent's own calls carry its SPIFFE ID.
    let line = raw_agent::audit_line(&server, "/SyncAuthorizedEntries", |l| {
        l["caller_type"] == "spiffe"
    })
    .await;
    assert!(line["caller_id"]
        .as_str()
        .unwrap()
        .starts_with("spiffe://example.org/spire/agent/join_token/"));

    // A refused call: an anonymous TLS client listing entries.
    let channel = raw_agent::anonymous(&server).await;
    let refused = EntryClient::new(channel)
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let line = raw_agent::audit_line(&server, "/ListEntries", |l| l["status_code"] == 7).await;
    assert_eq!(line["status"], "error");
    assert_eq!(line["caller_type"], "anonymous");

    // Once spent, a join token is part of the agent's SPIFFE ID (SPIRE's
    // `spire/agent/join_token/<token>`): only there may it appear.
    let log = server.log();
    assert_eq!(
        log.matches(token.as_str()).count(),
        log.matches(&format!("join_token/{token}")).count(),
        "the token appears outside the agent ID:\n{log}"
    );
    assert!(!log.contains("PRIVATE KEY"));
    drop(agent);
    drop(server);
}
