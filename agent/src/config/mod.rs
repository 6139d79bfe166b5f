//! The agent's configuration: SPIRE's `agent.conf` shape.
//!
//! ```hcl
//! agent {
//!     trust_domain = "example.org"
//!     server_address = "127.0.0.1"
//!     server_port = "8081"
//!     socket_path = "/tmp/spinel-agent/public/api.sock"
//!     data_dir = "./.data"
//!     trust_bundle_path = "./bootstrap.pem"
//! }
//! plugins {
//!     KeyManager "disk" { plugin_data { directory = "./.data" } }
//!     NodeAttestor "join_token" { plugin_data {} }
//!     WorkloadAttestor "unix" { plugin_data {} }
//! }
//! ```
//!
//! The node attestor is `join_token` (the token from `-joinToken` or
//! `agent.join_token`) or `k8s_psat`:
//!
//! ```hcl
//! NodeAttestor "k8s_psat" {
//!     plugin_data {
//!         cluster = "demo"                                  # required
//!         token_path = "/var/run/secrets/tokens/spire-agent" # the default
//!     }
//! }
//! ```
//!
//! Unknown keys and unsupported plugins are errors naming the key or plugin
//! and the file line (through [`spinel_config`]). Flags of `run` override
//! the file ([`Overrides`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use spinel_config::hcl::{single_plugin, ConfigFile, PluginDecl};
pub use spinel_config::health::HealthChecks;
use spinel_config::logging::LogFormat;
pub use spinel_config::telemetry::Telemetry;
use spinel_spiffe::{SpiffeId, TrustDomain};

use crate::attestor::node::{k8s_psat, K8sPsatConfig, NodeAttestorConfig, X509popConfig};

mod servers;
mod socket_paths;

pub use servers::ServerTarget;
pub use socket_paths::check_admin_socket_path;

/// SPIRE's default is `/tmp/spire-agent/public/api.sock`; Spinel's mirrors it.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/spinel-agent/public/api.sock";

/// A configuration problem, naming what and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file does not parse, or has unknown keys or plugins.
    #[error(transparent)]
    File(#[from] spinel_config::ConfigError),
    /// A value is present but unacceptable.
    #[error("{path}: agent.{key}: {reason}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A plugin setting is missing or unacceptable.
    #[error("{location}: {message}")]
    Plugin {
        /// `file:line` of the plugin.
        location: String,
        /// What is wrong, naming the key.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    trust_domain: Option<String>,
    server_address: Option<String>,
    #[serde(
        default,
        deserialize_with = "spinel_config::de::option_number_or_string"
    )]
    server_port: Option<u16>,
    server_addresses: Option<Vec<String>>,
    socket_path: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    log_file: Option<PathBuf>,
    trust_bundle_path: Option<PathBuf>,
    trust_bundle_format: Option<String>,
    insecure_bootstrap: Option<bool>,
    join_token: Option<String>,
    admin_socket_path: Option<PathBuf>,
    authorized_delegates: Option<Vec<String>>,
    log_selectors: Option<Vec<String>>,
    rebootstrap_mode: Option<String>,
    #[serde(default, deserialize_with = "spinel_config::de::option_go_duration")]
    rebootstrap_delay: Option<Duration>,
    connection_limits: Option<ConnectionLimitsSection>,
    sds: Option<SdsSection>,
}

/// `sds { ... }` of `agent { ... }`: Envoy SDS resource names (SPIRE's
/// block, names and defaults).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SdsSection {
    default_svid_name: Option<String>,
    default_bundle_name: Option<String>,
    default_all_bundles_name: Option<String>,
    disable_spiffe_cert_validation: Option<bool>,
}

/// `connection_limits { ... }` of `agent { ... }`: caps on the Workload
/// API socket (Spinel's own block; SPIRE has none).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConnectionLimitsSection {
    #[serde(
        default,
        deserialize_with = "spinel_config::de::option_number_or_string"
    )]
    max_connections: Option<usize>,
    #[serde(
        default,
        deserialize_with = "spinel_config::de::option_number_or_string"
    )]
    max_connections_per_uid: Option<usize>,
    #[serde(default, deserialize_with = "spinel_config::de::option_go_duration")]
    first_request_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DiskKeyManagerData {
    directory: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoData {}

/// `plugin_data` of `NodeAttestor "k8s_psat"`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct K8sPsatData {
    /// The cluster name, as configured on the server (required).
    #[serde(default)]
    cluster: Option<String>,
    /// The projected token (default `/var/run/secrets/tokens/spire-agent`).
    #[serde(default)]
    token_path: Option<PathBuf>,
}

fn k8s_psat_config(p: &PluginDecl) -> Result<K8sPsatConfig, ConfigError> {
    let data: K8sPsatData = p.data()?;
    let cluster = data
        .cluster
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ConfigError::Plugin {
            location: p.location(),
            message: "NodeAttestor \"k8s_psat\": `plugins.NodeAttestor.k8s_psat.plugin_data.cluster` is required".into(),
        })?;
    Ok(K8sPsatConfig {
        cluster,
        token_path: data
            .token_path
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(k8s_psat::DEFAULT_TOKEN_PATH)),
    })
}

/// `plugin_data` of `NodeAttestor "x509pop"` (SPIRE's keys).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct X509popData {
    /// The node's private key, PEM (required).
    #[serde(default)]
    private_key_path: Option<PathBuf>,
    /// The node's certificate and any intermediates, PEM (required).
    #[serde(default)]
    certificate_path: Option<PathBuf>,
    /// More intermediates, PEM.
    #[serde(default)]
    intermediates_path: Option<PathBuf>,
}

fn x509pop_config(p: &PluginDecl) -> Result<X509popConfig, ConfigError> {
    let data: X509popData = p.data()?;
    let required = |value: Option<PathBuf>, key: &str| {
        value
            .filter(|v| !v.as_os_str().is_empty())
            .ok_or_else(|| ConfigError::Plugin {
                location: p.location(),
                message: format!(
                    "NodeAttestor \"x509pop\": `plugins.NodeAttestor.x509pop.plugin_data.{key}` is required"
                ),
            })
    };
    Ok(X509popConfig {
        private_key_path: required(data.private_key_path, "private_key_path")?,
        certificate_path: required(data.certificate_path, "certificate_path")?,
        intermediates_path: data
            .intermediates_path
            .filter(|v| !v.to_string_lossy().trim().is_empty()),
    })
}

/// Where the agent keeps its own private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyManagerConfig {
    /// On disk in `directory` (mode 0600): a restart needs no new token.
    Disk {
        /// The directory.
        directory: PathBuf,
    },
    /// In memory: a restart must attest again.
    Memory,
}

/// SPIRE's `agent.rebootstrap_mode`: whether the agent may throw away the
/// state in `data_dir` and attest again from the bootstrap trust bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RebootstrapMode {
    /// Never (the default): unusable state stops the agent with an error
    /// naming the file; an operator decides.
    #[default]
    Never,
    /// When the stored state cannot be used (corrupt or truncated files, an
    /// expired agent SVID, a bundle the server no longer matches) and the
    /// agent has a way to attest (a join token or a reattestable attestor).
    Auto,
    /// As `auto`, and also while running when the server refuses the agent
    /// SVID for good (evicted, superseded, expired).
    Always,
}

impl RebootstrapMode {
    /// Parses `never`, `auto` or `always`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "never" | "" => Some(RebootstrapMode::Never),
            "auto" => Some(RebootstrapMode::Auto),
            "always" => Some(RebootstrapMode::Always),
            _ => None,
        }
    }

    /// Whether unusable state on disk may be discarded.
    pub fn allows(self) -> bool {
        self != RebootstrapMode::Never
    }
}

/// The `run` flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `-joinToken`.
    pub join_token: Option<String>,
    /// `-dataDir`.
    pub data_dir: Option<PathBuf>,
    /// `-logLevel`.
    pub log_level: Option<String>,
    /// `-serverAddress`.
    pub server_address: Option<String>,
    /// `-serverPort`.
    pub server_port: Option<u16>,
    /// `-socketPath`.
    pub socket_path: Option<PathBuf>,
    /// `-trustBundle`.
    pub trust_bundle_path: Option<PathBuf>,
    /// `-trustDomain`.
    pub trust_domain: Option<String>,
    /// `-insecureBootstrap`.
    pub insecure_bootstrap: bool,
    /// `-rebootstrapMode`.
    pub rebootstrap_mode: Option<String>,
    /// `-rebootstrapDelay`.
    pub rebootstrap_delay: Option<Duration>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// The servers, in configured order (`server_address` +
    /// `server_port`, or `server_addresses`); never empty.
    pub servers: Vec<ServerTarget>,
    /// The Workload API socket.
    pub socket_path: PathBuf,
    /// Where the agent SVID and bundle are kept.
    pub data_dir: PathBuf,
    /// Log level (SPIRE spelling).
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Log file, if not stderr.
    pub log_file: Option<PathBuf>,
    /// The bootstrap bundle file.
    pub trust_bundle_path: Option<PathBuf>,
    /// `pem` or `spiffe`.
    pub trust_bundle_format: String,
    /// Trust the server without a bundle on first contact.
    pub insecure_bootstrap: bool,
    /// The join token, if any (a secret: never logged).
    pub join_token: Option<String>,
    /// The node attestor.
    pub node_attestor: NodeAttestorConfig,
    /// The key manager.
    pub key_manager: KeyManagerConfig,
    /// The `WorkloadAttestor` plugin declarations.
    pub workload_attestors: Vec<PluginDecl>,
    /// The admin socket (debug API), if enabled: never in the Workload
    /// API socket's directory, since workloads can reach that one.
    pub admin_socket_path: Option<PathBuf>,
    /// `agent.authorized_delegates`: the SPIFFE IDs that may use the
    /// Delegated Identity API on the admin socket (empty: nobody may).
    pub authorized_delegates: Vec<SpiffeId>,
    /// Selector kinds (`k8s:ns`) or types (`unix`) whose values denial logs
    /// show; `None` means Spinel's default list
    /// ([`crate::workload_api::DEFAULT_LOG_SELECTORS`]).
    pub log_selectors: Option<Vec<String>>,
    /// `agent.rebootstrap_mode` (default `never`).
    pub rebootstrap_mode: RebootstrapMode,
    /// `agent.rebootstrap_delay` (default 10m): how long the server must
    /// keep presenting a certificate the agent's bundle does not trust
    /// before the agent rebootstraps from `trust_bundle_path`.
    pub rebootstrap_delay: Duration,
    /// `agent.connection_limits`: caps on the Workload API socket.
    pub connection_limits: spinel_transport::ConnectionLimits,
    /// `health_checks`: the HTTP health listener (off by default).
    pub health_checks: HealthChecks,
    /// `agent.sds`: Envoy SDS resource names (SPIRE's defaults).
    pub sds: crate::workload_api::SdsConfig,
    /// `telemetry`: the Prometheus metrics listener, if any (its
    /// `warnings` are logged at start).
    pub telemetry: Telemetry,
}

/// SPIRE's default `rebootstrap_delay`.
pub const DEFAULT_REBOOTSTRAP_DELAY: Duration = Duration::from_secs(600);

impl AgentConfig {
    /// Reads `path`, applies `overrides`, validates.
    pub fn load(path: &Path, overrides: &Overrides, expand_env: bool) -> Result<Self, ConfigError> {
        let file = if expand_env {
            ConfigFile::read_expand_env(path, |name| std::env::var(name).ok())?
        } else {
            ConfigFile::read(path)?
        };
        Self::from_file(&file, overrides)
    }

    /// Resolves an already-read config file.
    pub fn from_file(file: &ConfigFile, overrides: &Overrides) -> Result<Self, ConfigError> {
        file.check_top_level(&["agent", "plugins", "health_checks", "telemetry"])?;
        let section: AgentSection = file.section("agent")?;
        let health_checks = HealthChecks::from_section(file.optional_section("health_checks")?);
        let telemetry = Telemetry::from_file(file)?;
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid {
            path: file.path().to_owned(),
            key,
            reason,
        };
        let servers = servers(&section, overrides).map_err(|(key, why)| invalid(key, why))?;
        let td_text = overrides
            .trust_domain
            .clone()
            .or(section.trust_domain)
            .ok_or_else(|| invalid("trust_domain", "is required".into()))?;
        let trust_domain = spinel_spiffe::id::parse_trust_domain(&td_text)
            .map_err(|e| invalid("trust_domain", e.to_string()))?;
        let trust_bundle_format = section.trust_bundle_format.unwrap_or_else(|| "pem".into());
        if !matches!(trust_bundle_format.as_str(), "pem" | "spiffe") {
            return Err(invalid(
                "trust_bundle_format",
                format!("{trust_bundle_format:?} is not one of \"pem\", \"spiffe\""),
            ));
        }
        let log_level = overrides
            .log_level
            .clone()
            .or(section.log_level)
            .unwrap_or_else(|| "INFO".into());
        spinel_config::logging::parse_level(&log_level)
            .map_err(|e| invalid("log_level", e.to_string()))?;
        let data_dir = overrides
            .data_dir
            .clone()
            .or(section.data_dir)
            .unwrap_or_else(|| PathBuf::from("./.data"));
        let insecure_bootstrap =
            overrides.insecure_bootstrap || section.insecure_bootstrap.unwrap_or(false);
        let trust_bundle_path = overrides
            .trust_bundle_path
            .clone()
            .or(section.trust_bundle_path);

        let plugins = file.plugins()?;
        let mut key_manager = None;
        let mut node_attestor = None;
        let mut workload_attestors = Vec::new();
        for p in plugins.iter().filter(|p| p.enabled) {
            match (p.kind.as_str(), p.name.as_str()) {
                ("KeyManager", "disk") => {
                    let data: DiskKeyManagerData = p.data()?;
                    key_manager = Some(KeyManagerConfig::Disk {
                        directory: data.directory.unwrap_or_else(|| data_dir.clone()),
                    });
                }
                ("KeyManager", "memory") => {
                    let _: NoData = p.data()?;
                    key_manager = Some(KeyManagerConfig::Memory);
                }
                ("KeyManager", _) => return Err(p.unsupported(&["disk", "memory"]).into()),
                ("NodeAttestor", "join_token") => {
                    let _: NoData = p.data()?;
                    node_attestor = Some(NodeAttestorConfig::JoinToken);
                }
                ("NodeAttestor", "k8s_psat") => {
                    node_attestor = Some(NodeAttestorConfig::K8sPsat(k8s_psat_config(p)?));
                }
                ("NodeAttestor", "x509pop") => {
                    node_attestor = Some(NodeAttestorConfig::X509pop(x509pop_config(p)?));
                }
                ("NodeAttestor", _) => {
                    return Err(p.unsupported(&["join_token", "k8s_psat", "x509pop"]).into())
                }
                ("WorkloadAttestor", _) => workload_attestors.push(p.clone()),
                _ => {
                    return Err(p
                        .unsupported_kind(&["KeyManager", "NodeAttestor", "WorkloadAttestor"])
                        .into())
                }
            }
        }
        single_plugin(file.path(), &plugins, "KeyManager")?;
        single_plugin(file.path(), &plugins, "NodeAttestor")?;
        let key_manager = key_manager
            .ok_or_else(|| invalid("plugins", "a KeyManager plugin is required".into()))?;
        let node_attestor = node_attestor
            .ok_or_else(|| invalid("plugins", "a NodeAttestor plugin is required".into()))?;
        if trust_bundle_path.is_none() && !insecure_bootstrap {
            // Allowed when the agent already holds a bundle from an earlier run.
            tracing::debug!("no trust_bundle_path: relying on the bundle stored in data_dir");
        }
        let socket_path = overrides
            .socket_path
            .clone()
            .or(section.socket_path)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH));
        if let Some(admin) = &section.admin_socket_path {
            check_admin_socket_path(&socket_path, admin)
                .map_err(|reason| invalid("admin_socket_path", reason))?;
        }
        let authorized_delegates = section
            .authorized_delegates
            .iter()
            .flatten()
            .map(|id| {
                spinel_spiffe::id::parse_id(id).map_err(|e| {
                    invalid(
                        "authorized_delegates",
                        format!("{id:?} is not a SPIFFE ID: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(kinds) = &section.log_selectors {
            if let Some(bad) = kinds.iter().find(|k| {
                k.is_empty() || k.split(':').count() > 2 || k.contains(char::is_whitespace)
            }) {
                return Err(invalid(
                    "log_selectors",
                    format!("{bad:?} is not a selector type (\"unix\") or kind (\"k8s:ns\")"),
                ));
            }
        }
        let mode_text = overrides
            .rebootstrap_mode
            .clone()
            .or(section.rebootstrap_mode);
        let rebootstrap_mode = match mode_text.as_deref() {
            None => RebootstrapMode::Never,
            Some(text) => RebootstrapMode::parse(text).ok_or_else(|| {
                invalid(
                    "rebootstrap_mode",
                    format!("{text:?} is not one of \"never\", \"auto\", \"always\""),
                )
            })?,
        };
        if rebootstrap_mode.allows() && insecure_bootstrap {
            return Err(invalid(
                "rebootstrap_mode",
                format!(
                    "{:?} needs a trust_bundle_path to bootstrap from again; it cannot be used with insecure_bootstrap",
                    mode_text.as_deref().unwrap_or_default()
                ),
            ));
        }
        let limits = section.connection_limits.unwrap_or_default();
        let defaults = crate::workload_api::DEFAULT_LIMITS;
        let positive = |key: &'static str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(invalid(key, "must be at least 1".into())),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let connection_limits = spinel_transport::ConnectionLimits {
            max_connections: positive(
                "connection_limits.max_connections",
                limits.max_connections,
                defaults.max_connections,
            )?,
            max_connections_per_peer: positive(
                "connection_limits.max_connections_per_uid",
                limits.max_connections_per_uid,
                defaults.max_connections_per_peer,
            )?,
            first_request_timeout: match limits.first_request_timeout {
                Some(d) if d.is_zero() => {
                    return Err(invalid(
                        "connection_limits.first_request_timeout",
                        "must be longer than 0s".into(),
                    ))
                }
                Some(d) => d,
                None => defaults.first_request_timeout,
            },
        };
        let sds_section = section.sds.unwrap_or_default();
        let sds_defaults = crate::workload_api::SdsConfig::default();
        let sds = crate::workload_api::SdsConfig {
            default_svid_name: sds_section
                .default_svid_name
                .unwrap_or(sds_defaults.default_svid_name),
            default_bundle_name: sds_section
                .default_bundle_name
                .unwrap_or(sds_defaults.default_bundle_name),
            default_all_bundles_name: sds_section
                .default_all_bundles_name
                .unwrap_or(sds_defaults.default_all_bundles_name),
            disable_spiffe_cert_validation: sds_section
                .disable_spiffe_cert_validation
                .unwrap_or(sds_defaults.disable_spiffe_cert_validation),
        };
        if sds.default_all_bundles_name == sds.default_bundle_name {
            // SPIRE 1.13 warns the same way (and will refuse it later).
            tracing::warn!(
                name = %sds.default_bundle_name,
                "agent.sds: default_bundle_name and default_all_bundles_name have the same value; default_all_bundles_name will be ignored"
            );
        }
        Ok(AgentConfig {
            sds,
            connection_limits,
            health_checks,
            telemetry,
            rebootstrap_mode,
            rebootstrap_delay: overrides
                .rebootstrap_delay
                .or(section.rebootstrap_delay)
                .unwrap_or(DEFAULT_REBOOTSTRAP_DELAY),
            trust_domain,
            servers,
            socket_path,
            data_dir,
            log_level,
            log_format: section.log_format.unwrap_or_default(),
            log_file: section.log_file,
            trust_bundle_path,
            trust_bundle_format,
            insecure_bootstrap,
            join_token: overrides
                .join_token
                .clone()
                .or(section.join_token)
                .filter(|t| !t.is_empty()),
            node_attestor,
            key_manager,
            workload_attestors,
            admin_socket_path: section.admin_socket_path,
            authorized_delegates,
            log_selectors: section.log_selectors,
        })
    }
}

/// The servers from `-serverAddress`/`-serverPort`, `server_address` +
/// `server_port` or `server_addresses`; the error names the key.
fn servers(
    section: &AgentSection,
    overrides: &Overrides,
) -> Result<Vec<ServerTarget>, (&'static str, String)> {
    let port = overrides
        .server_port
        .or(section.server_port)
        .unwrap_or(8081);
    let one = |address: &str| {
        // SPIRE's key holds a host or an address, never a port.
        Ok(vec![ServerTarget {
            host: address
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        }])
    };
    if let Some(address) = overrides
        .server_address
        .as_deref()
        .filter(|a| !a.is_empty())
    {
        return one(address);
    }
    let address = section.server_address.as_deref().filter(|a| !a.is_empty());
    match (address, &section.server_addresses) {
        (Some(_), Some(_)) => Err((
            "server_addresses",
            "set either server_address (one server) or server_addresses (a list), not both".into(),
        )),
        (Some(address), None) => one(address),
        (None, Some(list)) if list.is_empty() => {
            Err(("server_addresses", "needs at least one address".into()))
        }
        (None, Some(list)) => list
            .iter()
            .map(|text| ServerTarget::parse(text, port))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| ("server_addresses", why)),
        (None, None) => Err((
            "server_address",
            "is required (or server_addresses, a list)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        let file = ConfigFile::parse(Path::new("agent.conf"), text)?;
        AgentConfig::from_file(&file, &Overrides::default())
    }

    const GOOD: &str = r#"agent {
    trust_domain = "example.org"
    server_address = "127.0.0.1"
    server_port = "8081"
    data_dir = "/tmp/x"
    trust_bundle_path = "/tmp/b.pem"
}
plugins {
    KeyManager "disk" {
        plugin_data {
            directory = "/tmp/x"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
"#;

    #[test]
    fn parses_spire_shape() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.trust_domain.as_str(), "example.org");
        assert_eq!(
            c.servers,
            vec![ServerTarget {
                host: "127.0.0.1".into(),
                port: 8081
            }]
        );
        assert_eq!(c.socket_path, PathBuf::from(DEFAULT_SOCKET_PATH));
        assert_eq!(
            c.key_manager,
            KeyManagerConfig::Disk {
                directory: "/tmp/x".into()
            }
        );
        assert_eq!(c.workload_attestors.len(), 1);
    }

    #[test]
    fn rebootstrap_mode_values() {
        assert_eq!(
            parse(GOOD).unwrap().rebootstrap_mode,
            RebootstrapMode::Never
        );
        for (text, mode) in [
            ("never", RebootstrapMode::Never),
            ("auto", RebootstrapMode::Auto),
            ("always", RebootstrapMode::Always),
        ] {
            let conf = GOOD.replace(
                "    data_dir = \"/tmp/x\"\n",
                &format!("    data_dir = \"/tmp/x\"\n    rebootstrap_mode = \"{text}\"\n"),
            );
            assert_eq!(parse(&conf).unwrap().rebootstrap_mode, mode);
        }
        let bad = GOOD.replace(
            "    data_dir = \"/tmp/x\"\n",
            "    data_dir = \"/tmp/x\"\n    rebootstrap_mode = \"sometimes\"\n",
        );
        let err = parse(&bad).unwrap_err().to_string();
        assert!(
            err.contains("rebootstrap_mode") && err.contains("sometimes"),
            "{err}"
        );
    }

    #[test]
    fn rebootstrap_delay_is_a_go_duration_and_needs_a_bundle() {
        let at = "    data_dir = \"/tmp/x\"\n";
        assert_eq!(
            parse(GOOD).unwrap().rebootstrap_delay,
            DEFAULT_REBOOTSTRAP_DELAY
        );
        let conf = GOOD.replace(at, &format!("{at}    rebootstrap_delay = \"90s\"\n"));
        assert_eq!(
            parse(&conf).unwrap().rebootstrap_delay,
            Duration::from_secs(90)
        );
        let bad = GOOD.replace(at, &format!("{at}    rebootstrap_delay = \"soon\"\n"));
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("rebootstrap_delay"), "{err}");
        let flags = Overrides {
            rebootstrap_mode: Some("always".into()),
            rebootstrap_delay: Some(Duration::from_secs(5)),
            ..Overrides::default()
        };
        let file = ConfigFile::parse(Path::new("agent.conf"), &conf).unwrap();
        let c = AgentConfig::from_file(&file, &flags).unwrap();
        assert_eq!(c.rebootstrap_mode, RebootstrapMode::Always);
        assert_eq!(c.rebootstrap_delay, Duration::from_secs(5));
        let insecure = GOOD.replace(
            at,
            &format!("{at}    rebootstrap_mode = \"auto\"\n    insecure_bootstrap = true\n"),
        );
        let err = parse(&insecure).unwrap_err().to_string();
        assert!(
            err.contains("rebootstrap_mode") && err.contains("insecure_bootstrap"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_name_key_and_line() {
        let bad = GOOD.replace("    data_dir = \"/tmp/x\"\n", "    data_dri = \"/tmp/x\"\n");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("data_dri") && err.contains(":5"), "{err}");
    }

    #[test]
    fn unsupported_plugins_are_named() {
        let bad = GOOD.replace("NodeAttestor \"join_token\"", "NodeAttestor \"aws_iid\"");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("aws_iid"), "{err}");
    }

    #[test]
    fn sds_block_has_spire_names_and_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.sds, crate::workload_api::SdsConfig::default());
        assert_eq!(
            (
                c.sds.default_svid_name.as_str(),
                c.sds.default_bundle_name.as_str(),
                c.sds.default_all_bundles_name.as_str(),
                c.sds.disable_spiffe_cert_validation
            ),
            ("default", "ROOTCA", "ALL", false)
        );
        let at = "    trust_bundle_path = \"/tmp/b.pem\"\n";
        let set = GOOD.replace(
            at,
            &format!(
                "{at}    sds {{\n        default_svid_name = \"svid\"\n        default_bundle_name = \"bundle\"\n        default_all_bundles_name = \"every\"\n        disable_spiffe_cert_validation = true\n    }}\n"
            ),
        );
        let c = parse(&set).unwrap();
        assert_eq!(
            c.sds,
            crate::workload_api::SdsConfig {
                default_svid_name: "svid".into(),
                default_bundle_name: "bundle".into(),
                default_all_bundles_name: "every".into(),
                disable_spiffe_cert_validation: true,
            }
        );
        let bad = GOOD.replace(
            at,
            &format!("{at}    sds {{\n        default_svid = \"x\"\n    }}\n"),
        );
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("default_svid") && err.contains(":8"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let bad = GOOD.replace("example.org", "Example.org");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("trust_domain"), "{err}");
    }

    #[test]
    fn authorized_delegates_are_spiffe_ids() {
        let with = |extra: &str| {
            GOOD.replace(
                "    data_dir = \"/tmp/x\"\n",
                &format!("    data_dir = \"/tmp/x\"\n{extra}\n"),
            )
        };
        assert!(parse(GOOD).unwrap().authorized_delegates.is_empty());
        let c = parse(&with(
            "    authorized_delegates = [\"spiffe://example.org/mesh\", \"spiffe://other.org/cni\"]",
        ))
        .unwrap();
        let ids: Vec<String> = c
            .authorized_delegates
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ids, ["spiffe://example.org/mesh", "spiffe://other.org/cni"]);
        let err = parse(&with("    authorized_delegates = [\"example.org/mesh\"]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("authorized_delegates") && err.contains("example.org/mesh"),
            "{err}"
        );
    }

    #[test]
    fn admin_socket_and_log_selectors() {
        let with = |extra: &str| {
            GOOD.replace(
                "    data_dir = \"/tmp/x\"\n",
                &format!("    data_dir = \"/tmp/x\"\n{extra}\n"),
            )
        };
        let c = parse(&with(
            "    admin_socket_path = \"/run/spinel/admin/api.sock\"\n    log_selectors = [\"unix\", \"k8s:ns\"]",
        ))
        .unwrap();
        assert_eq!(
            c.admin_socket_path,
            Some("/run/spinel/admin/api.sock".into())
        );
        assert_eq!(c.log_selectors, Some(vec!["unix".into(), "k8s:ns".into()]));
        assert_eq!(parse(GOOD).unwrap().log_selectors, None);

        let err = parse(&with(
            "    admin_socket_path = \"/tmp/spinel-agent/public/admin.sock\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("agent.admin_socket_path") && err.contains("outside"),
            "{err}"
        );
        let err = parse(&with(
            "    admin_socket_path = \"/tmp/spinel-agent/private/../public/admin.sock\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("agent.admin_socket_path") && err.contains("outside"),
            "{err}"
        );
        let err = parse(&with("    admin_socket_path = \"admin.sock\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute"), "{err}");
        let err = parse(&with("    log_selectors = [\"k8s:pod-label:app\"]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("agent.log_selectors") && err.contains("k8s:pod-label:app"),
            "{err}"
        );
    }

    #[test]
    fn k8s_psat_plugin() {
        let psat = GOOD.replace(
            "NodeAttestor \"join_token\" {\n        plugin_data {}",
            "NodeAttestor \"k8s_psat\" {\n        plugin_data {\n            cluster = \"demo\"\n        }",
        );
        let c = parse(&psat).unwrap();
        assert_eq!(
            c.node_attestor,
            NodeAttestorConfig::K8sPsat(K8sPsatConfig {
                cluster: "demo".into(),
                token_path: PathBuf::from("/var/run/secrets/tokens/spire-agent"),
            })
        );
        let with_path = psat.replace(
            "cluster = \"demo\"",
            "cluster = \"demo\"\n            token_path = \"/t/tok\"",
        );
        let NodeAttestorConfig::K8sPsat(k) = parse(&with_path).unwrap().node_attestor else {
            panic!("not k8s_psat");
        };
        assert_eq!(k.token_path, PathBuf::from("/t/tok"));
        let missing = psat.replace("cluster = \"demo\"", "");
        let err = parse(&missing).unwrap_err().to_string();
        assert!(
            err.contains("cluster") && err.contains("agent.conf:"),
            "{err}"
        );
        let unknown = psat.replace(
            "cluster = \"demo\"",
            "cluster = \"demo\"\n            clsuter = \"x\"",
        );
        let err = parse(&unknown).unwrap_err().to_string();
        assert!(err.contains("clsuter") && err.contains(":17"), "{err}");
        assert_eq!(
            parse(GOOD).unwrap().node_attestor,
            NodeAttestorConfig::JoinToken
        );
    }

    #[test]
    fn x509pop_plugin() {
        let pop = GOOD.replace(
            "NodeAttestor \"join_token\" {\n        plugin_data {}",
            "NodeAttestor \"x509pop\" {\n        plugin_data {\n            private_key_path = \"/k.pem\"\n            certificate_path = \"/c.pem\"\n        }",
        );
        assert_eq!(
            parse(&pop).unwrap().node_attestor,
            NodeAttestorConfig::X509pop(X509popConfig {
                private_key_path: PathBuf::from("/k.pem"),
                certificate_path: PathBuf::from("/c.pem"),
                intermediates_path: None,
            })
        );
        let with = pop.replace(
            "certificate_path = \"/c.pem\"",
            "certificate_path = \"/c.pem\"\n            intermediates_path = \"/i.pem\"",
        );
        let NodeAttestorConfig::X509pop(c) = parse(&with).unwrap().node_attestor else {
            panic!("not x509pop");
        };
        assert_eq!(c.intermediates_path, Some(PathBuf::from("/i.pem")));
        let missing = pop.replace("certificate_path = \"/c.pem\"", "");
        let err = parse(&missing).unwrap_err().to_string();
        assert!(
            err.contains("certificate_path") && err.contains("agent.conf:"),
            "{err}"
        );
        let unknown = pop.replace(
            "certificate_path = \"/c.pem\"",
            "certificate_path = \"/c.pem\"\n            cert_path = \"/x\"",
        );
        let err = parse(&unknown).unwrap_err().to_string();
        assert!(err.contains("cert_path"), "{err}");
    }

    #[test]
    fn sample_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/agent");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "conf") {
                AgentConfig::load(&path, &Overrides::default(), false)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen > 0, "no sample configs in {}", dir.display());
    }
}

#[cfg(test)]
mod properties {
    //! Properties of config loading over generated input (the fuzz
    //! targets in `fuzz/` explore further).
    use super::*;
    use proptest::prelude::*;

    const BASE: [&str; 6] = [
        "agent {",
        "    trust_domain = \"example.org\"",
        "    server_address = \"127.0.0.1\"",
        "    data_dir = \"/tmp/x\"",
        "    trust_bundle_path = \"/tmp/b.pem\"",
        "}",
    ];

    fn load(text: &str) -> Result<AgentConfig, ConfigError> {
        let file = ConfigFile::parse(Path::new("agent.conf"), text)?;
        AgentConfig::from_file(&file, &Overrides::default())
    }

    #[test]
    fn telemetry_prometheus_listener_and_its_errors() {
        let base = BASE.join("\n")
            + "\nplugins {\n    KeyManager \"memory\" {\n        plugin_data {}\n    }\n    NodeAttestor \"join_token\" {\n        plugin_data {}\n    }\n}\n";
        assert_eq!(load(&base).unwrap().telemetry.prometheus, None);
        let on = load(
            &(base.clone() + "telemetry {\n    Prometheus {\n        host = \"0.0.0.0\"\n        port = 9988\n    }\n}\n"),
        )
        .unwrap();
        let p = on.telemetry.prometheus.unwrap();
        assert_eq!((p.host.as_str(), p.port), ("0.0.0.0", 9988));
        let line = base.lines().count() + 3;
        let err = load(
            &(base.clone() + "telemetry {\n    Prometheus {\n        port = 65536\n    }\n}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with(&format!("agent.conf:{line}:")), "{err}");
        assert!(err.contains("telemetry.Prometheus.port"), "{err}");
        let err = load(&(base + "telemetry {\n    Prometheus {\n        port = 9988\n    }\n    Prometheuss {}\n}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "agent.conf:{}: unknown key `telemetry.Prometheuss`",
                line + 2
            )),
            "{err}"
        );
    }

    #[test]
    fn health_checks_has_spire_defaults_and_refuses_unknown_keys() {
        let base = BASE.join("\n")
            + "\nplugins {\n    KeyManager \"memory\" {\n        plugin_data {}\n    }\n    NodeAttestor \"join_token\" {\n        plugin_data {}\n    }\n}\n";
        let off = load(&base).unwrap();
        assert!(!off.health_checks.listener_enabled);
        let on = load(
            &(base.clone()
                + "health_checks {\n    listener_enabled = true\n    bind_port = \"9982\"\n}\n"),
        )
        .unwrap();
        assert_eq!(
            (
                on.health_checks.listener_enabled,
                on.health_checks.bind_address.as_str(),
                on.health_checks.bind_port
            ),
            (true, "localhost", 9982)
        );
        assert_eq!(
            (
                on.health_checks.live_path.as_str(),
                on.health_checks.ready_path.as_str()
            ),
            ("/live", "/ready")
        );
        let err = load(
            &(base + "health_checks {\n    listener_enabled = true\n    ready_pth = \"/r\"\n}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("health_checks.ready_pth"), "{err}");
    }

    proptest! {
        /// Any text is a config or an error, never a panic.
        #[test]
        fn any_text_loads_or_fails(text in "\\PC{0,300}") {
            let _ = load(&text);
        }

        /// An unknown key anywhere in `agent {}` is refused, and the error
        /// names the key and its line.
        #[test]
        fn unknown_keys_are_named_with_their_line(
            at in 1usize..5,
            key in "[a-z][a-z_]{0,12}_x",
            blank in 0usize..3,
        ) {
            let mut lines: Vec<String> = BASE.iter().map(|l| (*l).to_owned()).collect();
            lines.insert(at, format!("    {key} = \"v\""));
            for _ in 0..blank {
                lines.insert(at, "    # comment".to_owned());
            }
            let text = lines.join("\n") + "\nplugins {\n    NodeAttestor \"join_token\" {\n        plugin_data {}\n    }\n    WorkloadAttestor \"unix\" {\n        plugin_data {}\n    }\n}\n";
            let err = load(&text).err();
            prop_assert!(err.is_some(), "accepted an unknown key {}", key);
            if let Some(err) = err {
                let line = match &err {
                    ConfigError::File(e) => e.line(),
                    _ => None,
                };
                prop_assert_eq!(line, Some(at + blank + 1), "{}", err);
                prop_assert!(err.to_string().contains(&key), "{}", err);
            }
        }
    }
}
