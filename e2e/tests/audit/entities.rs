//! The audit line's `entity_ids` names what each call names or creates,
//! against a real `spinel-server` process with `audit_log_enabled` and JSON
//! logs: agents (join token, attest, renew, show, ban, evict), SVIDs
//! (entry IDs, minted SPIFFE IDs), bundles and federation relationships
//! (trust domains), and the local authority (authority IDs).
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use crate::support::raw_agent;
use crate::support::raw_agent::audit_line;
use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, AgentX509svidParams, RenewAgentRequest,
};
use spinel_proto::spire::api::server::svid::v1::{
    svid_client::SvidClient, BatchNewX509svidRequest, MintJwtsvidRequest, NewJwtsvidRequest,
    NewX509svidParams,
};
use spinel_test_fixtures::{ServerHandle, ServerOptions};

const NODE: &str = "spiffe://example.org/node";

fn entities(line: &serde_json::Value) -> &str {
    line["entity_ids"].as_str().unwrap_or_default()
}

fn audited_server() -> ServerHandle {
    ServerHandle::start(ServerOptions {
        server_extra: "    audit_log_enabled = true\n    log_format = \"json\"".into(),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_and_svid_calls_name_their_entities() {
    let server = audited_server();
    let token = server.generate_token(Some(NODE)).unwrap();
    let line = audit_line(&server, "/CreateJoinToken", |_| true).await;
    assert_eq!(entities(&line), NODE, "the agent ID the token is for");
    assert!(
        !server.log().contains(&token),
        "the unspent token was logged"
    );

    let agent = raw_agent::attest(&server, &token).await.unwrap();
    let line = audit_line(&server, "/AttestAgent", |_| true).await;
    assert_eq!(entities(&line), agent.id);

    let channel = raw_agent::as_agent(&server, &agent).await;
    let (_, csr) = raw_agent::csr(&[]);
    AgentClient::new(channel.clone())
        .renew_agent(RenewAgentRequest {
            params: Some(AgentX509svidParams { csr }),
        })
        .await
        .unwrap();
    let line = audit_line(&server, "/RenewAgent", |_| true).await;
    assert_eq!(entities(&line), agent.id);

    let entry_id = server
        .create_entry(&[
            "-parentID",
            &agent.id,
            "-spiffeID",
            "spiffe://example.org/web",
            "-selector",
            "unix:uid:1000",
        ])
        .unwrap();
    let mut svids = SvidClient::new(channel);
    let (_, csr) = raw_agent::csr(&[]);
    svids
        .batch_new_x509svid(BatchNewX509svidRequest {
            params: vec![NewX509svidParams {
                entry_id: entry_id.clone(),
                csr,
            }],
        })
        .await
        .unwrap();
    let line = audit_line(&server, "/BatchNewX509SVID", |_| true).await;
    assert_eq!(entities(&line), entry_id);
    svids
        .new_jwtsvid(NewJwtsvidRequest {
            audience: vec!["db".into()],
            entry_id: entry_id.clone(),
        })
        .await
        .unwrap();
    let line = audit_line(&server, "/NewJWTSVID", |_| true).await;
    assert_eq!(entities(&line), entry_id);

    let mut admin = SvidClient::new(raw_agent::admin(&server).await);
    admin
        .mint_jwtsvid(MintJwtsvidRequest {
            id: Some(raw_agent::id("spiffe://example.org/minted")),
            audience: vec!["db".into()],
            ttl: 60,
        })
        .await
        .unwrap();
    let line = audit_line(&server, "/MintJWTSVID", |_| true).await;
    assert_eq!(entities(&line), "spiffe://example.org/minted");

    for (args, method) in [
        (["agent", "show"], "/GetAgent"),
        (["agent", "ban"], "/BanAgent"),
        (["agent", "evict"], "/DeleteAgent"),
    ] {
        server
            .cli(&[args[0], args[1], "-spiffeID", &agent.id])
            .unwrap()
            .ok()
            .unwrap();
        let line = audit_line(&server, method, |_| true).await;
        assert_eq!(entities(&line), agent.id, "{method}");
    }

    // Spent, the token appears only inside the agent's ID.
    let log = server.log();
    assert_eq!(
        log.matches(token.as_str()).count(),
        log.matches(&format!("join_token/{token}")).count(),
        "the token appears outside the agent ID:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bundle_federation_and_authority_calls_name_their_entities() {
    let server = audited_server();
    server.cli(&["bundle", "show"]).unwrap().ok().unwrap();
    let line = audit_line(&server, "/GetBundle", |l| l["caller_type"] == "local").await;
    assert_eq!(entities(&line), "example.org");

    // Any CA will do as the foreign trust domain's bundle.
    let pem = server.dir.path().join("other.pem");
    std::fs::write(&pem, server.bundle_pem().unwrap()).unwrap();
    server
        .cli(&[
            "bundle",
            "set",
            "-id",
            "spiffe://other.org",
            "-path",
            pem.to_str().unwrap(),
        ])
        .unwrap()
        .ok()
        .unwrap();
    let line = audit_line(&server, "/BatchSetFederatedBundle", |_| true).await;
    assert_eq!(entities(&line), "other.org");

    server
        .cli(&[
            "federation",
            "create",
            "-trustDomain",
            "third.org",
            "-bundleEndpointURL",
            "https://127.0.0.1:1/",
            "-bundleEndpointProfile",
            "https_web",
        ])
        .unwrap()
        .ok()
        .unwrap();
    let line = audit_line(&server, "/BatchCreateFederationRelationship", |_| true).await;
    assert_eq!(entities(&line), "third.org");
    server
        .cli(&["federation", "show", "-trustDomain", "third.org"])
        .unwrap()
        .ok()
        .unwrap();
    let line = audit_line(&server, "/GetFederationRelationship", |_| true).await;
    assert_eq!(entities(&line), "third.org");
    server
        .cli(&["federation", "delete", "-id", "third.org"])
        .unwrap()
        .ok()
        .unwrap();
    let line = audit_line(&server, "/BatchDeleteFederationRelationship", |_| true).await;
    assert_eq!(entities(&line), "third.org");

    server
        .cli(&["bundle", "delete", "-id", "spiffe://other.org"])
        .unwrap()
        .ok()
        .unwrap();
    let line = audit_line(&server, "/BatchDeleteFederatedBundle", |_| true).await;
    assert_eq!(entities(&line), "other.org");

    let out = server
        .cli(&["localauthority", "x509", "prepare", "-output", "json"])
        .unwrap()
        .ok()
        .unwrap();
    let prepared: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let id = prepared["prepared_authority"]["authority_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!id.is_empty(), "{prepared}");
    let line = audit_line(&server, "/PrepareX509Authority", |_| true).await;
    assert_eq!(entities(&line), id);
    server
        .cli(&["localauthority", "x509", "activate", "-authorityID", &id])
        .unwrap()
        .ok()
        .unwrap();
    let line = audit_line(&server, "/ActivateX509Authority", |_| true).await;
    assert_eq!(entities(&line), id);
}
