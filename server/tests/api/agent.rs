//! The agent's side of the server API, over real TLS: attestation with a
//! join token, then mTLS with the agent SVID for entries and SVIDs.
//! Invariants 1 (SVID contents come from the entry), 2 (only authorized
//! entries) and 7 (one token, one agent).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;
use crate::support::{attest, csr, id, id_string, svid_client, TestServer, TD};
use base64::Engine;
use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, AgentX509svidParams, BanAgentRequest, RenewAgentRequest,
};
use spinel_proto::spire::api::server::entry::v1::{
    entry_client::EntryClient, GetAuthorizedEntriesRequest, ListEntriesRequest,
};
use spinel_proto::spire::api::server::svid::v1::{
    BatchNewX509svidRequest, NewJwtsvidRequest, NewX509svidParams,
};
use tonic::Code;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::parse_x509_certificate;

const ALIAS: &str = "spiffe://example.org/myagent";

fn sans(der: &[u8]) -> (Vec<String>, Vec<String>) {
    let (_, cert) = parse_x509_certificate(der).unwrap();
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    for name in &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
    {
        match name {
            GeneralName::URI(u) => uris.push(u.to_string()),
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            _ => {}
        }
    }
    (uris, dns)
}

async fn authorized_ids(server: &TestServer, agent: &support::Agent) -> Vec<String> {
    let mut client = EntryClient::new(agent.channel(server).await);
    let mut ids: Vec<String> = client
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn attested_agent_gets_only_its_entries() {
    let server = TestServer::start().await;
    let token = server.token(Some(ALIAS)).await;
    let agent = attest(&server, &token).await.unwrap();
    assert_eq!(
        agent.id,
        format!("spiffe://{TD}/spire/agent/join_token/{token}")
    );
    let (uris, _) = sans(&agent.chain[0]);
    assert_eq!(uris, vec![agent.id.clone()]);

    // Another agent, with its own entry.
    let other_token = server.token(None).await;
    let other = attest(&server, &other_token).await.unwrap();

    let mine = server
        .create_entry(
            ALIAS,
            "spiffe://example.org/web",
            "unix:uid:1000",
            &["web.example.org"],
        )
        .await;
    let grandchild = server
        .create_entry(
            "spiffe://example.org/web",
            "spiffe://example.org/web/child",
            "unix:uid:1",
            &[],
        )
        .await;
    let theirs = server
        .create_entry(
            &other.id,
            "spiffe://example.org/secret",
            "unix:uid:1000",
            &[],
        )
        .await;
    let alias_match = server
        .create_entry(
            "spiffe://example.org/spire/server",
            "spiffe://example.org/all-agents",
            "spiffe_id:nothing",
            &[],
        )
        .await;

    let ids = authorized_ids(&server, &agent).await;
    // The join token's alias entry, the workload under it, and its child.
    assert!(ids.contains(&mine), "{ids:?}");
    assert!(ids.contains(&grandchild), "{ids:?}");
    assert!(!ids.contains(&theirs), "{ids:?}");
    assert!(!ids.contains(&alias_match), "{ids:?}");
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(authorized_ids(&server, &other).await, vec![theirs.clone()]);

    // An entry of another agent is NotFound, exactly like a missing one.
    let mut svids = svid_client(&server, &agent).await;
    let (_, request) = csr(&[]);
    let results = svids
        .batch_new_x509svid(BatchNewX509svidRequest {
            params: vec![
                NewX509svidParams {
                    entry_id: theirs.clone(),
                    csr: request.clone(),
                },
                NewX509svidParams {
                    entry_id: "no-such-entry".into(),
                    csr: request.clone(),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let statuses: Vec<_> = results.iter().map(|r| r.status.clone().unwrap()).collect();
    assert_eq!(statuses[0].code, Code::NotFound as i32);
    assert_eq!(
        statuses[0], statuses[1],
        "foreign and missing entries look alike"
    );
    let err = svids
        .new_jwtsvid(NewJwtsvidRequest {
            entry_id: theirs,
            audience: vec!["a".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn svid_contents_come_from_the_entry() {
    let server = TestServer::start().await;
    let token = server.token(Some(ALIAS)).await;
    let agent = attest(&server, &token).await.unwrap();
    let entry = server
        .create_entry(
            ALIAS,
            "spiffe://example.org/web",
            "unix:uid:1000",
            &["web.example.org", "www.example.org"],
        )
        .await;
    let mut svids = svid_client(&server, &agent).await;

    // The CSR asks for another ID and extra names: both ignored.
    let (_, greedy) = csr(&["spiffe://example.org/admin", "evil.example.com"]);
    let results = svids
        .batch_new_x509svid(BatchNewX509svidRequest {
            params: vec![NewX509svidParams {
                entry_id: entry.clone(),
                csr: greedy,
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let status = results[0].status.clone().unwrap();
    assert_eq!(status.code, 0, "{}", status.message);
    let svid = results[0].svid.clone().unwrap();
    assert_eq!(
        id_string(svid.id.as_ref().unwrap()),
        "spiffe://example.org/web"
    );
    let (uris, dns) = sans(&svid.cert_chain[0]);
    assert_eq!(uris, vec!["spiffe://example.org/web".to_owned()]);
    assert_eq!(
        dns,
        vec!["web.example.org".to_owned(), "www.example.org".to_owned()]
    );
    let (_, leaf) = parse_x509_certificate(&svid.cert_chain[0]).unwrap();
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert!(
        (3600..=3620).contains(&lifetime),
        "default TTL, backdated: {lifetime}"
    );

    // A CSR whose signature does not verify is refused.
    let (_, mut forged) = csr(&[]);
    let last = forged.len() - 1;
    forged[last] ^= 0x55;
    let results = svids
        .batch_new_x509svid(BatchNewX509svidRequest {
            params: vec![NewX509svidParams {
                entry_id: entry,
                csr: forged,
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let status = results[0].status.clone().unwrap();
    assert_eq!(
        status.code,
        Code::InvalidArgument as i32,
        "{}",
        status.message
    );
    assert!(results[0].svid.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_svid_claims_and_key_id() {
    let server = TestServer::start().await;
    let token = server.token(Some(ALIAS)).await;
    let agent = attest(&server, &token).await.unwrap();
    let entry = server
        .create_entry(ALIAS, "spiffe://example.org/web", "unix:uid:1000", &[])
        .await;
    let mut svids = svid_client(&server, &agent).await;

    let err = svids
        .new_jwtsvid(NewJwtsvidRequest {
            entry_id: entry.clone(),
            audience: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let svid = svids
        .new_jwtsvid(NewJwtsvidRequest {
            entry_id: entry,
            audience: vec!["vault".into(), "db".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    let part = |i: usize| -> serde_json::Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(svid.token.split('.').nth(i).unwrap())
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let (header, claims) = (part(0), part(1));
    assert_eq!(claims["sub"], "spiffe://example.org/web");
    assert_eq!(claims["aud"], serde_json::json!(["vault", "db"]));
    assert_eq!(claims["exp"].as_i64().unwrap(), svid.expires_at);
    assert_eq!(svid.expires_at - svid.issued_at, 300, "default JWT TTL");
    let kid = header["kid"].as_str().unwrap();
    let bundle = server.server.as_ref().unwrap().bundle();
    assert!(
        bundle.jwt_authorities.iter().any(|k| k.key_id == kid),
        "kid {kid} is in the bundle"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn join_token_is_single_use() {
    let server = TestServer::start().await;
    let token = server.token(None).await;
    attest(&server, &token).await.unwrap();
    let err = attest(&server, &token)
        .await
        .err()
        .expect("second use refused");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("join token does not exist or has already been used"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains(&token), "the token is not echoed");

    let err = attest(&server, "never-issued").await.err().unwrap();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_attestations_with_one_token_admit_one_agent() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let token = server.token(None).await;
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let server = server.clone();
            let token = token.clone();
            tokio::spawn(async move { attest(&server, &token).await })
        })
        .collect();
    let mut successes = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => successes += 1,
            Err(status) => assert_eq!(status.code(), Code::InvalidArgument, "{status:?}"),
        }
    }
    assert_eq!(successes, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_supersedes_the_old_svid() {
    let server = TestServer::start().await;
    let token = server.token(Some(ALIAS)).await;
    let agent = attest(&server, &token).await.unwrap();

    let (key, request) = csr(&[]);
    let mut client = AgentClient::new(agent.channel(&server).await);
    let renewed = client
        .renew_agent(RenewAgentRequest {
            params: Some(AgentX509svidParams { csr: request }),
        })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    assert_eq!(id_string(renewed.id.as_ref().unwrap()), agent.id);
    let new_agent = support::Agent {
        id: agent.id.clone(),
        chain: renewed.cert_chain,
        key_der: key.serialize_der(),
    };

    // Until the new SVID is used, the old one still works.
    authorized_ids(&server, &agent).await;
    // Using the new one makes it current...
    authorized_ids(&server, &new_agent).await;
    // ...and the old one is refused from then on.
    let mut old = EntryClient::new(agent.channel(&server).await);
    let err = old
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("serial number"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn banned_agent_is_refused() {
    let server = TestServer::start().await;
    let token = server.token(Some(ALIAS)).await;
    let agent = attest(&server, &token).await.unwrap();
    authorized_ids(&server, &agent).await;
    server
        .agents()
        .await
        .ban_agent(BanAgentRequest {
            id: Some(id(&agent.id)),
        })
        .await
        .unwrap();
    let mut client = EntryClient::new(agent.channel(&server).await);
    let err = client
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("banned"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_are_not_admins_and_strangers_are_not_agents() {
    let server = TestServer::start().await;
    let token = server.token(Some(ALIAS)).await;
    let agent = attest(&server, &token).await.unwrap();

    // An agent may not use admin methods.
    let mut as_agent = EntryClient::new(agent.channel(&server).await);
    let err = as_agent
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // An anonymous TLS caller may not use agent methods.
    let mut anonymous = EntryClient::new(server.anonymous_channel().await);
    let err = anonymous
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

/// A batch large enough to be signed on every core comes back in request
/// order, each item with its own answer.
#[tokio::test(flavor = "multi_thread")]
async fn large_batches_answer_in_request_order() {
    let server = TestServer::start().await;
    let token = server.token(Some(ALIAS)).await;
    let agent = attest(&server, &token).await.unwrap();
    let ids = ["a", "b", "c"];
    let mut entries = Vec::new();
    for name in ids {
        let spiffe_id = format!("spiffe://example.org/{name}");
        entries.push(
            server
                .create_entry(ALIAS, &spiffe_id, "unix:uid:1000", &[])
                .await,
        );
    }
    let (_, good) = csr(&[]);
    let mut forged = good.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x55;
    // Item i: entry i % 3, except every 7th names no entry and every 11th
    // has a forged CSR.
    let params: Vec<NewX509svidParams> = (0..150)
        .map(|i| NewX509svidParams {
            entry_id: if i % 7 == 0 {
                "no-such-entry".into()
            } else {
                entries[i % 3].clone()
            },
            csr: if i % 11 == 0 {
                forged.clone()
            } else {
                good.clone()
            },
        })
        .collect();
    let results = svid_client(&server, &agent)
        .await
        .batch_new_x509svid(BatchNewX509svidRequest { params })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.len(), 150);
    for (i, result) in results.iter().enumerate() {
        let status = result.status.clone().unwrap();
        if i % 7 == 0 {
            assert_eq!(status.code, Code::NotFound as i32, "item {i}");
            assert!(result.svid.is_none());
        } else if i % 11 == 0 {
            assert_eq!(status.code, Code::InvalidArgument as i32, "item {i}");
            assert!(result.svid.is_none());
        } else {
            assert_eq!(status.code, 0, "item {i}: {}", status.message);
            let svid = result.svid.as_ref().unwrap();
            let (uris, _) = sans(&svid.cert_chain[0]);
            assert_eq!(
                uris,
                vec![format!("spiffe://example.org/{}", ids[i % 3])],
                "item {i}"
            );
        }
    }
}

/// `GetAuthorizedEntries` has no paging: an agent whose entries take more
/// than the 4 MiB every gRPC client receives is told so, clearly, and
/// pointed at `SyncAuthorizedEntries`, instead of a message it cannot
/// decode (which it would retry forever).
#[tokio::test(flavor = "multi_thread")]
async fn authorized_entries_over_the_message_limit_are_refused_clearly() {
    use spinel_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
    use spinel_proto::spire::api::types;

    let server = TestServer::start().await;
    let token = server.token(Some(ALIAS)).await;
    let agent = attest(&server, &token).await.unwrap();
    // 3,000 entries of about 1.6 KB each (25 long DNS names): ~4.8 MB.
    let dns: Vec<String> = (0..25)
        .map(|i| format!("{i:02}-{}.example.org", "a".repeat(48)))
        .collect();
    let mut admin = server.entries().await;
    for batch in 0..3 {
        let entries = (0..1_000)
            .map(|i| types::Entry {
                parent_id: Some(id(ALIAS)),
                spiffe_id: Some(id(&format!("spiffe://{TD}/big/{batch}-{i}"))),
                selectors: vec![types::Selector {
                    r#type: "unix".into(),
                    value: format!("uid:{}", batch * 1_000 + i),
                }],
                dns_names: dns.clone(),
                ..Default::default()
            })
            .collect();
        let response = admin
            .batch_create_entry(BatchCreateEntryRequest {
                entries,
                output_mask: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(response
            .results
            .iter()
            .all(|r| r.status.as_ref().is_some_and(|s| s.code == 0)));
    }
    let err = EntryClient::new(agent.channel(&server).await)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(
        err.message().contains("entries authorized for this agent")
            && err.message().contains("SyncAuthorizedEntries"),
        "{}",
        err.message()
    );
}
