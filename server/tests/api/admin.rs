//! The admin side of the server API: entries, join tokens, bundles and
//! health over the admin Unix socket; anonymous TLS callers refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;
use crate::support::{id, TestServer};
use spinel_proto::grpc::health::v1::{health_client::HealthClient, HealthCheckRequest};
use spinel_proto::spire::api::server::agent::v1::CreateJoinTokenRequest;
use spinel_proto::spire::api::server::bundle::v1::{
    bundle_client::BundleClient, BatchCreateFederatedBundleRequest,
    BatchDeleteFederatedBundleRequest, GetBundleRequest, GetFederatedBundleRequest,
    ListFederatedBundlesRequest,
};
use spinel_proto::spire::api::server::entry::v1::{
    entry_client::EntryClient, list_entries_request, BatchCreateEntryRequest,
    BatchDeleteEntryRequest, BatchUpdateEntryRequest, CountEntriesRequest, GetEntryRequest,
    ListEntriesRequest,
};
use spinel_proto::spire::api::types;
use tonic::Code;

fn entry(parent: &str, spiffe_id: &str, selectors: &[(&str, &str)]) -> types::Entry {
    types::Entry {
        parent_id: Some(id(parent)),
        spiffe_id: Some(id(spiffe_id)),
        selectors: selectors
            .iter()
            .map(|(t, v)| types::Selector {
                r#type: (*t).into(),
                value: (*v).into(),
            })
            .collect(),
        ..Default::default()
    }
}

const PARENT: &str = "spiffe://example.org/spire/agent/join_token/abc";

#[tokio::test(flavor = "multi_thread")]
async fn entries_round_trip_over_the_admin_socket() {
    let server = TestServer::start().await;
    let mut entries = server.entries().await;

    let mut web = entry(PARENT, "spiffe://example.org/web", &[("unix", "uid:1000")]);
    web.dns_names = vec!["web.example.org".into()];
    web.hint = "web".into();
    web.jwt_svid_ttl = 60;
    let created = entries
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![
                web.clone(),
                entry(PARENT, "spiffe://example.org/db", &[("unix", "uid:1001")]),
            ],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(created.iter().all(|r| r.status.as_ref().unwrap().code == 0));
    let web_id = created[0].entry.as_ref().unwrap().id.clone();

    // The same entry again: AlreadyExists, naming the existing entry.
    let again = entries
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![web.clone()],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(
        again[0].status.as_ref().unwrap().code,
        Code::AlreadyExists as i32
    );
    assert_eq!(again[0].entry.as_ref().unwrap().id, web_id);

    let got = entries
        .get_entry(GetEntryRequest {
            id: web_id.clone(),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.dns_names, vec!["web.example.org".to_owned()]);
    assert_eq!(got.hint, "web");
    assert_eq!(got.jwt_svid_ttl, 60);

    let count = entries
        .count_entries(CountEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, 2);

    // Filtered and paged listing.
    let by_spiffe = entries
        .list_entries(ListEntriesRequest {
            filter: Some(list_entries_request::Filter {
                by_spiffe_id: Some(id("spiffe://example.org/db")),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_spiffe.entries.len(), 1);
    let page = entries
        .list_entries(ListEntriesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.entries.len(), 1);
    assert!(!page.next_page_token.is_empty());
    let rest = entries
        .list_entries(ListEntriesRequest {
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries.len(), 1);
    assert_ne!(rest.entries[0].id, page.entries[0].id);

    // Update only the hint.
    let updated = entries
        .batch_update_entry(BatchUpdateEntryRequest {
            entries: vec![types::Entry {
                id: web_id.clone(),
                hint: "frontend".into(),
                ..Default::default()
            }],
            input_mask: Some(types::EntryMask {
                hint: true,
                ..Default::default()
            }),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let status = updated[0].status.as_ref().unwrap();
    assert_eq!(status.code, 0, "{}", status.message);
    let after = updated[0].entry.as_ref().unwrap();
    assert_eq!(after.hint, "frontend");
    assert_eq!(after.dns_names, vec!["web.example.org".to_owned()]);
    assert!(after.revision_number > got.revision_number);

    let deleted = entries
        .batch_delete_entry(BatchDeleteEntryRequest {
            ids: vec![web_id.clone(), "missing".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(deleted[0].status.as_ref().unwrap().code, 0);
    assert_eq!(
        deleted[1].status.as_ref().unwrap().code,
        Code::NotFound as i32
    );
    let err = entries
        .get_entry(GetEntryRequest {
            id: web_id,
            output_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_entries_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let mut entries = server.entries().await;
    let cases: Vec<(types::Entry, &str)> = vec![
        (
            entry(PARENT, "spiffe://example.org/a/../b", &[("unix", "uid:1")]),
            "spiffe ID",
        ),
        (
            entry(
                PARENT,
                "spiffe://example.org/spire/agent/x",
                &[("unix", "uid:1")],
            ),
            "reserved",
        ),
        (
            entry(
                PARENT,
                "spiffe://example.org/spire/server",
                &[("unix", "uid:1")],
            ),
            "reserved",
        ),
        (
            entry(PARENT, "spiffe://other.org/w", &[("unix", "uid:1")]),
            "spiffe ID",
        ),
        (
            entry(
                "spiffe://example.org",
                "spiffe://example.org/w",
                &[("unix", "uid:1")],
            ),
            "parent ID",
        ),
        (entry(PARENT, "spiffe://example.org/w", &[]), "selector"),
        (
            entry(PARENT, "spiffe://example.org/w", &[("unix", "")]),
            "selector",
        ),
        (
            entry(PARENT, "spiffe://example.org/w", &[("", "uid:1")]),
            "selector",
        ),
        (
            types::Entry {
                dns_names: vec!["a.*.example.org".into()],
                ..entry(PARENT, "spiffe://example.org/w", &[("unix", "uid:1")])
            },
            "DNS name",
        ),
        (
            types::Entry {
                x509_svid_ttl: -1,
                ..entry(PARENT, "spiffe://example.org/w", &[("unix", "uid:1")])
            },
            "x509_svid_ttl",
        ),
        (
            types::Entry {
                federates_with: vec!["Other.org".into()],
                ..entry(PARENT, "spiffe://example.org/w", &[("unix", "uid:1")])
            },
            "federated trust domain",
        ),
    ];
    for (bad, field) in cases {
        let results = entries
            .batch_create_entry(BatchCreateEntryRequest {
                entries: vec![bad.clone()],
                output_mask: None,
            })
            .await
            .unwrap()
            .into_inner()
            .results;
        let status = results[0].status.as_ref().unwrap();
        assert_eq!(
            status.code,
            Code::InvalidArgument as i32,
            "{bad:?}: {}",
            status.message
        );
        assert!(
            status.message.contains(field),
            "{:?} should name {field}",
            status.message
        );
    }
    assert_eq!(
        entries
            .count_entries(CountEntriesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .count,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn join_tokens_with_alias_entries() {
    let server = TestServer::start().await;
    let mut agents = server.agents().await;
    let token = agents
        .create_join_token(CreateJoinTokenRequest {
            ttl: 60,
            token: String::new(),
            agent_id: Some(id("spiffe://example.org/myagent")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!token.value.is_empty());
    let listed = server
        .entries()
        .await
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(listed.len(), 1);
    let alias = &listed[0];
    assert_eq!(
        support::id_string(alias.parent_id.as_ref().unwrap()),
        format!(
            "spiffe://example.org/spire/agent/join_token/{}",
            token.value
        )
    );
    assert_eq!(
        support::id_string(alias.spiffe_id.as_ref().unwrap()),
        "spiffe://example.org/myagent"
    );

    let err = agents
        .create_join_token(CreateJoinTokenRequest {
            ttl: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = agents
        .create_join_token(CreateJoinTokenRequest {
            ttl: 60,
            token: String::new(),
            agent_id: Some(id("spiffe://example.org/spire/agent/x")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = agents
        .create_join_token(CreateJoinTokenRequest {
            ttl: 60,
            token: "a/b".into(),
            agent_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_tls_callers_get_the_bundle_and_nothing_else() {
    let server = TestServer::start().await;
    let channel = server.anonymous_channel().await;

    let mut bundles = BundleClient::new(channel.clone());
    let bundle = bundles
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bundle.trust_domain, "example.org");
    let roots: Vec<_> = bundle
        .x509_authorities
        .iter()
        .map(|c| c.asn1.clone())
        .collect();
    assert_eq!(roots, server.roots());
    assert!(!bundle.jwt_authorities.is_empty());

    let mut entries = EntryClient::new(channel.clone());
    let err = entries
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = support::TestServer::agents(&server)
        .await
        .create_join_token(CreateJoinTokenRequest {
            ttl: 60,
            ..Default::default()
        })
        .await
        .map(|_| ());
    assert!(err.is_ok(), "the admin socket may");
    let mut over_tcp = spinel_proto::spire::api::server::agent::v1::agent_client::AgentClient::new(
        channel.clone(),
    );
    let err = over_tcp
        .create_join_token(CreateJoinTokenRequest {
            ttl: 60,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_over_the_admin_socket_and_the_cli() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.admin_channel().await);
    let status = health
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, 1, "SERVING");

    let socket = server.socket_path.display().to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_spinel-server"))
        .args(["healthcheck", "-socketPath", &socket])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Server is healthy."
    );

    let missing = server.dir.path().join("nope.sock").display().to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_spinel-server"))
        .args(["healthcheck", "-socketPath", &missing])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server is unhealthy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn federated_bundles() {
    let server = TestServer::start().await;
    let mut bundles = server.bundles().await;
    // Any CA certificate will do as another trust domain's authority.
    let foreign = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .to_vec();
    let bundle = types::Bundle {
        trust_domain: "other.org".into(),
        x509_authorities: vec![types::X509Certificate {
            asn1: foreign,
            tainted: false,
        }],
        ..Default::default()
    };
    let created = bundles
        .batch_create_federated_bundle(BatchCreateFederatedBundleRequest {
            bundle: vec![
                bundle.clone(),
                types::Bundle {
                    trust_domain: "example.org".into(),
                    ..bundle.clone()
                },
            ],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(created[0].status.as_ref().unwrap().code, 0);
    assert_eq!(
        created[1].status.as_ref().unwrap().code,
        Code::InvalidArgument as i32
    );

    let got = bundles
        .get_federated_bundle(GetFederatedBundleRequest {
            trust_domain: "other.org".into(),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.x509_authorities, bundle.x509_authorities);
    let listed = bundles
        .list_federated_bundles(ListFederatedBundlesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .bundles;
    assert_eq!(listed.len(), 1);

    // An entry federating with it blocks a restrictive delete.
    let mut e = entry(PARENT, "spiffe://example.org/w", &[("unix", "uid:1")]);
    e.federates_with = vec!["other.org".into()];
    server
        .entries()
        .await
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![e],
            output_mask: None,
        })
        .await
        .unwrap();
    let deleted = bundles
        .batch_delete_federated_bundle(BatchDeleteFederatedBundleRequest {
            trust_domains: vec!["other.org".into()],
            mode: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(
        deleted[0].status.as_ref().unwrap().code,
        Code::FailedPrecondition as i32
    );
    let deleted = bundles
        .batch_delete_federated_bundle(BatchDeleteFederatedBundleRequest {
            trust_domains: vec!["other.org".into()],
            mode: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(deleted[0].status.as_ref().unwrap().code, 0);
}

/// Creates `list` in one batch; the status (code, message) of each.
async fn create_all(
    entries: &mut EntryClient<tonic::transport::Channel>,
    list: Vec<types::Entry>,
) -> Vec<(i32, String, String)> {
    entries
        .batch_create_entry(BatchCreateEntryRequest {
            entries: list,
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .into_iter()
        .map(|r| {
            let status = r.status.unwrap();
            (
                status.code,
                status.message,
                r.entry.map(|e| e.id).unwrap_or_default(),
            )
        })
        .collect()
}

/// Moves entry `entry_id` under `parent` (parent ID only, by mask).
async fn reparent(
    entries: &mut EntryClient<tonic::transport::Channel>,
    entry_id: &str,
    parent: &str,
) -> (i32, String) {
    let results = entries
        .batch_update_entry(BatchUpdateEntryRequest {
            entries: vec![types::Entry {
                id: entry_id.into(),
                parent_id: Some(id(parent)),
                ..Default::default()
            }],
            input_mask: Some(types::EntryMask {
                parent_id: true,
                ..Default::default()
            }),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let status = results[0].status.clone().unwrap();
    (status.code, status.message)
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_that_would_be_their_own_ancestors_are_refused() {
    let server = TestServer::start().await;
    let mut entries = server.entries().await;
    let invalid = Code::InvalidArgument as i32;
    let (a, b, c) = (
        "spiffe://example.org/a",
        "spiffe://example.org/b",
        "spiffe://example.org/c",
    );
    let uid = [("unix", "uid:1")];

    // Its own parent, at create.
    let own = create_all(&mut entries, vec![entry(a, a, &uid)]).await;
    assert_eq!(own[0].0, invalid, "{}", own[0].1);
    assert!(
        own[0].1.contains("own parent") && own[0].1.contains(&format!("{a} -> {a}")),
        "{}",
        own[0].1
    );

    // agent -> a -> b; then a second registration of a under b, in one
    // batch with a fine entry: the fine one is created, the cycle refused.
    let made = create_all(
        &mut entries,
        vec![entry(PARENT, a, &uid), entry(a, b, &uid)],
    )
    .await;
    assert!(made.iter().all(|r| r.0 == 0), "{made:?}");
    let (a_id, b_id) = (made[0].2.clone(), made[1].2.clone());
    let batch = create_all(
        &mut entries,
        vec![entry(b, c, &uid), entry(b, a, &[("unix", "uid:2")])],
    )
    .await;
    assert_eq!(batch[0].0, 0, "{}", batch[0].1);
    assert_eq!(batch[1].0, invalid, "{}", batch[1].1);
    assert!(
        batch[1].1.contains(&format!("{a} -> {b} -> {a}")),
        "{}",
        batch[1].1
    );

    // At update: a under c closes a -> b -> c -> a; b under b is its own
    // parent. Both name the entry.
    let (code, message) = reparent(&mut entries, &a_id, c).await;
    assert_eq!(code, invalid, "{message}");
    assert!(
        message.contains(&a_id) && message.contains(&format!("{a} -> {b} -> {c} -> {a}")),
        "{message}"
    );
    let (code, message) = reparent(&mut entries, &b_id, b).await;
    assert_eq!(code, invalid, "{message}");
    assert!(
        message.contains(&b_id) && message.contains("own parent"),
        "{message}"
    );
    // Nothing moved; a move that closes nothing is fine.
    let count = entries
        .count_entries(CountEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, 3);
    assert_eq!(reparent(&mut entries, &b_id, PARENT).await.0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn spiffe_ids_over_2048_bytes_are_refused() {
    let server = TestServer::start().await;
    let mut entries = server.entries().await;
    let prefix = "spiffe://example.org/";
    let longest = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    let too_long = format!("{longest}b");
    let uid = [("unix", "uid:1")];

    let made = create_all(
        &mut entries,
        vec![
            entry(PARENT, &longest, &uid),
            entry(PARENT, &too_long, &uid),
            entry(&too_long, "spiffe://example.org/w", &uid),
        ],
    )
    .await;
    assert_eq!(made[0].0, 0, "2,048 bytes is allowed: {}", made[0].1);
    for refused in &made[1..] {
        assert_eq!(refused.0, Code::InvalidArgument as i32, "{}", refused.1);
        assert!(refused.1.contains("2048 bytes"), "{}", refused.1);
    }
    let (code, message) = reparent(&mut entries, &made[0].2, &too_long).await;
    assert_eq!(code, Code::InvalidArgument as i32, "{message}");
    assert!(message.contains("2048 bytes"), "{message}");

    // Token generation with an over-long alias ID is refused too.
    let err = server
        .agents()
        .await
        .create_join_token(CreateJoinTokenRequest {
            ttl: 60,
            agent_id: Some(id(&too_long)),
            token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
}
