//! The server refuses an agent presenting an expired agent SVID with
//! `PermissionDenied`, over real mTLS, on the real clock. (A superseded SVID
//! is covered by `api::agent::renewal_supersedes_the_old_svid`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::support::{attest, TestServer};
use spinel_proto::spire::api::server::entry::v1::{
    entry_client::EntryClient, GetAuthorizedEntriesRequest,
};
use tonic::Code;
use x509_parser::prelude::parse_x509_certificate;

#[tokio::test(flavor = "multi_thread")]
async fn expired_agent_svid_is_permission_denied() {
    let server = TestServer::start_with("    agent_ttl = \"2s\"").await;
    let token = server.token(Some("spiffe://example.org/node")).await;
    let agent = attest(&server, &token).await.unwrap();
    let (_, leaf) = parse_x509_certificate(&agent.chain[0]).unwrap();
    let not_after = leaf.validity().not_after.timestamp();
    // Wait (bounded) until the SVID is past its NotAfter on the real clock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs();
        if i64::try_from(now).unwrap() > not_after + 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent_ttl not honoured"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = EntryClient::new(agent.channel(&server).await)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("expired"), "{}", err.message());
}
