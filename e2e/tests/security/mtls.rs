//! An mTLS gRPC client for the server's TCP listener, one HTTP/2
//! connection at a time, with what happened at the TLS level in view:
//! whether the session was resumed, and when the server closed the
//! connection. Identities are X509-SVIDs minted over the admin socket.
//!
//! The client accepts any server certificate (handshake signatures are
//! still checked): these tests are about what the server accepts from the
//! client, and the server's own certificate changes CA during them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind};
use spinel_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use spinel_proto::spire::api::server::svid::v1::MintX509svidRequest;
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;
use tonic::transport::{Endpoint, Uri};

/// gRPC status OK.
pub const OK: i32 = 0;

/// An X509-SVID: chain (leaf first) and PKCS#8 key, DER.
pub struct Svid {
    pub chain: Vec<Vec<u8>>,
    pub key: Vec<u8>,
}

/// Mints an X509-SVID for `id` over the admin socket at `socket`
/// (`MintX509SVID`), signed by the CA active now.
pub async fn mint_x509_svid(socket: &Path, id: &str) -> Svid {
    let path = socket.to_owned();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(id.try_into().unwrap()));
    let csr = params.serialize_request(&key).unwrap();
    let svid = SvidClient::new(channel)
        .mint_x509svid(MintX509svidRequest {
            csr: csr.der().to_vec(),
            ttl: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    Svid {
        chain: svid.cert_chain,
        key: key.serialize_der(),
    }
}

/// A client config presenting `svid`, with rustls' default in-memory
/// session store: connections made with the same `Arc` resume sessions
/// whenever the server lets them.
pub fn client_config(svid: &Svid) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(spinel_spiffe::tls::AnyServerCertificate::new(provider))
        .with_client_auth_cert(
            svid.chain
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.key.clone())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// One HTTP/2 connection over TLS to the server.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
    /// The TLS session was resumed, not a full handshake.
    pub resumed: bool,
}

impl Conn {
    /// Connects to `127.0.0.1:port` and completes the TLS and HTTP/2
    /// handshakes (a refused client certificate may only show at the
    /// first call: in TLS 1.3 the server's verdict follows the client's
    /// last handshake message).
    pub async fn open(port: u16, config: &Arc<ClientConfig>) -> Result<Conn> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(ServerName::try_from("localhost")?, tcp)
            .await
            .context("TLS handshake")?;
        let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .context("HTTP/2 handshake")?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn {
            sender,
            driver,
            resumed,
        })
    }

    /// Calls `path` (`/package.Service/Method`) with an empty request;
    /// returns the `grpc-status` the server answered, or why no answer came.
    pub async fn call(&mut self, path: &str) -> Result<i32> {
        tokio::time::timeout(Duration::from_secs(10), self.call_inner(path))
            .await
            .context("no answer within 10 s")?
    }

    async fn call_inner(&mut self, path: &str) -> Result<i32> {
        self.sender.ready().await.context("connection not ready")?;
        let request = http::Request::post(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))?;
        let response = self.sender.send_request(request).await.context("request")?;
        let (parts, body) = response.into_parts();
        if let Some(status) = parts.headers.get("grpc-status") {
            return Ok(status.to_str()?.parse()?);
        }
        let collected = body.collect().await.context("response body")?;
        let Some(trailers) = collected.trailers() else {
            bail!("no trailers");
        };
        let Some(status) = trailers.get("grpc-status") else {
            bail!("no grpc-status in the trailers");
        };
        Ok(status.to_str()?.parse()?)
    }

    /// Waits up to `limit` for the server to close the connection; true if
    /// it did.
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, &mut self.driver).await.is_ok()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Opens a connection and makes one call; how it went, and whether the
/// session was resumed.
pub async fn call_once(port: u16, config: &Arc<ClientConfig>, path: &str) -> (Result<i32>, bool) {
    match Conn::open(port, config).await {
        Ok(mut conn) => {
            let status = conn.call(path).await;
            (status, conn.resumed)
        }
        Err(e) => (Err(e), false),
    }
}
