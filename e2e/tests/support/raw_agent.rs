//! A raw agent (a tonic client, no `spinel-agent`) against a real
//! `spinel-server` process, for the `audit/` and `propagation/` tests: it
//! attests with a join token over anonymous TLS and then calls with the SVID
//! it got, so a test controls exactly what is sent. Also the admin socket as
//! a gRPC channel and the audit lines of the server's JSON log.

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
use spinel_test_fixtures::ServerHandle;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The server's SPIFFE ID, which its TLS certificate must carry.
pub const SERVER_ID: &str = "spiffe://example.org/spire/server";

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
pub struct Agent {
    pub id: String,
    pub chain: Vec<Vec<u8>>,
    pub key_der: Vec<u8>,
}

/// The X.509 authorities of the server's bundle (`bundle show`).
pub fn roots(server: &ServerHandle) -> Vec<Vec<u8>> {
    let pem = server.bundle_pem().unwrap();
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

/// The server's TCP address.
pub fn addr(server: &ServerHandle) -> std::net::SocketAddr {
    format!("127.0.0.1:{}", server.port).parse().unwrap()
}

/// A TLS channel without a client certificate.
pub async fn anonymous(server: &ServerHandle) -> Channel {
    tls_channel(addr(server), client_config(&roots(server), None)).await
}

/// A TLS channel authenticated with `agent`'s SVID.
pub async fn as_agent(server: &ServerHandle, agent: &Agent) -> Channel {
    tls_channel(
        addr(server),
        client_config(&roots(server), Some((&agent.chain, &agent.key_der))),
    )
    .await
}

/// `AttestAgent` with the join token `token`.
pub async fn attest(server: &ServerHandle, token: &str) -> Result<Agent, tonic::Status> {
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

/// A channel over the server's admin Unix socket (a local admin).
pub async fn admin(server: &ServerHandle) -> Channel {
    let path = server.socket_path.clone();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap()
}

/// The audit records in the server log, as JSON `fields` objects (the
/// server must run with `audit_log_enabled` and `log_format = "json"`).
pub fn audit_lines(server: &ServerHandle) -> Vec<serde_json::Value> {
    server
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["type"] == "audit")
        .map(|v| v["fields"].clone())
        .collect()
}

/// Waits (bounded, as a failure guard) for the audit line of `method`
/// (a path suffix) matching `keep`.
pub async fn audit_line(
    server: &ServerHandle,
    method: &str,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(line) = audit_lines(server)
            .into_iter()
            .find(|l| l["method"].as_str().is_some_and(|m| m.ends_with(method)) && keep(l))
        {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no audit line for {method}:\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
pub async fn tls_channel(addr: std::net::SocketAddr, config: ClientConfig) -> Channel {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .unwrap()
}
