//! What the areas of the server's tests share: a real server started in
//! process (temporary data dir, TCP port 0, admin socket in the temp dir),
//! admin clients over the Unix socket, and agent clients over TLS that
//! verify the server's SPIFFE ID and authenticate with the SVID they got
//! from `AttestAgent`.
//!
//! `fake_kube`: a small fake Kubernetes API server for `k8s_psat/`.

pub mod fake_kube;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use spinel_config::hcl::ConfigFile;
use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, attest_agent_request, attest_agent_response, AgentX509svidParams,
    AttestAgentRequest, CreateJoinTokenRequest,
};
use spinel_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use spinel_proto::spire::api::server::entry::v1::{
    entry_client::EntryClient, BatchCreateEntryRequest,
};
use spinel_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use spinel_proto::spire::api::types;
use spinel_server::config::{self, Overrides};
use spinel_server::run::{self, RunningServer};
use tempfile::TempDir;
use tokio::net::{TcpStream, UnixStream};
use tonic::transport::{Channel, Endpoint, Uri};

/// The trust domain of test servers.
pub const TD: &str = "example.org";
/// The server's SPIFFE ID, which agents check.
pub const SERVER_ID: &str = "spiffe://example.org/spire/server";

/// A running server and its directory.
pub struct TestServer {
    pub dir: TempDir,
    pub server: Option<RunningServer>,
    pub socket_path: PathBuf,
    config_text: String,
}

impl TestServer {
    /// A server with a disk key manager, so a restart keeps the CA.
    pub async fn start() -> TestServer {
        Self::start_with("").await
    }

    /// A server with `extra` lines inside `server { }`.
    pub async fn start_with(extra: &str) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("spinel-api")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        let socket_path = root.join("private/api.sock");
        let config_text = format!(
            r#"server {{
    bind_address = "127.0.0.1"
    bind_port = 0
    socket_path = "{socket}"
    trust_domain = "{TD}"
    data_dir = "{data}"
{extra}
}}
plugins {{
    DataStore "sled" {{
        plugin_data {{}}
    }}
    KeyManager "disk" {{
        plugin_data {{
            keys_path = "{data}/keys.json"
        }}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
}}
"#,
            socket = socket_path.display(),
            data = root.join("data").display(),
        );
        let mut server = TestServer {
            dir,
            server: None,
            socket_path,
            config_text,
        };
        server.boot().await;
        server
    }

    async fn boot(&mut self) {
        let file = ConfigFile::parse(Path::new("test.conf"), &self.config_text).unwrap();
        let config = config::from_file(&file, &Overrides::default()).unwrap();
        self.server = Some(run::start(config).await.unwrap());
    }

    /// Stops the server gracefully.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }

    /// Stops and starts the server on the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.boot().await;
    }

    fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server is running")
    }

    /// The TCP address agents connect to.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.running().local_addr()
    }

    /// The X.509 authorities of the current bundle.
    pub fn roots(&self) -> Vec<Vec<u8>> {
        self.running().bundle().x509_authorities
    }

    /// A channel over the admin Unix socket.
    pub async fn admin_channel(&self) -> Channel {
        let path = self.socket_path.clone();
        Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
            }))
            .await
            .unwrap()
    }

    /// Entry API over the admin socket.
    pub async fn entries(&self) -> EntryClient<Channel> {
        EntryClient::new(self.admin_channel().await)
    }

    /// Agent API over the admin socket.
    pub async fn agents(&self) -> AgentClient<Channel> {
        AgentClient::new(self.admin_channel().await)
    }

    /// Bundle API over the admin socket.
    pub async fn bundles(&self) -> BundleClient<Channel> {
        BundleClient::new(self.admin_channel().await)
    }

    /// A join token (600 s), optionally with an alias entry.
    pub async fn token(&self, alias: Option<&str>) -> String {
        self.agents()
            .await
            .create_join_token(CreateJoinTokenRequest {
                ttl: 600,
                token: String::new(),
                agent_id: alias.map(id),
            })
            .await
            .unwrap()
            .into_inner()
            .value
    }

    /// Creates one entry over the admin socket, returning its ID.
    pub async fn create_entry(
        &self,
        parent: &str,
        spiffe_id: &str,
        selector: &str,
        dns: &[&str],
    ) -> String {
        let (kind, value) = selector.split_once(':').unwrap();
        let response = self
            .entries()
            .await
            .batch_create_entry(BatchCreateEntryRequest {
                entries: vec![types::Entry {
                    parent_id: Some(id(parent)),
                    spiffe_id: Some(id(spiffe_id)),
                    selectors: vec![types::Selector {
                        r#type: kind.into(),
                        value: value.into(),
                    }],
                    dns_names: dns.iter().map(|d| d.to_string()).collect(),
                    ..Default::default()
                }],
                output_mask: None,
            })
            .await
            .unwrap()
            .into_inner();
        let result = &response.results[0];
        let status = result.status.as_ref().unwrap();
        assert_eq!(status.code, 0, "{}", status.message);
        result.entry.as_ref().unwrap().id.clone()
    }

    /// A TLS channel to the server, as an agent before attestation.
    pub async fn anonymous_channel(&self) -> Channel {
        tls_channel(self.addr(), client_config(&self.roots(), None)).await
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
pub struct Agent {
    pub id: String,
    pub chain: Vec<Vec<u8>>,
    pub key_der: Vec<u8>,
}

impl Agent {
    /// A channel authenticated with this agent's SVID.
    pub async fn channel(&self, server: &TestServer) -> Channel {
        tls_channel(
            server.addr(),
            client_config(&server.roots(), Some((&self.chain, &self.key_der))),
        )
        .await
    }
}

/// Runs `AttestAgent` with a join token over an anonymous TLS channel.
pub async fn attest(server: &TestServer, token: &str) -> Result<Agent, tonic::Status> {
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
    let mut client = AgentClient::new(server.anonymous_channel().await);
    let mut stream = client
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

/// The SVID client of an agent.
pub async fn svid_client(server: &TestServer, agent: &Agent) -> SvidClient<Channel> {
    SvidClient::new(agent.channel(server).await)
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
