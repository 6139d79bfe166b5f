//! How to reach one cluster's API server: a kubeconfig file, or the
//! in-cluster service account.
//!
//! From a kubeconfig (YAML, read with `serde_yaml_ng`) the current context
//! is used: its cluster's `server`, `certificate-authority-data` or
//! `certificate-authority` and `insecure-skip-tls-verify`, and its user's
//! `token`, `tokenFile` or `client-certificate(-data)` with
//! `client-key(-data)`. Relative file paths are relative to the kubeconfig's
//! directory, as kubectl reads them. `exec` and `auth-provider` users need
//! external programs and are refused.
//!
//! In cluster: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
//! the CA in `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt` and the
//! token file beside it (re-read for every request: kubelet rotates it).

use std::path::{Path, PathBuf};

use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::KubeError;

/// Where a pod's service account files are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How the server authenticates to the API server.
pub enum Credentials {
    /// No credentials (anonymous).
    None,
    /// A bearer token.
    Token(Zeroizing<String>),
    /// A bearer token read from this file at every request.
    TokenFile(PathBuf),
    /// A client certificate chain and its key.
    ClientCert {
        /// The chain, leaf first.
        chain: Vec<CertificateDer<'static>>,
        /// The private key.
        key: PrivateKeyDer<'static>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::TokenFile(p) => f.debug_tuple("TokenFile").field(p).finish(),
            Credentials::ClientCert { chain, .. } => f
                .debug_struct("ClientCert")
                .field("chain_len", &chain.len())
                .field("key", &"<redacted>")
                .finish(),
        }
    }
}

/// Everything needed to talk to one API server.
#[derive(Debug)]
pub struct ClusterConnection {
    /// The server URL, `https://host[:port]` (a path prefix is kept).
    pub server: String,
    /// CA certificates the server's certificate must chain to (empty: the
    /// server cannot be verified, which is an error unless insecure).
    pub ca: Vec<CertificateDer<'static>>,
    /// Skip verification of the server's certificate.
    pub insecure_skip_tls_verify: bool,
    /// The server's credentials.
    pub credentials: Credentials,
}

#[derive(Debug, Deserialize)]
struct KubeConfig {
    #[serde(default, rename = "current-context")]
    current_context: String,
    #[serde(default)]
    clusters: Vec<Named<ClusterSection>>,
    #[serde(default)]
    contexts: Vec<Named<ContextSection>>,
    #[serde(default)]
    users: Vec<Named<UserSection>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: T,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterSection {
    #[serde(default)]
    server: String,
    #[serde(default)]
    certificate_authority: Option<String>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
struct ContextSection {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: String,
}

#[derive(Default, Deserialize)]
struct UserSection {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(default, rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(default, rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(default, rename = "client-key")]
    client_key: Option<String>,
    #[serde(default, rename = "client-key-data")]
    client_key_data: Option<String>,
    #[serde(default)]
    exec: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "auth-provider")]
    auth_provider: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    username: Option<String>,
}

impl std::fmt::Debug for UserSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserSection(<redacted>)")
    }
}

impl ClusterConnection {
    /// Reads the kubeconfig at `path` and resolves its current context.
    pub fn from_kubeconfig(path: &Path) -> Result<Self, KubeError> {
        let bad = |reason: String| KubeError::Kubeconfig {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_kubeconfig(&text, base).map_err(bad)
    }

    /// Resolves kubeconfig `text`; relative paths are taken from `base`.
    pub fn parse_kubeconfig(text: &str, base: &Path) -> Result<Self, String> {
        let config: KubeConfig =
            serde_yaml_ng::from_str(text).map_err(|e| format!("not a kubeconfig: {e}"))?;
        if config.current_context.is_empty() {
            return Err("no current-context is set".into());
        }
        let context = &config
            .contexts
            .iter()
            .find(|c| c.name == config.current_context)
            .ok_or_else(|| {
                format!(
                    "current-context {:?} is not among its contexts",
                    config.current_context
                )
            })?
            .value;
        let cluster = &config
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .ok_or_else(|| {
                format!(
                    "context {:?} names cluster {:?}, which is not among its clusters",
                    config.current_context, context.cluster
                )
            })?
            .value;
        let server = cluster.server.trim_end_matches('/').to_owned();
        if server.is_empty() {
            return Err(format!("cluster {:?} has no server", context.cluster));
        }
        if !server.starts_with("https://") {
            return Err(format!(
                "cluster {:?}: server {server:?} must be an https:// URL",
                context.cluster
            ));
        }
        let ca = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) if !data.is_empty() => {
                let pem = decode_b64(data).map_err(|e| {
                    format!(
                        "cluster {:?}: certificate-authority-data {e}",
                        context.cluster
                    )
                })?;
                pem_certs(&pem).map_err(|e| {
                    format!(
                        "cluster {:?}: certificate-authority-data {e}",
                        context.cluster
                    )
                })?
            }
            (_, Some(file)) if !file.is_empty() => read_certs(&resolve(base, file))
                .map_err(|e| format!("cluster {:?}: certificate-authority {e}", context.cluster))?,
            _ => Vec::new(),
        };
        if ca.is_empty() && !cluster.insecure_skip_tls_verify {
            return Err(format!(
                "cluster {:?} has neither certificate-authority(-data) nor insecure-skip-tls-verify",
                context.cluster
            ));
        }
        let credentials = if context.user.is_empty() {
            Credentials::None
        } else {
            let user = &config
                .users
                .iter()
                .find(|u| u.name == context.user)
                .ok_or_else(|| {
                    format!(
                        "context {:?} names user {:?}, which is not among its users",
                        config.current_context, context.user
                    )
                })?
                .value;
            user_credentials(user, base).map_err(|e| format!("user {:?}: {e}", context.user))?
        };
        Ok(ClusterConnection {
            server,
            ca,
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
            credentials,
        })
    }

    /// The in-cluster configuration: `host`/`port` are the values of
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`, `dir` holds `token` and `ca.crt`.
    pub fn in_cluster(
        host: Option<String>,
        port: Option<String>,
        dir: &Path,
    ) -> Result<Self, KubeError> {
        let (Some(host), Some(port)) = (
            host.filter(|h| !h.is_empty()),
            port.filter(|p| !p.is_empty()),
        ) else {
            return Err(KubeError::InCluster(
                "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set (or set kube_config_file)".into(),
            ));
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let ca_path = dir.join("ca.crt");
        let ca = read_certs(&ca_path)
            .map_err(|e| KubeError::InCluster(format!("{}: {e}", ca_path.display())))?;
        let token = dir.join("token");
        if !token.is_file() {
            return Err(KubeError::InCluster(format!(
                "{} is missing",
                token.display()
            )));
        }
        Ok(ClusterConnection {
            server: format!("https://{host}:{port}"),
            ca,
            insecure_skip_tls_verify: false,
            credentials: Credentials::TokenFile(token),
        })
    }
}

fn user_credentials(user: &UserSection, base: &Path) -> Result<Credentials, String> {
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err("exec and auth-provider credentials run external programs, which Spinel does not; use token, tokenFile or a client certificate".into());
    }
    if user.username.is_some() {
        return Err("basic authentication (username/password) is not supported".into());
    }
    if let Some(token) = user.token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Credentials::Token(Zeroizing::new(token.trim().to_owned())));
    }
    if let Some(file) = user.token_file.as_ref().filter(|t| !t.is_empty()) {
        let path = resolve(base, file);
        if !path.is_file() {
            return Err(format!("tokenFile {} does not exist", path.display()));
        }
        return Ok(Credentials::TokenFile(path));
    }
    let cert_pem = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(d), _) if !d.is_empty() => {
            Some(decode_b64(d).map_err(|e| format!("client-certificate-data {e}"))?)
        }
        (_, Some(f)) if !f.is_empty() => {
            let p = resolve(base, f);
            Some(
                std::fs::read(&p)
                    .map_err(|e| format!("client-certificate {}: {e}", p.display()))?,
            )
        }
        _ => None,
    };
    let key_pem = match (&user.client_key_data, &user.client_key) {
        (Some(d), _) if !d.is_empty() => Some(Zeroizing::new(
            decode_b64(d).map_err(|e| format!("client-key-data {e}"))?,
        )),
        (_, Some(f)) if !f.is_empty() => {
            let p = resolve(base, f);
            Some(Zeroizing::new(
                std::fs::read(&p).map_err(|e| format!("client-key {}: {e}", p.display()))?,
            ))
        }
        _ => None,
    };
    match (cert_pem, key_pem) {
        (None, None) => Ok(Credentials::None),
        (Some(cert), Some(key)) => {
            let chain = pem_certs(&cert).map_err(|e| format!("client certificate {e}"))?;
            if chain.is_empty() {
                return Err("client certificate holds no certificate".into());
            }
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|_| "client key holds no PEM private key".to_owned())?;
            Ok(Credentials::ClientCert { chain, key })
        }
        (Some(_), None) => Err("client-certificate without client-key".into()),
        (None, Some(_)) => Err("client-key without client-certificate".into()),
    }
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = PathBuf::from(file);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

fn decode_b64(data: &str) -> Result<Vec<u8>, String> {
    let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| "is not base64".to_owned())
}

fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    pem_certs(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
