//! A minimal real HTTPS client for the tests: tokio-rustls trusting the
//! fake's CA (optionally with a client certificate), hyper's HTTP/1.1
//! client connection.

use std::sync::Arc;

use anyhow::{Context, Result};
use http::{header, Method, Request};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How to reach the fake.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `127.0.0.1:<port>`.
    pub port: u16,
    /// CA PEM to trust; `None` for plain HTTP.
    pub ca_pem: Option<String>,
    /// TLS server name to verify (`127.0.0.1` by default).
    pub server_name: Option<String>,
    /// Client certificate and key, PEM.
    pub client_cert: Option<(String, String)>,
    /// Bearer token.
    pub token: Option<String>,
}

/// A response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn client_config(t: &Target, ca_pem: &str) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match &t.client_cert {
        Some((cert, key)) => builder.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
            PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    })
}

/// Sends one request to the fake.
pub async fn send(t: &Target, method: Method, path: &str, body: Option<String>) -> Result<Reply> {
    let tcp = TcpStream::connect(("127.0.0.1", t.port))
        .await
        .context("connecting")?;
    match &t.ca_pem {
        None => exchange(tcp, t, method, path, body).await,
        Some(ca) => {
            let connector = TlsConnector::from(Arc::new(client_config(t, ca)?));
            let name = t.server_name.clone().unwrap_or_else(|| "127.0.0.1".into());
            let tls = connector
                .connect(ServerName::try_from(name)?, tcp)
                .await
                .context("TLS handshake")?;
            exchange(tls, t, method, path, body).await
        }
    }
}

async fn exchange<S>(
    io: S,
    t: &Target,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<Reply>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, format!("127.0.0.1:{}", t.port))
        .header(header::ACCEPT, "application/json");
    if let Some(token) = &t.token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let resp = sender
        .send_request(req.body(body.unwrap_or_default())?)
        .await?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        content_type,
        body: String::from_utf8(bytes.to_vec())?,
    })
}

/// `GET path`.
pub async fn get(t: &Target, path: &str) -> Result<Reply> {
    send(t, Method::GET, path, None).await
}
