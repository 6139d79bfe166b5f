//! The server's TCP listener keeps HTTP/2's own `:authority` validation:
//! the repair is for Unix sockets only, where the caller is identified by
//! its credentials and `:authority` means nothing.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use spinel_test_fixtures::grpc_raw::RawCall;
use tokio::net::TcpStream;

use crate::support::{ServerHandle, ServerOptions};

/// A TLS connection to the server's API port, trusting its bundle.
async fn connect(server: &ServerHandle) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.bundle_pem().unwrap().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_keeps_http2_authority_validation() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let call = |authority| RawCall {
        path: "/spire.api.server.bundle.v1.Bundle/GetBundle",
        authority,
        metadata: &[],
        message: &[],
    };
    let valid = format!("localhost:{}", server.port);
    let answered = call(Some(&valid)).on(connect(&server).await).await.unwrap();
    assert_eq!(answered.reset, None, "{answered:?}");
    assert!(
        answered.message.is_some(),
        "GetBundle over TCP: {answered:?}"
    );
    let refused = call(Some("tmp%2Fx%2Fapi.sock"))
        .on(connect(&server).await)
        .await
        .unwrap();
    assert_eq!(
        refused.reset,
        Some(1),
        "expected PROTOCOL_ERROR: {refused:?}"
    );
}
