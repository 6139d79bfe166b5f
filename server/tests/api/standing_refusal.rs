//! Every refusal of an agent's standing names its reason in the
//! `spinel-agent-refusal` status metadata, over real mTLS, beside SPIRE's
//! message text: banned, evicted (deleted), superseded and expired SVIDs.
//!
//! The expired case waits on the real clock for a 2 s agent SVID to lapse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::Duration;

use crate::support;
use crate::support::{attest, csr, id, TestServer};
use spinel_proto::refusal::{AgentRefusal, AGENT_REFUSAL_KEY};
use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, AgentX509svidParams, BanAgentRequest, DeleteAgentRequest,
    RenewAgentRequest,
};
use spinel_proto::spire::api::server::entry::v1::{
    entry_client::EntryClient, GetAuthorizedEntriesRequest,
};
use tonic::{Code, Status};
use x509_parser::prelude::parse_x509_certificate;

/// The agent's status for `GetAuthorizedEntries`: must be a refusal.
async fn refused(server: &TestServer, agent: &support::Agent) -> Status {
    EntryClient::new(agent.channel(server).await)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err()
}

fn assert_reason(status: &Status, reason: AgentRefusal, text: &str) {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        AgentRefusal::from_status(status),
        Some(reason),
        "{status:?}"
    );
    assert!(status.message().contains(text), "{}", status.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn banned_and_evicted_agents_are_told_why() {
    let server = TestServer::start().await;
    let banned = attest(&server, &server.token(None).await).await.unwrap();
    let evicted = attest(&server, &server.token(None).await).await.unwrap();
    // Standing is fine at first: no refusal.
    EntryClient::new(banned.channel(&server).await)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap();

    let mut admin = server.agents().await;
    admin
        .ban_agent(BanAgentRequest {
            id: Some(id(&banned.id)),
        })
        .await
        .unwrap();
    let status = refused(&server, &banned).await;
    assert_reason(&status, AgentRefusal::Banned, "is banned");
    assert_eq!(
        status.metadata().get(AGENT_REFUSAL_KEY).unwrap(),
        "banned",
        "the wire value"
    );
    let other = attest(&server, &server.token(None).await).await.unwrap();

    admin
        .delete_agent(DeleteAgentRequest {
            id: Some(id(&evicted.id)),
        })
        .await
        .unwrap();
    let status = refused(&server, &evicted).await;
    assert_reason(&status, AgentRefusal::Evicted, "is not attested");

    // A refusal that is not about standing carries no reason.
    let status = EntryClient::new(other.channel(&server).await)
        .list_entries(spinel_proto::spire::api::server::entry::v1::ListEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(AgentRefusal::from_status(&status), None, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_superseded_svid_is_told_why() {
    let server = TestServer::start().await;
    let agent = attest(&server, &server.token(None).await).await.unwrap();
    let (key, request) = csr(&[]);
    let renewed = AgentClient::new(agent.channel(&server).await)
        .renew_agent(RenewAgentRequest {
            params: Some(AgentX509svidParams { csr: request }),
        })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    let new_agent = support::Agent {
        id: agent.id.clone(),
        chain: renewed.cert_chain,
        key_der: key.serialize_der(),
    };
    // Using the new SVID makes the old one superseded.
    EntryClient::new(new_agent.channel(&server).await)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap();
    let status = refused(&server, &agent).await;
    assert_reason(&status, AgentRefusal::Superseded, "serial number");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_svid_is_told_why() {
    let server = TestServer::start_with("    agent_ttl = \"2s\"").await;
    let agent = attest(&server, &server.token(None).await).await.unwrap();
    let (_, leaf) = parse_x509_certificate(&agent.chain[0]).unwrap();
    let not_after = leaf.validity().not_after.timestamp();
    // Wait (bounded) until the SVID is past its NotAfter on the real clock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while i64::try_from(std::time::UNIX_EPOCH.elapsed().unwrap().as_secs()).unwrap()
        <= not_after + 1
    {
        assert!(tokio::time::Instant::now() < deadline, "clock stuck?");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = refused(&server, &agent).await;
    assert_reason(&status, AgentRefusal::Expired, "expired");
}
