//! Checks that the generated code matches the wire format of SPIRE and the
//! SPIFFE Workload API: field numbers, wire types, enum values and gRPC method
//! paths.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use prost::Message;
use tonic::codegen::{http, tokio_stream, Context, Poll, Service};
use tonic::{Request, Response, Status};

use spinel_proto::spire::api::server::{agent, bundle, entry, localauthority, svid, trustdomain};
use spinel_proto::spire::api::{agent::delegatedidentity, types};
use spinel_proto::{grpc::health, workload};

const VARINT: u8 = 0;
const LEN: u8 = 2;

/// Splits an encoded message into its top-level (field number, wire type)
/// pairs, in order.
fn fields(mut buf: &[u8]) -> Vec<(u32, u8)> {
    fn varint(buf: &mut &[u8]) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (byte, rest) = buf.split_first().expect("truncated varint");
            *buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("varint too long");
    }

    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf);
        let field = u32::try_from(key >> 3).unwrap();
        let wire_type = (key & 7) as u8;
        match wire_type {
            VARINT => {
                varint(&mut buf);
            }
            LEN => {
                let len = usize::try_from(varint(&mut buf)).unwrap();
                buf = &buf[len..];
            }
            1 => buf = &buf[8..],
            5 => buf = &buf[4..],
            other => panic!("unexpected wire type {other}"),
        }
        out.push((field, wire_type));
    }
    out
}

#[test]
fn workload_x509_svid_fields() {
    let svid = workload::X509svid {
        spiffe_id: "spiffe://example.org/w".into(),
        x509_svid: vec![1],
        x509_svid_key: vec![2],
        bundle: vec![3],
        hint: "h".into(),
    };
    let bytes = svid.encode_to_vec();
    assert_eq!(
        fields(&bytes),
        [(1, LEN), (2, LEN), (3, LEN), (4, LEN), (5, LEN)]
    );
    // hint = 5, length-delimited: tag byte 0x2a.
    assert_eq!(&bytes[bytes.len() - 3..], &[0x2a, 1, b'h']);

    let resp = workload::X509svidResponse {
        svids: vec![svid],
        crl: vec![vec![9]],
        federated_bundles: HashMap::from([("spiffe://other.org".into(), vec![4])]),
    };
    assert_eq!(
        fields(&resp.encode_to_vec()),
        [(1, LEN), (2, LEN), (3, LEN)]
    );

    let bundles = workload::X509BundlesResponse {
        crl: vec![vec![9]],
        bundles: HashMap::from([("spiffe://example.org".into(), vec![4])]),
    };
    assert_eq!(fields(&bundles.encode_to_vec()), [(1, LEN), (2, LEN)]);
}

#[test]
fn workload_jwt_fields() {
    let req = workload::JwtsvidRequest {
        audience: vec!["a".into(), "b".into()],
        spiffe_id: "spiffe://example.org/w".into(),
    };
    assert_eq!(fields(&req.encode_to_vec()), [(1, LEN), (1, LEN), (2, LEN)]);

    let svid = workload::Jwtsvid {
        spiffe_id: "spiffe://example.org/w".into(),
        svid: "x.y.z".into(),
        hint: "h".into(),
    };
    assert_eq!(
        fields(&svid.encode_to_vec()),
        [(1, LEN), (2, LEN), (3, LEN)]
    );

    let bundles = workload::JwtBundlesResponse {
        bundles: HashMap::from([("spiffe://example.org".into(), b"{}".to_vec())]),
    };
    assert_eq!(fields(&bundles.encode_to_vec()), [(1, LEN)]);

    let validate = workload::ValidateJwtsvidRequest {
        audience: "a".into(),
        svid: "x.y.z".into(),
    };
    assert_eq!(fields(&validate.encode_to_vec()), [(1, LEN), (2, LEN)]);

    let validated = workload::ValidateJwtsvidResponse {
        spiffe_id: "spiffe://example.org/w".into(),
        claims: Some(prost_types::Struct::default()),
    };
    assert_eq!(fields(&validated.encode_to_vec()), [(1, LEN), (2, LEN)]);
}

fn spiffe_id(path: &str) -> Option<types::Spiffeid> {
    Some(types::Spiffeid {
        trust_domain: "example.org".into(),
        path: path.into(),
    })
}

#[test]
fn entry_fields() {
    let entry = types::Entry {
        id: "id".into(),
        spiffe_id: spiffe_id("/w"),
        parent_id: spiffe_id("/agent"),
        selectors: vec![types::Selector {
            r#type: "unix".into(),
            value: "uid:1000".into(),
        }],
        x509_svid_ttl: 60,
        federates_with: vec!["other.org".into()],
        admin: true,
        downstream: true,
        expires_at: 1,
        dns_names: vec!["example.org".into()],
        revision_number: 2,
        store_svid: true,
        jwt_svid_ttl: 30,
        hint: "h".into(),
        created_at: 3,
        additional_attributes: Some(types::entry::AdditionalAttributes {
            disable_x509_svid_prefetch: true,
            jwt_svid_include_jti: true,
        }),
    };
    let bytes = entry.encode_to_vec();
    assert_eq!(
        fields(&bytes),
        [
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, LEN),
            (5, VARINT),
            (6, LEN),
            (7, VARINT),
            (8, VARINT),
            (9, VARINT),
            (10, LEN),
            (11, VARINT),
            (12, VARINT),
            (13, VARINT),
            (14, LEN),
            (15, VARINT),
            (16, LEN),
        ]
    );
    // hint = 14 (tag 0x72), created_at = 15 (tag 0x78),
    // additional_attributes = 16 (two-byte tag 0x82 0x01) holding both flags.
    let tail = [0x72, 1, b'h', 0x78, 3, 0x82, 0x01, 4, 0x08, 1, 0x10, 1];
    assert!(bytes.ends_with(&tail), "{bytes:02x?}");

    let mask = types::EntryMask {
        spiffe_id: true,
        additional_attributes: true,
        ..Default::default()
    };
    assert_eq!(fields(&mask.encode_to_vec()), [(2, VARINT), (16, VARINT)]);
}

#[test]
fn agent_and_bundle_fields() {
    let agent = types::Agent {
        id: spiffe_id("/spire/agent/join_token/t"),
        attestation_type: "join_token".into(),
        x509svid_serial_number: "1".into(),
        x509svid_expires_at: 1,
        selectors: vec![types::Selector::default()],
        banned: true,
        can_reattest: true,
        agent_version: "1".into(),
    };
    assert_eq!(
        fields(&agent.encode_to_vec()),
        [
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, VARINT),
            (5, LEN),
            (6, VARINT),
            (7, VARINT),
            (8, LEN),
        ]
    );

    let bundle = types::Bundle {
        trust_domain: "example.org".into(),
        x509_authorities: vec![types::X509Certificate {
            asn1: vec![1],
            tainted: true,
        }],
        jwt_authorities: vec![types::JwtKey {
            public_key: vec![1],
            key_id: "k".into(),
            expires_at: 1,
            tainted: true,
        }],
        refresh_hint: 300,
        sequence_number: 7,
        wit_authorities: vec![types::WitKey::default()],
    };
    assert_eq!(
        fields(&bundle.encode_to_vec()),
        [
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (4, VARINT),
            (5, VARINT),
            (6, LEN)
        ]
    );

    let svid = types::X509svid {
        cert_chain: vec![vec![1], vec![2]],
        id: spiffe_id("/w"),
        expires_at: 1,
        hint: "h".into(),
    };
    assert_eq!(
        fields(&svid.encode_to_vec()),
        [(1, LEN), (1, LEN), (2, LEN), (3, VARINT), (4, LEN)]
    );

    let relationship = types::FederationRelationship {
        trust_domain: "other.org".into(),
        bundle_endpoint_url: "https://other.org/bundle".into(),
        bundle_endpoint_profile: Some(
            types::federation_relationship::BundleEndpointProfile::HttpsSpiffe(
                types::HttpsspiffeProfile {
                    endpoint_spiffe_id: "spiffe://other.org/server".into(),
                },
            ),
        ),
        trust_domain_bundle: Some(types::Bundle::default()),
    };
    assert_eq!(
        fields(&relationship.encode_to_vec()),
        [(1, LEN), (2, LEN), (4, LEN), (5, LEN)]
    );
}

#[test]
fn server_api_fields() {
    let attest = agent::v1::AttestAgentRequest {
        step: Some(agent::v1::attest_agent_request::Step::ChallengeResponse(
            vec![1],
        )),
    };
    assert_eq!(attest.encode_to_vec(), [0x12, 1, 1]);
    let attest = agent::v1::AttestAgentRequest {
        step: Some(agent::v1::attest_agent_request::Step::Params(
            agent::v1::attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: "join_token".into(),
                    payload: b"t".to_vec(),
                }),
                params: Some(agent::v1::AgentX509svidParams { csr: vec![1] }),
            },
        )),
    };
    assert_eq!(fields(&attest.encode_to_vec()), [(1, LEN)]);

    let result = agent::v1::AttestAgentResponse {
        step: Some(agent::v1::attest_agent_response::Step::Result(
            agent::v1::attest_agent_response::Result {
                svid: Some(types::X509svid::default()),
                reattestable: true,
            },
        )),
    };
    assert_eq!(result.encode_to_vec(), [0x0a, 4, 0x0a, 0, 0x10, 1]);

    let token = agent::v1::CreateJoinTokenRequest {
        ttl: 60,
        token: "t".into(),
        agent_id: spiffe_id("/a"),
    };
    assert_eq!(
        fields(&token.encode_to_vec()),
        [(1, VARINT), (2, LEN), (3, LEN)]
    );

    let sync = entry::v1::SyncAuthorizedEntriesResponse {
        entry_revisions: vec![entry::v1::EntryRevision {
            id: "id".into(),
            revision_number: 1,
            created_at: 2,
        }],
        entries: vec![types::Entry::default()],
        more: true,
    };
    assert_eq!(
        fields(&sync.encode_to_vec()),
        [(1, LEN), (2, LEN), (3, VARINT)]
    );

    let update = entry::v1::BatchUpdateEntryRequest {
        entries: vec![types::Entry::default()],
        input_mask: Some(types::EntryMask::default()),
        output_mask: Some(types::EntryMask::default()),
    };
    assert_eq!(
        fields(&update.encode_to_vec()),
        [(1, LEN), (2, LEN), (3, LEN)]
    );

    let list = entry::v1::ListEntriesRequest {
        filter: Some(entry::v1::list_entries_request::Filter {
            by_hint: Some("h".into()),
            by_downstream: Some(true),
            ..Default::default()
        }),
        output_mask: None,
        page_size: 10,
        page_token: "p".into(),
    };
    assert_eq!(
        fields(&list.encode_to_vec()),
        [(1, LEN), (3, VARINT), (4, LEN)]
    );

    let params = svid::v1::NewX509svidParams {
        entry_id: "id".into(),
        csr: vec![1],
    };
    assert_eq!(fields(&params.encode_to_vec()), [(1, LEN), (2, LEN)]);

    let append = bundle::v1::AppendBundleRequest {
        x509_authorities: vec![types::X509Certificate::default()],
        jwt_authorities: vec![types::JwtKey::default()],
        output_mask: Some(types::BundleMask::default()),
        wit_authorities: vec![types::WitKey::default()],
    };
    assert_eq!(
        fields(&append.encode_to_vec()),
        [(1, LEN), (2, LEN), (3, LEN), (4, LEN)]
    );

    let state = localauthority::v1::AuthorityState {
        authority_id: "a".into(),
        expires_at: 1,
        upstream_authority_subject_key_id: "s".into(),
    };
    assert_eq!(
        fields(&state.encode_to_vec()),
        [(1, LEN), (2, VARINT), (3, LEN)]
    );
}

#[test]
fn enum_values() {
    use types::selector_match::MatchBehavior;
    assert_eq!(MatchBehavior::MatchExact as i32, 0);
    assert_eq!(MatchBehavior::MatchAny as i32, 3);
    assert_eq!(
        types::permission_denied_details::Reason::AgentMustReattest as i32,
        5
    );
    assert_eq!(
        bundle::v1::batch_delete_federated_bundle_request::Mode::Dissociate as i32,
        2
    );
    assert_eq!(types::LogLevel::Trace as i32, 7);

    use health::v1::health_check_response::ServingStatus;
    let resp = health::v1::HealthCheckResponse {
        status: ServingStatus::NotServing.into(),
    };
    assert_eq!(resp.encode_to_vec(), [0x08, 2]);
    assert_eq!(ServingStatus::ServiceUnknown as i32, 3);
}

#[test]
fn service_names() {
    assert_eq!(
        workload::spiffe_workload_api_server::SERVICE_NAME,
        "SpiffeWorkloadAPI"
    );
    assert_eq!(
        agent::v1::agent_server::SERVICE_NAME,
        "spire.api.server.agent.v1.Agent"
    );
    assert_eq!(
        bundle::v1::bundle_server::SERVICE_NAME,
        "spire.api.server.bundle.v1.Bundle"
    );
    assert_eq!(
        entry::v1::entry_server::SERVICE_NAME,
        "spire.api.server.entry.v1.Entry"
    );
    assert_eq!(
        svid::v1::svid_server::SERVICE_NAME,
        "spire.api.server.svid.v1.SVID"
    );
    assert_eq!(
        trustdomain::v1::trust_domain_server::SERVICE_NAME,
        "spire.api.server.trustdomain.v1.TrustDomain"
    );
    assert_eq!(
        localauthority::v1::local_authority_server::SERVICE_NAME,
        "spire.api.server.localauthority.v1.LocalAuthority"
    );
    assert_eq!(
        delegatedidentity::v1::delegated_identity_server::SERVICE_NAME,
        "spire.api.agent.delegatedidentity.v1.DelegatedIdentity"
    );
    assert_eq!(
        health::v1::health_server::SERVICE_NAME,
        "grpc.health.v1.Health"
    );
}

#[test]
fn descriptor_set() {
    let fds = prost_types::FileDescriptorSet::decode(spinel_proto::FILE_DESCRIPTOR_SET).unwrap();
    let workload = fds
        .file
        .iter()
        .find(|f| f.name() == "workload.proto")
        .unwrap();
    assert_eq!(workload.package(), "");
    assert_eq!(workload.service[0].name(), "SpiffeWorkloadAPI");
    for name in [
        "google/protobuf/struct.proto",
        "spire/api/server/entry/v1/entry.proto",
        "grpc/health/v1/health.proto",
    ] {
        assert!(fds.file.iter().any(|f| f.name() == name), "{name} missing");
    }
}

/// A transport that records request paths and answers every call with
/// `NotFound`, so generated clients can be driven without a server.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Service<http::Request<tonic::body::Body>> for Recorder {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.lock().unwrap().push(req.uri().path().to_owned());
        let resp = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "5")
            .body(tonic::body::Body::empty())
            .unwrap();
        std::future::ready(Ok(resp))
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, Status>) {
    assert_eq!(result.unwrap_err().code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn client_method_paths() {
    let rec = Recorder::default();

    let mut c = workload::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(rec.clone());
    assert_not_found(c.fetch_x509svid(workload::X509svidRequest {}).await);
    assert_not_found(c.fetch_x509_bundles(workload::X509BundlesRequest {}).await);
    assert_not_found(c.fetch_jwtsvid(workload::JwtsvidRequest::default()).await);
    assert_not_found(c.fetch_jwt_bundles(workload::JwtBundlesRequest {}).await);
    assert_not_found(
        c.validate_jwtsvid(workload::ValidateJwtsvidRequest::default())
            .await,
    );
    assert_eq!(
        rec.take(),
        [
            "/SpiffeWorkloadAPI/FetchX509SVID",
            "/SpiffeWorkloadAPI/FetchX509Bundles",
            "/SpiffeWorkloadAPI/FetchJWTSVID",
            "/SpiffeWorkloadAPI/FetchJWTBundles",
            "/SpiffeWorkloadAPI/ValidateJWTSVID",
        ]
    );

    let mut c = agent::v1::agent_client::AgentClient::new(rec.clone());
    assert_not_found(
        c.attest_agent(tokio_stream::empty::<agent::v1::AttestAgentRequest>())
            .await,
    );
    assert_not_found(c.renew_agent(agent::v1::RenewAgentRequest::default()).await);
    assert_not_found(
        c.create_join_token(agent::v1::CreateJoinTokenRequest::default())
            .await,
    );
    assert_eq!(
        rec.take(),
        [
            "/spire.api.server.agent.v1.Agent/AttestAgent",
            "/spire.api.server.agent.v1.Agent/RenewAgent",
            "/spire.api.server.agent.v1.Agent/CreateJoinToken",
        ]
    );

    let mut c = entry::v1::entry_client::EntryClient::new(rec.clone());
    assert_not_found(
        c.batch_create_entry(entry::v1::BatchCreateEntryRequest::default())
            .await,
    );
    assert_not_found(
        c.sync_authorized_entries(tokio_stream::empty::<entry::v1::SyncAuthorizedEntriesRequest>())
            .await,
    );
    assert_eq!(
        rec.take(),
        [
            "/spire.api.server.entry.v1.Entry/BatchCreateEntry",
            "/spire.api.server.entry.v1.Entry/SyncAuthorizedEntries",
        ]
    );

    let mut c = svid::v1::svid_client::SvidClient::new(rec.clone());
    assert_not_found(
        c.batch_new_x509svid(svid::v1::BatchNewX509svidRequest::default())
            .await,
    );
    assert_not_found(c.new_jwtsvid(svid::v1::NewJwtsvidRequest::default()).await);
    assert_eq!(
        rec.take(),
        [
            "/spire.api.server.svid.v1.SVID/BatchNewX509SVID",
            "/spire.api.server.svid.v1.SVID/NewJWTSVID",
        ]
    );

    let mut c = bundle::v1::bundle_client::BundleClient::new(rec.clone());
    assert_not_found(c.get_bundle(bundle::v1::GetBundleRequest::default()).await);
    assert_eq!(rec.take(), ["/spire.api.server.bundle.v1.Bundle/GetBundle"]);

    let mut c = health::v1::health_client::HealthClient::new(rec.clone());
    assert_not_found(c.check(health::v1::HealthCheckRequest::default()).await);
    assert_eq!(rec.take(), ["/grpc.health.v1.Health/Check"]);
}

/// A Workload API implementation for the in-process round trip below.
struct Workload;

type Stream<T> = tonic::codegen::BoxStream<T>;

#[tonic::async_trait]
impl workload::spiffe_workload_api_server::SpiffeWorkloadApi for Workload {
    type FetchX509SVIDStream = Stream<workload::X509svidResponse>;
    type FetchX509BundlesStream = Stream<workload::X509BundlesResponse>;
    type FetchJWTBundlesStream = Stream<workload::JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        _request: Request<workload::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let resp = workload::X509svidResponse {
            svids: vec![workload::X509svid {
                hint: "h".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(resp)]))))
    }

    async fn fetch_x509_bundles(
        &self,
        _request: Request<workload::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Err(Status::unavailable("x509 bundles"))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<workload::JwtsvidRequest>,
    ) -> Result<Response<workload::JwtsvidResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(workload::JwtsvidResponse {
            svids: vec![workload::Jwtsvid {
                spiffe_id: req.spiffe_id,
                svid: req.audience.join(","),
                hint: String::new(),
            }],
        }))
    }

    async fn fetch_jwt_bundles(
        &self,
        _request: Request<workload::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(Status::unavailable("jwt bundles"))
    }

    async fn validate_jwtsvid(
        &self,
        _request: Request<workload::ValidateJwtsvidRequest>,
    ) -> Result<Response<workload::ValidateJwtsvidResponse>, Status> {
        Err(Status::unavailable("validate"))
    }
}

#[tokio::test]
async fn workload_server_round_trip() {
    use workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
    use workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;

    // The generated client drives the generated server directly, in process.
    let mut client = SpiffeWorkloadApiClient::new(SpiffeWorkloadApiServer::new(Workload));

    let mut stream = client
        .fetch_x509svid(workload::X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.svids[0].hint, "h");
    assert!(stream.message().await.unwrap().is_none());

    let jwt = client
        .fetch_jwtsvid(workload::JwtsvidRequest {
            audience: vec!["a".into(), "b".into()],
            spiffe_id: "spiffe://example.org/w".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwt.svids[0].spiffe_id, "spiffe://example.org/w");
    assert_eq!(jwt.svids[0].svid, "a,b");

    let err = client
        .validate_jwtsvid(workload::ValidateJwtsvidRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(err.message(), "validate");

    // An unknown method of the service is answered Unimplemented.
    let mut grpc = tonic::client::Grpc::new(SpiffeWorkloadApiServer::new(Workload));
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/SpiffeWorkloadAPI/FetchWITSVID");
    let err = grpc
        .unary::<_, workload::X509svidResponse, _>(
            Request::new(workload::X509svidRequest {}),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}
