//! Fetching a foreign trust domain's bundle from its bundle endpoint:
//! one HTTPS `GET`, authenticated per profile.
//!
//! - `https_spiffe`: the endpoint's certificate must chain to the X.509
//!   authorities of the **last known bundle of that trust domain** and
//!   carry exactly one URI SAN, the configured `endpoint_spiffe_id`. No DNS
//!   name is checked.
//! - `https_web`: the certificate must chain to a Web PKI root (the
//!   `webpki-roots` set, plus any extra roots from the config) and name the
//!   URL's host.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName};
use spinel_spiffe::tls::SpiffeIdServerVerifier;
use spinel_spiffe::{SpiffeId, TrustBundle, TrustDomain};
use tokio::net::TcpStream;

use super::FederationError;

/// Largest bundle document accepted.
const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;
/// Time allowed for connecting, the handshake and the whole response.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How the endpoint is authenticated, with what that needs.
#[derive(Debug, Clone)]
pub enum Authenticate {
    /// Web PKI roots.
    Web(Arc<RootCertStore>),
    /// The endpoint's SPIFFE ID and the trust domain's last known X.509
    /// authorities.
    Spiffe {
        /// The ID the endpoint must present.
        endpoint_id: SpiffeId,
        /// DER CA certificates.
        roots: Vec<Vec<u8>>,
    },
}

/// The Web PKI roots, plus `extra` (DER).
pub fn web_roots(extra: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let _ = roots.add_parsable_certificates(extra.iter().cloned());
    roots
}

/// GETs `url` and reads the body as the SPIFFE bundle of `td`.
pub async fn fetch_bundle(
    url: &str,
    td: &TrustDomain,
    auth: &Authenticate,
    provider: Arc<CryptoProvider>,
) -> Result<TrustBundle, FederationError> {
    let fail = |reason: String| FederationError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let body = tokio::time::timeout(FETCH_TIMEOUT, get(url, auth, provider))
        .await
        .map_err(|_| fail(format!("no answer within {FETCH_TIMEOUT:?}")))?
        .map_err(fail)?;
    TrustBundle::from_json(td.clone(), &body)
        .map_err(|e| fail(format!("the answer is not a SPIFFE bundle: {e}")))
}

async fn get(
    url: &str,
    auth: &Authenticate,
    provider: Arc<CryptoProvider>,
) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err("the URL must be https://".into());
    }
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let config = client_config(auth, provider)?;
    let server_name =
        ServerName::try_from(bare_host.clone()).map_err(|e| format!("bad host {host:?}: {e}"))?;
    let tcp = TcpStream::connect((bare_host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or(host);
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BUNDLE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(format!("the endpoint answered {status}"));
    }
    Ok(body)
}

fn client_config(
    auth: &Authenticate,
    provider: Arc<CryptoProvider>,
) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = match auth {
        Authenticate::Web(roots) => builder
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
        Authenticate::Spiffe { endpoint_id, roots } => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(
                SpiffeIdServerVerifier::new(roots, endpoint_id.to_string(), provider)
                    .described_as("endpoint", "the trust domain's known bundle")
                    .when_no_roots(
                        "no usable X.509 authority is known for the trust domain (seed it with `bundle set`)",
                    ),
            ))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
