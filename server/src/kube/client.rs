//! [`KubeClient`]: a minimal HTTPS client for one cluster's API server.
//!
//! One HTTP/1.1 connection per request over rustls (the attestor makes
//! three requests per attestation, rarely), each request bounded by
//! [`REQUEST_TIMEOUT`] and its answer by [`MAX_RESPONSE_BYTES`]. Statuses
//! become [`KubeError`]s naming the RBAC permission an operator must
//! grant (401, 403) or the missing object (404).
//!
//! Besides the attestor's [`KubeApi`] calls, it patches one key of a
//! ConfigMap ([`KubeClient::patch_config_map_data`]) for the `k8sbundle`
//! notifier ([`crate::notifier`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde::de::DeserializeOwned;
use spinel_spiffe::tls::AnyServerCertificate;
use tokio_rustls::TlsConnector;
use zeroize::Zeroizing;

use super::api::{KubeApi, Node, Pod, TokenReviewRequest, TokenReviewResponse, TokenReviewStatus};
use super::kubeconfig::{ClusterConnection, Credentials};
use super::KubeError;

/// The bound on one request, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// A client of one API server.
#[derive(Clone)]
pub struct KubeClient {
    server: String,
    authority: String,
    host: String,
    port: u16,
    path_prefix: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    credentials: Arc<Credentials>,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient")
            .field("server", &self.server)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl KubeClient {
    /// A client for `connection`.
    pub fn new(connection: ClusterConnection) -> Result<Self, KubeError> {
        let bad = |reason: String| KubeError::Connect {
            server: connection.server.clone(),
            reason,
        };
        let uri: http::Uri = connection
            .server
            .parse()
            .map_err(|e| bad(format!("not a URL: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("the server URL must be https://".into()));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("the server URL has no host".into()))?
            .clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| bad(format!("not a host name or IP address: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS setup: {e}")))?;
        let builder = if connection.insecure_skip_tls_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(AnyServerCertificate::new(provider))
        } else {
            let mut roots = RootCertStore::empty();
            for ca in &connection.ca {
                roots
                    .add(ca.clone())
                    .map_err(|e| bad(format!("unusable CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots)
        };
        let (config, credentials) = match connection.credentials {
            Credentials::ClientCert { chain, key } => (
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad(format!("unusable client certificate or key: {e}")))?,
                Credentials::None,
            ),
            other => (builder.with_no_client_auth(), other),
        };
        Ok(KubeClient {
            server: connection.server.clone(),
            authority: authority.to_string(),
            host,
            port,
            path_prefix: uri.path().trim_end_matches('/').to_owned(),
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
            credentials: Arc::new(credentials),
        })
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn bearer(&self) -> Result<Option<Zeroizing<String>>, KubeError> {
        match &*self.credentials {
            Credentials::Token(t) => Ok(Some(t.clone())),
            Credentials::TokenFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| KubeError::Connect {
                    server: self.server.clone(),
                    reason: format!("cannot read the token file {}: {e}", path.display()),
                })?;
                Ok(Some(Zeroizing::new(text.trim().to_owned())))
            }
            _ => Ok(None),
        }
    }

    /// Sends one request and decodes a 2xx answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
        action: &'static str,
        object: Option<(&'static str, String)>,
    ) -> Result<T, KubeError> {
        let exchange = self.exchange(method, path, body);
        let (status, bytes) = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(KubeError::Timeout {
                    server: self.server.clone(),
                    seconds: REQUEST_TIMEOUT.as_secs(),
                })
            }
        };
        let server = self.server.clone();
        match status {
            s if s.is_success() => serde_json::from_slice(&bytes).map_err(|e| KubeError::Decode {
                server,
                action,
                reason: e.to_string(),
            }),
            StatusCode::UNAUTHORIZED => Err(KubeError::Unauthorized { server, action }),
            StatusCode::FORBIDDEN => Err(KubeError::Forbidden { server, action }),
            StatusCode::NOT_FOUND if object.is_some() => {
                let (kind, name) = object.unwrap_or_default();
                Err(KubeError::NotFound { kind, name })
            }
            s => Err(KubeError::Status {
                server,
                status: s.as_u16(),
                action,
                message: status_message(&bytes),
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<(StatusCode, Bytes), KubeError> {
        let connect = |reason: String| KubeError::Connect {
            server: self.server.clone(),
            reason,
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| KubeError::Tls {
                server: self.server.clone(),
                reason: e.to_string(),
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| connect(format!("HTTP handshake: {e}")))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.path_prefix))
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "spinel-server");
        if let Some((_, content_type)) = &body {
            request = request.header(header::CONTENT_TYPE, *content_type);
        }
        if let Some(token) = self.bearer()? {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.as_str()));
        }
        let request = request
            .body(Full::new(Bytes::from(
                body.map(|(bytes, _)| bytes).unwrap_or_default(),
            )))
            .map_err(|e| connect(format!("cannot build the request: {e}")))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| connect(format!("request failed: {e}")))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| connect(format!("reading the answer failed: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        }
        .await;
        driver.abort();
        result
    }
}

impl KubeClient {
    /// Sets `data.<key>` of ConfigMap `namespace/name` to `value` with a
    /// JSON merge patch (`application/merge-patch+json`), leaving its other
    /// keys alone. The ConfigMap must exist (404: [`KubeError::NotFound`]);
    /// it is never created.
    pub async fn patch_config_map_data(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), KubeError> {
        let patch = serde_json::json!({ "data": { key: value } });
        let path = format!(
            "/api/v1/namespaces/{}/configmaps/{}",
            segment(namespace),
            segment(name)
        );
        let _: serde::de::IgnoredAny = self
            .call(
                Method::PATCH,
                &path,
                Some((patch.to_string().into_bytes(), MERGE_PATCH)),
                "patch configmaps",
                Some(("configmap", format!("{namespace}/{name}"))),
            )
            .await?;
        Ok(())
    }
}

/// The content type of a JSON merge patch (RFC 7386).
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// The `message` of a Kubernetes `Status` body, or the body's start.
fn status_message(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Status {
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Status>(bytes) {
        Ok(s) if !s.message.is_empty() => s.message,
        _ => String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
    }
}

/// One path segment, percent-encoded where it is not unreserved.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl KubeApi for KubeClient {
    async fn token_review(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<TokenReviewStatus, KubeError> {
        let body = serde_json::to_vec(&TokenReviewRequest::new(token, audiences)).map_err(|e| {
            KubeError::Decode {
                server: self.server.clone(),
                action: "create tokenreviews",
                reason: e.to_string(),
            }
        })?;
        let review: TokenReviewResponse = self
            .call(
                Method::POST,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                Some((body, "application/json")),
                "create tokenreviews",
                None,
            )
            .await?;
        Ok(review.status)
    }

    async fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, KubeError> {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}",
            segment(namespace),
            segment(name)
        );
        self.call(
            Method::GET,
            &path,
            None,
            "get pods",
            Some(("pod", format!("{namespace}/{name}"))),
        )
        .await
    }

    async fn get_node(&self, name: &str) -> Result<Node, KubeError> {
        let path = format!("/api/v1/nodes/{}", segment(name));
        self.call(
            Method::GET,
            &path,
            None,
            "get nodes",
            Some(("node", name.to_owned())),
        )
        .await
    }
}
