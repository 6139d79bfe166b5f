//! The kubelet client: `GET /pods` over HTTPS (bearer token, client
//! certificate or anonymous) or plain HTTP on the read-only port.
//!
//! One connection per request: requests are at most one per poll interval
//! (see [`super::shared`]), so pooling would buy nothing. The token file is
//! read for every request (projected tokens rotate); the CA and client
//! certificate are reloaded every `reload_interval`. The body is read up to
//! [`MAX_BODY`] bytes, parsed into the reduced pod list and dropped.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::config::{Auth, Settings, Transport, Verify};
use super::pods::PodList;
use super::shared::PodSource;
use super::{tls, K8sError};

/// The largest pod list accepted (a node's 110 pods are a few MiB).
pub const MAX_BODY: usize = 64 << 20;
/// Time allowed for one request, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Lists pods from a kubelet.
#[derive(Debug)]
pub struct KubeletClient {
    settings: Settings,
    /// `host:port`, for messages and the `Host` header.
    addr: String,
    /// TLS config and when it was loaded (secure port only).
    tls: Mutex<Option<(Instant, std::sync::Arc<rustls::ClientConfig>)>>,
}

impl KubeletClient {
    /// A client for `settings`; the TLS material is loaded now, so a bad
    /// CA or certificate file fails at startup.
    pub fn new(settings: Settings) -> Result<Self, K8sError> {
        let addr = if settings.host.contains(':') {
            format!("[{}]:{}", settings.host, settings.port)
        } else {
            format!("{}:{}", settings.host, settings.port)
        };
        let tls = match &settings.transport {
            Transport::Tls { verify, auth } => {
                Some((Instant::now(), tls::client_config(verify, auth)?))
            }
            Transport::Plain => None,
        };
        Ok(KubeletClient {
            settings,
            addr,
            tls: Mutex::new(tls),
        })
    }

    /// The TLS config, reloaded when older than `reload_interval` (a
    /// failed reload keeps the old one).
    fn tls_config(
        &self,
        verify: &Verify,
        auth: &Auth,
    ) -> Result<std::sync::Arc<rustls::ClientConfig>, K8sError> {
        let mut slot = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((loaded, config)) = slot.as_ref() {
            if loaded.elapsed() < self.settings.reload_interval {
                return Ok(config.clone());
            }
        }
        match tls::client_config(verify, auth) {
            Ok(config) => {
                *slot = Some((Instant::now(), config.clone()));
                Ok(config)
            }
            Err(e) => match slot.as_ref() {
                Some((_, old)) => {
                    tracing::warn!(error = %e, "k8s: reloading the kubelet TLS files failed; keeping the previous ones");
                    Ok(old.clone())
                }
                None => Err(e),
            },
        }
    }

    /// The bearer token, trimmed, read now.
    async fn token(path: &std::path::Path) -> Result<String, K8sError> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| K8sError::read(path, e))?;
        let token = text.trim().to_owned();
        if token.is_empty() {
            return Err(K8sError::BadCredential {
                path: path.to_owned(),
                reason: "the token file is empty".to_owned(),
            });
        }
        Ok(token)
    }

    async fn fetch_once(&self) -> Result<PodList, K8sError> {
        let s = &self.settings;
        let connect = TcpStream::connect((s.host.as_str(), s.port));
        let tcp = connect.await.map_err(|e| K8sError::Connect {
            addr: self.addr.clone(),
            source: e.into(),
        })?;
        let _ = tcp.set_nodelay(true);
        match &s.transport {
            Transport::Plain => self.get_pods(tcp, None).await,
            Transport::Tls { verify, auth } => {
                let config = self.tls_config(verify, auth)?;
                let token = match auth {
                    Auth::Token(path) => Some(Self::token(path).await?),
                    Auth::ClientCert { .. } | Auth::Anonymous => None,
                };
                let name =
                    ServerName::try_from(s.server_name.clone()).map_err(|e| K8sError::Http {
                        addr: self.addr.clone(),
                        reason: format!("{:?} is not a valid TLS server name: {e}", s.server_name),
                    })?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| K8sError::Tls {
                        addr: self.addr.clone(),
                        source: e.into(),
                        hint: tls_hint(verify, auth, &s.server_name),
                    })?;
                self.get_pods(stream, token).await
            }
        }
    }

    async fn get_pods<S>(&self, io: S, token: Option<String>) -> Result<PodList, K8sError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http_err = |e: &dyn std::fmt::Display| K8sError::Http {
            addr: self.addr.clone(),
            reason: e.to_string(),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| http_err(&e))?;
        let conn = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "k8s: kubelet connection ended");
            }
        });
        let mut request = http::Request::get("/pods")
            .header(http::header::HOST, &self.addr)
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| http_err(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http_err(&e))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut bytes: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| http_err(&e))?;
            if let Some(chunk) = frame.data_ref() {
                if bytes.len() + chunk.len() > MAX_BODY {
                    conn.abort();
                    return Err(K8sError::BadPodList {
                        addr: self.addr.clone(),
                        reason: format!("the body exceeds {MAX_BODY} bytes"),
                    });
                }
                bytes.extend_from_slice(chunk);
            }
        }
        conn.abort();
        if !status.is_success() {
            return Err(self.status_error(status, &bytes));
        }
        PodList::parse(&bytes).map_err(|e| K8sError::BadPodList {
            addr: self.addr.clone(),
            reason: e.to_string(),
        })
    }

    fn status_error(&self, status: http::StatusCode, body: &[u8]) -> K8sError {
        let detail: String = String::from_utf8_lossy(body)
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let detail = detail.trim().to_owned();
        let addr = self.addr.clone();
        match status.as_u16() {
            401 => K8sError::Unauthorized {
                addr,
                credential: match &self.settings.transport {
                    Transport::Tls { auth: Auth::Token(path), .. } => format!(
                        "the bearer token from {} (`token_path`) is invalid or expired; the kubelet needs --authentication-token-webhook",
                        path.display()
                    ),
                    Transport::Tls { auth: Auth::ClientCert { cert, .. }, .. } => format!(
                        "the client certificate {} (`certificate_path`) is not trusted by the kubelet's --client-ca-file",
                        cert.display()
                    ),
                    _ => "no credentials were sent (`use_anonymous_authentication`); the kubelet needs --anonymous-auth".to_owned(),
                },
            },
            403 => K8sError::Forbidden { addr, detail },
            code => K8sError::Status { addr, status: code, detail },
        }
    }
}

fn tls_hint(verify: &Verify, auth: &Auth, server_name: &str) -> String {
    let mut hint = match verify {
        Verify::Ca(path) => format!(
            "the kubelet's certificate must chain to the CA in {} and name {server_name:?}; set `kubelet_ca_path` to the CA that signed it, or `skip_kubelet_verification = true`",
            path.display()
        ),
        Verify::Skip => "certificate verification is off (`skip_kubelet_verification`)".to_owned(),
    };
    if let Auth::ClientCert { cert, .. } = auth {
        hint.push_str(&format!(
            "; the kubelet may also refuse the client certificate {}",
            cert.display()
        ));
    }
    hint
}

#[async_trait]
impl PodSource for KubeletClient {
    async fn fetch(&self) -> Result<PodList, K8sError> {
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, self.fetch_once()).await {
            Ok(result) => result,
            Err(_) => Err(K8sError::Timeout {
                addr: self.addr.clone(),
                seconds: REQUEST_TIMEOUT.as_secs(),
            }),
        };
        crate::metrics::kubelet_request(result.is_ok());
        result
    }
}
