//! Envoy SDS on the Workload API socket, in process: what a stream pushes
//! and what ends it, with the cache filled by hand (the end-to-end tests
//! with go-control-plane and Envoy are in `e2e/tests/interop/`).

use std::time::Duration;

use prost::Message;
use spinel_proto::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use spinel_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use spinel_proto::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

use crate::support::*;

fn request(names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn secrets(response: &DiscoveryResponse) -> Vec<Secret> {
    response
        .resources
        .iter()
        .map(|a| Secret::decode(a.value.as_slice()).unwrap())
        .collect()
}

/// The leaf DER of a TLS certificate secret.
fn leaf(secret: &Secret) -> Vec<u8> {
    let Some(secret::Type::TlsCertificate(cert)) = &secret.r#type else {
        panic!("not a certificate: {}", secret.name)
    };
    let pem = match cert.certificate_chain.as_ref().unwrap().specifier.as_ref() {
        Some(spinel_proto::envoy::config::core::v3::data_source::Specifier::InlineBytes(b)) => b,
        other => panic!("not inline bytes: {other:?}"),
    };
    x509_parser::pem::Pem::iter_from_buffer(pem)
        .next()
        .unwrap()
        .unwrap()
        .contents
}

async fn open(
    h: &Harness,
    names: &[&str],
) -> (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>) {
    let mut client = SecretDiscoveryServiceClient::new(channel(&h.socket).await);
    let (tx, rx) = mpsc::channel(4);
    tx.send(request(names, "", "")).await.unwrap();
    let stream = client
        .stream_secrets(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, stream)
}

async fn next(
    stream: &mut Streaming<DiscoveryResponse>,
) -> Result<DiscoveryResponse, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a message within 5 s")
        .map(|m| m.expect("the stream ended"))
}

#[tokio::test]
async fn sds_stream_pushes_changes_only_and_ends_with_the_callers_rights() {
    let h = Harness::start().await;
    let w1 = h.publish_default();
    let (tx, mut stream) = open(&h, &["default", "ALL"]).await;
    let first = next(&mut stream).await.unwrap();
    assert_eq!(first.version_info, "1");
    let got = secrets(&first);
    let names: Vec<_> = got.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ALL", "default"]);
    assert_eq!(leaf(&got[1]), w1.svid.chain[0]);
    tx.send(request(&["default", "ALL"], "1", &first.nonce))
        .await
        .unwrap();

    // A change that does not concern this caller sends nothing.
    let other = identity(
        &h.ca,
        entry("other", &["unix:uid:5"], "", &[]),
        in_an_hour(),
    );
    publish(
        &h.cache,
        &h.ca,
        Some(&h.fed),
        vec![w1.clone(), other.clone()],
    );
    let quiet = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
    assert!(quiet.is_err(), "no message for an unrelated change");

    // Rotation: version 2 with the new certificate.
    let rotated = identity(&h.ca, w1.entry.clone(), in_an_hour());
    publish(&h.cache, &h.ca, Some(&h.fed), vec![rotated.clone(), other]);
    let second = next(&mut stream).await.unwrap();
    assert_eq!(second.version_info, "2");
    assert_ne!(second.nonce, first.nonce);
    assert_eq!(leaf(&secrets(&second)[1]), rotated.svid.chain[0]);

    // The caller loses its identity: "default" is no longer its to have.
    h.attestor.set(&["unix:uid:2000"]);
    publish(&h.cache, &h.ca, Some(&h.fed), vec![rotated]);
    let end = next(&mut stream).await.unwrap_err();
    assert_eq!(end.code(), Code::InvalidArgument);

    // Without identities a caller still gets its trust domain's bundle;
    // the stream ends with Unavailable when the agent stops.
    let (_tx, mut bundle_only) = open(&h, &["ROOTCA"]).await;
    let only = next(&mut bundle_only).await.unwrap();
    assert_eq!(secrets(&only)[0].name, "ROOTCA");
    h.shutdown().await;
    let end = next(&mut bundle_only).await.unwrap_err();
    assert_eq!(end.code(), Code::Unavailable);
}
