//! Chunking, order and partial progress of step 6, against a small fake
//! SVID service on loopback.

use std::sync::{Arc, Mutex};

use prost::Message;
use spinel_proto::spire::api::server::svid::v1::svid_server::{Svid, SvidServer};
use spinel_proto::spire::api::server::svid::v1::*;
use spinel_proto::spire::api::types;
use tonic::{Request, Response, Status};

use super::*;

/// Answers `BatchNewX509SVID` with the same certificate for every item,
/// refuses entry IDs ending in `-bad`, and fails the call for chunk number
/// `fail_call` (1-based, known by its first entry ID, whenever it arrives:
/// two chunks are in flight, so calls may arrive in either order) as a
/// whole.
#[derive(Clone)]
struct FakeSvid {
    leaf: Vec<u8>,
    calls: Arc<Mutex<Vec<Vec<String>>>>,
    fail_call: Option<usize>,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in this fake"))
}

#[tonic::async_trait]
impl Svid for FakeSvid {
    async fn mint_x509svid(
        &self,
        _: Request<MintX509svidRequest>,
    ) -> Result<Response<MintX509svidResponse>, Status> {
        unimplemented()
    }
    async fn mint_jwtsvid(
        &self,
        _: Request<MintJwtsvidRequest>,
    ) -> Result<Response<MintJwtsvidResponse>, Status> {
        unimplemented()
    }
    async fn mint_witsvid(
        &self,
        _: Request<MintWitsvidRequest>,
    ) -> Result<Response<MintWitsvidResponse>, Status> {
        unimplemented()
    }
    async fn batch_new_x509svid(
        &self,
        request: Request<BatchNewX509svidRequest>,
    ) -> Result<Response<BatchNewX509svidResponse>, Status> {
        let ids: Vec<String> = request
            .get_ref()
            .params
            .iter()
            .map(|p| p.entry_id.clone())
            .collect();
        self.calls.lock().unwrap().push(ids.clone());
        let chunk = ids
            .first()
            .and_then(|id| id.strip_prefix("entry-"))
            .and_then(|n| n.get(..5))
            .and_then(|n| n.parse::<usize>().ok())
            .map(|first| first / CHUNK + 1);
        if self.fail_call.is_some() && self.fail_call == chunk {
            return Err(Status::unavailable("the fake fails this call"));
        }
        let results = ids
            .iter()
            .map(|id| {
                if id.ends_with("-bad") {
                    batch_new_x509svid_response::Result {
                        status: Some(types::Status {
                            code: 5,
                            message: "entry not found or not authorized".into(),
                        }),
                        svid: None,
                    }
                } else {
                    batch_new_x509svid_response::Result {
                        status: Some(types::Status::default()),
                        svid: Some(types::X509svid {
                            cert_chain: vec![self.leaf.clone()],
                            ..Default::default()
                        }),
                    }
                }
            })
            .collect();
        Ok(Response::new(BatchNewX509svidResponse { results }))
    }
    async fn new_jwtsvid(
        &self,
        _: Request<NewJwtsvidRequest>,
    ) -> Result<Response<NewJwtsvidResponse>, Status> {
        unimplemented()
    }
    async fn batch_new_witsvid(
        &self,
        _: Request<BatchNewWitsvidRequest>,
    ) -> Result<Response<BatchNewWitsvidResponse>, Status> {
        unimplemented()
    }
    async fn new_downstream_x509ca(
        &self,
        _: Request<NewDownstreamX509caRequest>,
    ) -> Result<Response<NewDownstreamX509caResponse>, Status> {
        unimplemented()
    }
}

fn leaf() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec!["leaf.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec()
}

async fn serve(fail_call: Option<usize>) -> (Channel, Arc<Mutex<Vec<Vec<String>>>>) {
    let fake = FakeSvid {
        leaf: leaf(),
        calls: Arc::default(),
        fail_call,
    };
    let calls = fake.calls.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SvidServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, calls)
}

fn entries(n: usize, bad: &[usize]) -> Vec<CachedEntry> {
    (0..n)
        .map(|i| {
            let suffix = if bad.contains(&i) { "-bad" } else { "" };
            CachedEntry {
                id: format!("entry-{i:05}{suffix}"),
                spiffe_id: spinel_spiffe::id::parse_id(&format!("spiffe://example.org/w/{i}"))
                    .unwrap(),
                selectors: Vec::new(),
                federates_with: Vec::new(),
                hint: String::new(),
                revision_number: 0,
                admin: false,
                downstream: false,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_in_chunks_in_order_and_applies_each() {
    let (channel, calls) = serve(None).await;
    let wanted = entries(2 * CHUNK + 7, &[3, CHUNK + 1]);
    let mut applied: Vec<Vec<String>> = Vec::new();
    mint(channel, wanted.clone(), |m| {
        applied.push(m.keys().cloned().collect())
    })
    .await
    .unwrap();

    // Three requests, each at most CHUNK, together every entry in order
    // (they may arrive in either order: two are in flight).
    let mut calls = calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(
        calls.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![CHUNK, CHUNK, 7]
    );
    let asked: Vec<String> = calls.concat();
    let ids: Vec<String> = wanted.iter().map(|e| e.id.clone()).collect();
    assert_eq!(asked, ids);

    // Each chunk applied once, in order; refused entries left out, only them.
    assert_eq!(applied.len(), 3);
    let got: Vec<String> = applied.concat();
    let expected: Vec<String> = ids
        .iter()
        .filter(|id| !id.ends_with("-bad"))
        .cloned()
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_chunk_keeps_the_chunks_before_it() {
    let (channel, calls) = serve(Some(2)).await;
    let wanted = entries(3 * CHUNK, &[]);
    let mut applied: Vec<String> = Vec::new();
    let outcome = mint(channel, wanted.clone(), |m| applied.extend(m.into_keys())).await;
    let status = outcome.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    // The first chunk's SVIDs reached the caller.
    let first: Vec<String> = wanted[..CHUNK].iter().map(|e| e.id.clone()).collect();
    assert_eq!(applied, first);
    // No retry inside the round: at most one call per chunk.
    assert!(calls.lock().unwrap().len() <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_wanted_asks_nothing() {
    let (channel, calls) = serve(None).await;
    let mut applied = 0;
    mint(channel, Vec::new(), |_| applied += 1).await.unwrap();
    assert_eq!(applied, 0);
    assert!(calls.lock().unwrap().is_empty());
}

#[test]
fn a_chunk_of_long_chains_stays_far_under_the_grpc_limit() {
    // The worst case of the arithmetic at CHUNK: ~9 KB chains with a long
    // SPIFFE ID and hint in every result.
    let chain = vec![
        vec![0xa5; 3_500],
        vec![0x5a; 1_500],
        vec![1; 2_000],
        vec![2; 2_000],
    ];
    let result = batch_new_x509svid_response::Result {
        status: Some(types::Status::default()),
        svid: Some(types::X509svid {
            id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: format!("/{}", "p".repeat(2_000)),
            }),
            cert_chain: chain,
            expires_at: i64::MAX,
            hint: "h".repeat(64),
        }),
    };
    let response = BatchNewX509svidResponse {
        results: vec![result; CHUNK],
    };
    let size = response.encoded_len();
    assert!(size < 4 * 1024 * 1024 * 3 / 4, "{size} bytes");
}

#[test]
fn publishes_after_a_logarithmic_number_of_chunks_and_the_last() {
    let published: Vec<usize> = (1..=40).filter(|&d| publish_after(d, 40)).collect();
    assert_eq!(published, vec![1, 2, 4, 8, 16, 32, 40]);
    assert!(publish_after(1, 1));
}
