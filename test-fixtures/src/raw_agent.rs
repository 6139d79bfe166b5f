//! A raw agent: a tonic client of the server's API that is not
//! `spinel-agent`, so a test controls exactly what is sent. It attests with
//! a join token over anonymous TLS, checks the server's SPIFFE ID as an
//! agent does, and then calls with the SVID it got.
//!
//! Used by the server's in-process tests (`server/tests/support/`) and the
//! whole-system tests (`e2e/tests/support/raw_agent.rs`): both name their
//! server through [`ApiServer`].
// Test support: a failure to set up is the test's failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, attest_agent_request, attest_agent_response, AgentX509svidParams,
    AttestAgentRequest,
};
use spinel_proto::spire::api::types;
use tokio::net::{TcpStream, UnixStream};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::ServerHandle;

/// The server's SPIFFE ID, which its TLS certificate must carry.
pub const SERVER_ID: &str = "spiffe://example.org/spire/server";

/// A server a raw agent reaches: its TCP address and trust anchors.
pub trait ApiServer {
    /// The TCP address agents connect to.
    fn addr(&self) -> SocketAddr;
    /// The X.509 authorities of its bundle (DER).
    fn roots(&self) -> Vec<Vec<u8>>;
}

impl ApiServer for ServerHandle {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn roots(&self) -> Vec<Vec<u8>> {
        let pem = self.bundle_pem().unwrap();
        x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
            .map(|p| p.unwrap().contents)
            .collect()
    }
}

impl<T: ApiServer + ?Sized> ApiServer for Arc<T> {
    fn addr(&self) -> SocketAddr {
        (**self).addr()
    }

    fn roots(&self) -> Vec<Vec<u8>> {
        (**self).roots()
    }
}

/// `spiffe://example.org/x` as the wire type.
pub fn id(text: &str) -> types::Spiffeid {
    let rest = text.strip_prefix("spiffe://").unwrap();
    let (td, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    types::Spiffeid {
        trust_domain: td.into(),
        path: path.into(),
    }
}

/// The SPIFFE ID string of a wire ID.
pub fn id_string(p: &types::Spiffeid) -> String {
    format!("spiffe://{}{}", p.trust_domain, p.path)
}

/// A key pair and a CSR for it, optionally asking for `names` (URIs and
/// DNS names), which the server must ignore.
pub fn csr(names: &[&str]) -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    for name in names {
        let san = if name.contains("://") {
            rcgen::SanType::URI((*name).try_into().unwrap())
        } else {
            rcgen::SanType::DnsName((*name).try_into().unwrap())
        };
        params.subject_alt_names.push(san);
    }
    let der = params.serialize_request(&key).unwrap().der().to_vec();
    (key, der)
}

/// An agent that attested: its ID, SVID chain and key.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // holds a private key
pub struct Agent {
    pub id: String,
    pub chain: Vec<Vec<u8>>,
    pub key_der: Vec<u8>,
}

impl Agent {
    /// A channel to `server` authenticated with this agent's SVID.
    pub async fn channel(&self, server: &impl ApiServer) -> Channel {
        tls_channel(
            server.addr(),
            client_config(&server.roots(), Some((&self.chain, &self.key_der))),
        )
        .await
    }
}

/// A TLS channel to `server` without a client certificate.
pub async fn anonymous(server: &impl ApiServer) -> Channel {
    tls_channel(server.addr(), client_config(&server.roots(), None)).await
}

/// `AttestAgent` with the join token `token`, over an anonymous channel.
pub async fn attest(server: &impl ApiServer, token: &str) -> Result<Agent, tonic::Status> {
    let (key, csr) = csr(&[]);
    let request = AttestAgentRequest {
        step: Some(attest_agent_request::Step::Params(
            attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: "join_token".into(),
                    payload: token.as_bytes().to_vec(),
                }),
                params: Some(AgentX509svidParams { csr }),
            },
        )),
    };
    let mut stream = AgentClient::new(anonymous(server).await)
        .attest_agent(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let message = stream
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("stream ended without a result"))?;
    let Some(attest_agent_response::Step::Result(result)) = message.step else {
        return Err(tonic::Status::unknown("expected a result"));
    };
    let svid = result.svid.unwrap();
    Ok(Agent {
        id: id_string(svid.id.as_ref().unwrap()),
        chain: svid.cert_chain,
        key_der: key.serialize_der(),
    })
}

/// A gRPC channel over a Unix socket (the server's admin socket: a local
/// admin).
pub async fn unix_channel(path: PathBuf) -> Channel {
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap()
}

/// Checks the server's chain against the bundle and its URI SAN against
/// the server's SPIFFE ID.
#[derive(Debug)]
struct SpiffeServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let localhost = ServerName::try_from("localhost").unwrap();
        self.inner
            .verify_server_cert(end_entity, intermediates, &localhost, ocsp, now)?;
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| rustls::Error::General("unparseable server certificate".into()))?;
        let san = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .ok_or_else(|| rustls::Error::General("server certificate has no SAN".into()))?;
        let uris: Vec<_> = san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect();
        if uris != [SERVER_ID] {
            return Err(rustls::Error::General(format!(
                "server presented {uris:?}, not {SERVER_ID}"
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client config trusting `roots`, authenticating with `identity`.
pub fn client_config(
    roots: &[Vec<u8>],
    identity: Option<(&Vec<Vec<u8>>, &Vec<u8>)>,
) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut store = RootCertStore::empty();
    for der in roots {
        store.add(CertificateDer::from(der.clone())).unwrap();
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(store),
        provider.clone(),
    )
    .build()
    .unwrap();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier { inner }));
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                chain
                    .iter()
                    .map(|c| CertificateDer::from(c.clone()))
                    .collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// A gRPC channel over TLS to `addr`.
pub async fn tls_channel(addr: SocketAddr, config: ClientConfig) -> Channel {
    try_tls_channel(addr, config).await.unwrap()
}

/// [`tls_channel`], returning the connect or handshake error.
pub async fn try_tls_channel(
    addr: SocketAddr,
    config: ClientConfig,
) -> Result<Channel, tonic::transport::Error> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                // As spinel-agent's connector: without it a request's
                // frames wait for the server's delayed ACK (~40 ms).
                tcp.set_nodelay(true)?;
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
}
