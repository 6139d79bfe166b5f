//! The TrustDomain API in process: validation, masks, batch results,
//! the relationship's bundle, and who may call it (admins only; agents may
//! read federated bundles).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{attest, TestServer};
use spinel_proto::spire::api::server::bundle::v1::{
    bundle_client::BundleClient, GetFederatedBundleRequest,
};
use spinel_proto::spire::api::server::trustdomain::v1::{
    trust_domain_client::TrustDomainClient, BatchCreateFederationRelationshipRequest,
    BatchDeleteFederationRelationshipRequest, BatchUpdateFederationRelationshipRequest,
    GetFederationRelationshipRequest, ListFederationRelationshipsRequest, RefreshBundleRequest,
};
use spinel_proto::spire::api::types::{
    federation_relationship::BundleEndpointProfile, Bundle, FederationRelationship,
    FederationRelationshipMask, HttpsWebProfile, HttpsspiffeProfile,
};
use tonic::Code;

fn relationship(td: &str, url: &str) -> FederationRelationship {
    FederationRelationship {
        trust_domain: td.into(),
        bundle_endpoint_url: url.into(),
        bundle_endpoint_profile: Some(BundleEndpointProfile::HttpsSpiffe(HttpsspiffeProfile {
            endpoint_spiffe_id: format!("spiffe://{td}/spire/server"),
        })),
        trust_domain_bundle: None,
    }
}

#[tokio::test]
async fn relationships_are_created_listed_updated_and_deleted() {
    let server = TestServer::start().await;
    let mut client = TrustDomainClient::new(server.admin_channel().await);
    let ca = server.roots()[0].clone();
    let mut with_bundle = relationship("other.test", "https://127.0.0.1:1");
    with_bundle.trust_domain_bundle = Some(Bundle {
        trust_domain: "other.test".into(),
        x509_authorities: vec![spinel_proto::spire::api::types::X509Certificate {
            asn1: ca.clone(),
            tainted: false,
        }],
        ..Default::default()
    });
    let mut plain_http = relationship("bad.test", "http://127.0.0.1:1");
    plain_http.bundle_endpoint_profile = None;
    let results = client
        .batch_create_federation_relationship(BatchCreateFederationRelationshipRequest {
            federation_relationships: vec![
                with_bundle,
                relationship("example.org", "https://127.0.0.1:1"),
                plain_http,
                relationship("other.test", "https://127.0.0.1:2"),
            ],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let codes: Vec<i32> = results
        .iter()
        .map(|r| r.status.as_ref().unwrap().code)
        .collect();
    assert_eq!(
        codes,
        [
            Code::Ok as i32,
            Code::InvalidArgument as i32,
            Code::InvalidArgument as i32,
            Code::AlreadyExists as i32
        ],
        "{results:?}"
    );
    let created = results[0].federation_relationship.as_ref().unwrap();
    assert_eq!(
        created
            .trust_domain_bundle
            .as_ref()
            .unwrap()
            .x509_authorities[0]
            .asn1,
        ca,
        "the relationship's bundle is stored as the federated bundle"
    );

    let listed = client
        .list_federation_relationships(ListFederationRelationshipsRequest {
            output_mask: Some(FederationRelationshipMask {
                bundle_endpoint_url: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.federation_relationships.len(), 1);
    let only = &listed.federation_relationships[0];
    assert_eq!(only.bundle_endpoint_url, "https://127.0.0.1:1");
    assert!(only.bundle_endpoint_profile.is_none(), "masked out");
    assert!(only.trust_domain_bundle.is_none(), "masked out");

    // Update only the profile: the URL stays.
    let mut change = relationship("other.test", "https://ignored");
    change.bundle_endpoint_profile = Some(BundleEndpointProfile::HttpsWeb(HttpsWebProfile {}));
    let updated = client
        .batch_update_federation_relationship(BatchUpdateFederationRelationshipRequest {
            federation_relationships: vec![change],
            input_mask: Some(FederationRelationshipMask {
                bundle_endpoint_profile: true,
                ..Default::default()
            }),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let got = updated.results[0].federation_relationship.as_ref().unwrap();
    assert_eq!(got.bundle_endpoint_url, "https://127.0.0.1:1");
    assert!(matches!(
        got.bundle_endpoint_profile,
        Some(BundleEndpointProfile::HttpsWeb(_))
    ));
    let fetched = client
        .get_federation_relationship(GetFederationRelationshipRequest {
            trust_domain: "spiffe://other.test".into(),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.trust_domain, "other.test");

    // RefreshBundle of an unknown trust domain is NotFound; of a known one
    // whose endpoint does not answer, an error naming the URL.
    let err = client
        .refresh_bundle(RefreshBundleRequest {
            trust_domain: "nowhere.test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .refresh_bundle(RefreshBundleRequest {
            trust_domain: "other.test".into(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("https://127.0.0.1:1"), "{err}");

    let deleted = client
        .batch_delete_federation_relationship(BatchDeleteFederationRelationshipRequest {
            trust_domains: vec!["other.test".into(), "other.test".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.results[0].status.as_ref().unwrap().code, 0);
    assert_eq!(
        deleted.results[1].status.as_ref().unwrap().code,
        Code::NotFound as i32
    );
}

#[tokio::test]
async fn only_admins_manage_relationships_and_agents_read_federated_bundles() {
    let server = TestServer::start().await;
    let err = TrustDomainClient::new(server.anonymous_channel().await)
        .list_federation_relationships(ListFederationRelationshipsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let token = server.token(None).await;
    let agent = attest(&server, &token).await.unwrap();
    let channel = agent.channel(&server).await;
    let err = TrustDomainClient::new(channel.clone())
        .list_federation_relationships(ListFederationRelationshipsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "agents are not admins");
    // GetFederatedBundle is open to agents (NotFound: none stored).
    let err = BundleClient::new(channel)
        .get_federated_bundle(GetFederatedBundleRequest {
            trust_domain: "other.test".into(),
            output_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let err = BundleClient::new(server.anonymous_channel().await)
        .get_federated_bundle(GetFederatedBundleRequest {
            trust_domain: "other.test".into(),
            output_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}
