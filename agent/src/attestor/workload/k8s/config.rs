//! `plugin_data` of `WorkloadAttestor "k8s"`: SPIRE's keys and defaults,
//! checked and resolved into [`Settings`].

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{Deserializer, Error as _, IgnoredAny};
use serde::Deserialize;
use spinel_config::hcl::{ConfigError, PluginDecl};

/// The service account token of the agent's pod.
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The cluster CA bundle of the agent's pod.
pub const DEFAULT_KUBELET_CA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// The kubelet's HTTPS port.
pub const DEFAULT_SECURE_PORT: u16 = 10250;
/// The environment variable naming the node, set from the downward API.
pub const DEFAULT_NODE_NAME_ENV: &str = "MY_NODE_NAME";
/// Kubelet polls while the pod or container is not listed yet.
pub const DEFAULT_MAX_POLL_ATTEMPTS: u32 = 60;
/// Time between kubelet polls.
pub const DEFAULT_POLL_RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// How often the TLS material is reloaded from disk.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// `plugin_data` of `WorkloadAttestor "k8s"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sConfig {
    /// The kubelet's read-only (plain HTTP) port; excludes
    /// `kubelet_secure_port`. 0 is unset.
    #[serde(
        default,
        deserialize_with = "spinel_config::de::option_number_or_string"
    )]
    pub kubelet_read_only_port: Option<u16>,
    /// The kubelet's HTTPS port; 10250 unless `kubelet_read_only_port` is
    /// set. 0 is unset.
    #[serde(
        default,
        deserialize_with = "spinel_config::de::option_number_or_string"
    )]
    pub kubelet_secure_port: Option<u16>,
    /// CA certificates (PEM) that verify the kubelet's certificate; default
    /// the pod's cluster CA bundle.
    #[serde(default)]
    pub kubelet_ca_path: Option<String>,
    /// Do not verify the kubelet's certificate.
    #[serde(default, deserialize_with = "spinel_config::de::bool_or_string")]
    pub skip_kubelet_verification: bool,
    /// Bearer token for the kubelet, re-read on every request (projected
    /// tokens rotate); default the pod's service account token.
    #[serde(default)]
    pub token_path: Option<String>,
    /// Client certificate (PEM) for the kubelet, instead of a token; needs
    /// `private_key_path`.
    #[serde(default)]
    pub certificate_path: Option<String>,
    /// Private key (PEM) of `certificate_path`.
    #[serde(default)]
    pub private_key_path: Option<String>,
    /// Send no credentials to the kubelet.
    #[serde(default, deserialize_with = "spinel_config::de::bool_or_string")]
    pub use_anonymous_authentication: bool,
    /// The environment variable holding the node name (read once, when the
    /// agent starts); default `MY_NODE_NAME`.
    #[serde(default)]
    pub node_name_env: Option<String>,
    /// The node name, i.e. the kubelet's host; overrides `node_name_env`.
    /// Without either, the kubelet is reached at 127.0.0.1.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Kubelet polls while the workload's pod or container is not listed
    /// yet; 0 or less means the default, 60.
    #[serde(
        default,
        deserialize_with = "spinel_config::de::option_number_or_string"
    )]
    pub max_poll_attempts: Option<i64>,
    /// Time between those polls (Go duration); default `500ms`.
    #[serde(default, deserialize_with = "spinel_config::de::option_go_duration")]
    pub poll_retry_interval: Option<Duration>,
    /// How often the kubelet CA and client certificate are reloaded from
    /// disk (Go duration); default `1m`.
    #[serde(default, deserialize_with = "spinel_config::de::option_go_duration")]
    pub reload_interval: Option<Duration>,
    /// Produce pod selectors only: the workload is attested as soon as its
    /// pod is listed, even before its container status is.
    #[serde(default, deserialize_with = "spinel_config::de::bool_or_string")]
    pub disable_container_selectors: bool,
    /// Accepted for SPIRE compatibility and ignored: Spinel has only the
    /// new (cgroup v1 and v2) container locator.
    #[serde(default, deserialize_with = "option_bool")]
    pub use_new_container_locator: Option<bool>,
    /// Log, at debug level, the cgroup and mountinfo contents used to
    /// locate containers.
    #[serde(default, deserialize_with = "spinel_config::de::bool_or_string")]
    pub verbose_container_locator_logs: bool,
    /// SPIRE's namespace labels need the API server; only `false` is
    /// accepted.
    #[serde(default, deserialize_with = "unsupported_if_true")]
    pub enable_namespace_labels: bool,
    /// SPIRE's broker-only mode; only `false` is accepted.
    #[serde(default, deserialize_with = "unsupported_if_true")]
    pub disable_kubelet_client: bool,
    /// SPIRE's image signature verification: not supported (an error).
    #[serde(default, deserialize_with = "unsupported_block")]
    pub sigstore: Option<IgnoredAny>,
    /// SPIRE's experimental options (API server cache, broker): not
    /// supported (an error).
    #[serde(default, deserialize_with = "unsupported_block")]
    pub experimental: Option<IgnoredAny>,
}

fn option_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    spinel_config::de::bool_or_string(d).map(Some)
}

fn unsupported_if_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    if spinel_config::de::bool_or_string(d)? {
        return Err(D::Error::custom(
            "not supported by Spinel (it needs the Kubernetes API server); remove it or set it to false",
        ));
    }
    Ok(false)
}

fn unsupported_block<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IgnoredAny>, D::Error> {
    IgnoredAny::deserialize(d)?;
    Err(D::Error::custom(
        "not supported by Spinel; remove this block",
    ))
}

/// How the kubelet is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP on the read-only port.
    Plain,
    /// HTTPS.
    Tls {
        /// How the kubelet's certificate is checked.
        verify: Verify,
        /// What the agent presents.
        auth: Auth,
    },
}

/// How the kubelet's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    /// Against the CA certificates in this PEM file.
    Ca(PathBuf),
    /// Not at all (`skip_kubelet_verification`).
    Skip,
}

/// How the agent authenticates to the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer` with the token in this file.
    Token(PathBuf),
    /// A client certificate and its key (PEM files).
    ClientCert {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// No credentials.
    Anonymous,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The kubelet's host: the node name, or `127.0.0.1`.
    pub host: String,
    /// The name the kubelet's certificate must carry: the node name, or
    /// without one the machine's host name.
    pub server_name: String,
    /// The kubelet's port.
    pub port: u16,
    /// HTTP or HTTPS and credentials.
    pub transport: Transport,
    /// Polls before giving up.
    pub max_poll_attempts: u32,
    /// Time between polls (and how long a pod list is reused).
    pub poll_retry_interval: Duration,
    /// Reload period of the TLS material.
    pub reload_interval: Duration,
    /// Pod selectors only.
    pub disable_container_selectors: bool,
    /// Debug logs of the container locator.
    pub verbose_container_locator_logs: bool,
}

/// What the environment gives the configuration: an env lookup (read
/// once, at build time) and the machine's host name.
pub struct Environment<'a> {
    /// Looks an environment variable up.
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// The host name, for the kubelet's certificate when no node name is
    /// configured.
    pub hostname: Option<String>,
}

impl std::fmt::Debug for Environment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

impl K8sConfig {
    /// Checks the combination of keys and resolves defaults; errors name the
    /// key and the plugin block's `file:line`.
    pub fn resolve(
        &self,
        decl: &PluginDecl,
        env: &Environment<'_>,
    ) -> Result<Settings, ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::InvalidValue {
            path: decl.path.clone(),
            line: decl.line,
            key_path: format!("plugins.{}.{}.plugin_data.{key}", decl.kind, decl.name),
            message: message.to_owned(),
        };
        let read_only = self.kubelet_read_only_port.filter(|p| *p > 0);
        let secure = self.kubelet_secure_port.filter(|p| *p > 0);
        let cert = set(&self.certificate_path);
        let key = set(&self.private_key_path);
        if read_only.is_some() && secure.is_some() {
            return Err(invalid(
                "kubelet_read_only_port",
                "cannot be set together with `kubelet_secure_port`; choose one port",
            ));
        }
        match (cert, key) {
            (Some(_), None) => {
                return Err(invalid(
                    "certificate_path",
                    "needs `private_key_path` (the certificate's key)",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "private_key_path",
                    "needs `certificate_path` (the key's certificate)",
                ))
            }
            _ => {}
        }
        if self.use_anonymous_authentication && cert.is_some() {
            return Err(invalid(
                "use_anonymous_authentication",
                "cannot be combined with `certificate_path`; choose one way to authenticate",
            ));
        }
        let transport = if read_only.is_some() {
            if cert.is_some() {
                return Err(invalid(
                    "certificate_path",
                    "is for the secure port; the read-only port takes no client certificate",
                ));
            }
            Transport::Plain
        } else {
            let verify = if self.skip_kubelet_verification {
                Verify::Skip
            } else {
                Verify::Ca(
                    set(&self.kubelet_ca_path)
                        .unwrap_or(DEFAULT_KUBELET_CA_PATH)
                        .into(),
                )
            };
            let auth = match (cert, key) {
                _ if self.use_anonymous_authentication => Auth::Anonymous,
                (Some(cert), Some(key)) => Auth::ClientCert {
                    cert: cert.into(),
                    key: key.into(),
                },
                _ => Auth::Token(set(&self.token_path).unwrap_or(DEFAULT_TOKEN_PATH).into()),
            };
            Transport::Tls { verify, auth }
        };
        let node_name = match set(&self.node_name) {
            Some(n) => Some(n.to_owned()),
            None => {
                let var = set(&self.node_name_env).unwrap_or(DEFAULT_NODE_NAME_ENV);
                (env.var)(var).filter(|v| !v.is_empty())
            }
        };
        let (host, server_name) = match node_name {
            Some(n) => (n.clone(), n),
            None => (
                "127.0.0.1".to_owned(),
                env.hostname
                    .clone()
                    .unwrap_or_else(|| "127.0.0.1".to_owned()),
            ),
        };
        let max_poll_attempts = match self.max_poll_attempts {
            Some(n) if n > 0 => u32::try_from(n).unwrap_or(u32::MAX),
            _ => DEFAULT_MAX_POLL_ATTEMPTS,
        };
        Ok(Settings {
            host,
            server_name,
            port: read_only.or(secure).unwrap_or(DEFAULT_SECURE_PORT),
            transport,
            max_poll_attempts,
            poll_retry_interval: self
                .poll_retry_interval
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_POLL_RETRY_INTERVAL),
            reload_interval: self
                .reload_interval
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_RELOAD_INTERVAL),
            disable_container_selectors: self.disable_container_selectors,
            verbose_container_locator_logs: self.verbose_container_locator_logs,
        })
    }
}

#[cfg(test)]
mod tests;
