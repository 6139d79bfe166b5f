//! The server configuration: SPIRE's `server.conf`, plus SPIRE's `run`
//! flags on top.
//!
//! ```hcl
//! server {
//!     bind_address = "0.0.0.0"
//!     bind_port = "8081"
//!     socket_path = "/tmp/spinel-server/private/api.sock"
//!     trust_domain = "example.org"
//!     data_dir = "./.data"
//!     log_level = "INFO"
//! }
//! plugins {
//!     DataStore "sled" { plugin_data {} }
//!     KeyManager "disk" { plugin_data { keys_path = "./.data/keys.json" } }
//!     NodeAttestor "join_token" { plugin_data {} }
//! }
//! ```
//!
//! [`load`] reads the file with [`spinel_config`], applies SPIRE's defaults
//! and the command-line [`Overrides`], and checks everything: unknown keys,
//! unsupported plugins and bad values are errors naming the key (or flag)
//! and `file:line`. Top-level blocks: `server` (required), `plugins`
//! (required: a `DataStore` and a `KeyManager`), `health_checks` (served
//! when `listener_enabled`), `telemetry` (`Prometheus { host, port }`:
//! `GET /metrics`; SPIRE's other telemetry keys are ignored with a warning,
//! see [`spinel_config::telemetry`]).

mod federation;
mod file;
pub mod k8s_psat;
pub mod k8sbundle;
mod oidc;
mod plugins;
pub mod x509pop;

pub use federation::{
    check_https_url, BundleEndpointConfig, EndpointProfile, FederatesWith, FederationConfig,
    OidcDiscoveryConfig, RemoteProfile, ServingCertFile, DEFAULT_REFRESH_HINT,
};
pub use file::parse_key_type;
pub use k8s_psat::{K8sPsatCluster, K8sPsatConfig};
pub use k8sbundle::K8sBundleConfig;
pub use plugins::{DataStoreConfig, KeyManagerConfig, Plugins};
pub use x509pop::X509popConfig;

use std::path::{Path, PathBuf};
use std::time::Duration;

use spinel_config::hcl::{ConfigError, ConfigFile};
pub use spinel_config::health::HealthChecks;
use spinel_config::health::HealthChecksSection;
use spinel_config::logging::{parse_level, LogFormat};
pub use spinel_config::telemetry::Telemetry;
use spinel_spiffe::{id, SpiffeId, TrustDomain};

use crate::ca::{CaConfig, CaSubject};
use crate::keymanager::KeyType;

/// Default `bind_address`.
pub const DEFAULT_BIND_ADDRESS: &str = "0.0.0.0";
/// Default `bind_port`.
pub const DEFAULT_BIND_PORT: u16 = 8081;
/// Default `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "./.data";
/// Default `socket_path` (SPIRE's `/tmp/spire-server/private/api.sock`,
/// with `spinel-server`); also the CLI's default `-socketPath`.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/spinel-server/private/api.sock";
/// Default `log_level`.
pub const DEFAULT_LOG_LEVEL: &str = "INFO";
/// Default `ca_ttl`.
pub const DEFAULT_CA_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default `default_x509_svid_ttl`.
pub const DEFAULT_X509_SVID_TTL: Duration = Duration::from_secs(3600);
/// Default `default_jwt_svid_ttl`.
pub const DEFAULT_JWT_SVID_TTL: Duration = Duration::from_secs(300);
/// Default CA subject: C=US, O=SPIFFE (SPIRE's).
pub const DEFAULT_CA_COUNTRY: &str = "US";
/// Default CA subject organization.
pub const DEFAULT_CA_ORGANIZATION: &str = "SPIFFE";

/// Top-level blocks a server config may have.
const SECTIONS: &[&str] = &["server", "plugins", "health_checks", "telemetry"];

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigLoadError {
    /// The file is unreadable, malformed, has an unknown key or a bad value
    /// (the message names `file:line` and the key).
    #[error(transparent)]
    File(#[from] ConfigError),
    /// A required setting is missing from both the file and the flags.
    #[error("{path}: missing required key `{key}` (set it in the file or with -{flag})")]
    Missing {
        /// The config file.
        path: String,
        /// The dotted key.
        key: &'static str,
        /// The flag that can set it instead.
        flag: &'static str,
    },
    /// A command-line flag has a bad value.
    #[error("invalid value for flag -{flag}: {message}")]
    Flag {
        /// The flag, as SPIRE spells it.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A value is well formed but not acceptable with the others.
    #[error("{path}: invalid value for `{key}`: {message}")]
    Invalid {
        /// The config file.
        path: String,
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A plugin or plugin setting this build does not support.
    #[error("{location}: {message}")]
    Unsupported {
        /// `file:line` of the plugin.
        location: String,
        /// What is not supported.
        message: String,
    },
}

/// SPIRE's `run` flags, which take precedence over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `-bindAddress`.
    pub bind_address: Option<String>,
    /// `-serverPort`.
    pub bind_port: Option<u16>,
    /// `-socketPath`.
    pub socket_path: Option<PathBuf>,
    /// `-trustDomain`.
    pub trust_domain: Option<String>,
    /// `-dataDir`.
    pub data_dir: Option<PathBuf>,
    /// `-logLevel`.
    pub log_level: Option<String>,
    /// `-logFormat`.
    pub log_format: Option<String>,
    /// `-logFile`.
    pub log_file: Option<PathBuf>,
    /// `-expandEnv`: expand `$VAR`/`${VAR}` in the file first.
    pub expand_env: bool,
}

/// The complete, checked server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address (IP or host name) of the TCP API.
    pub bind_address: String,
    /// Port of the TCP API (0: any free port, logged at start).
    pub bind_port: u16,
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// Runtime data directory.
    pub data_dir: PathBuf,
    /// The admin API socket.
    pub socket_path: PathBuf,
    /// Log level as written (`INFO`, ...).
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Log file (stderr when `None`).
    pub log_file: Option<PathBuf>,
    /// CA settings.
    pub ca: CaConfig,
    /// Lifetime of agent SVIDs (`None`: the default X509-SVID TTL).
    pub agent_ttl: Option<Duration>,
    /// SPIFFE IDs allowed to call the admin API over mTLS.
    pub admin_ids: Vec<SpiffeId>,
    /// Log one audit line per API call (`audit_log_enabled`).
    pub audit_log_enabled: bool,
    /// Plugins.
    pub plugins: Plugins,
    /// The HTTP health listener.
    pub health_checks: HealthChecks,
    /// `telemetry`: the Prometheus metrics listener, if any.
    pub telemetry: Telemetry,
    /// Things worth a warning once logging is up (ignored blocks, ...).
    pub warnings: Vec<String>,
    /// `server.federation`: bundle endpoint and foreign trust domains.
    pub federation: FederationConfig,
    /// `server.oidc_discovery`, if served.
    pub oidc_discovery: Option<OidcDiscoveryConfig>,
    /// `server.connection_limits`: caps on the TCP listener.
    pub connection_limits: spinel_transport::ConnectionLimits,
}

/// Loads `path` and applies `overrides`.
pub fn load(path: &Path, overrides: &Overrides) -> Result<ServerConfig, ConfigLoadError> {
    let file = if overrides.expand_env {
        ConfigFile::read_expand_env(path, |name| std::env::var(name).ok())?
    } else {
        ConfigFile::read(path)?
    };
    from_file(&file, overrides)
}

/// Builds the configuration from a parsed file and `overrides`.
pub fn from_file(
    file: &ConfigFile,
    overrides: &Overrides,
) -> Result<ServerConfig, ConfigLoadError> {
    file.check_top_level(SECTIONS)?;
    let mut server: file::ServerSection = file.section("server")?;
    let health: Option<HealthChecksSection> = file.optional_section("health_checks")?;
    let display_path = file.path().display().to_string();
    let telemetry = Telemetry::from_file(file)?;
    let mut warnings = telemetry.warnings.clone();

    let trust_domain = match &overrides.trust_domain {
        Some(text) => id::parse_trust_domain(text).map_err(|e| ConfigLoadError::Flag {
            flag: "trustDomain",
            message: e.to_string(),
        })?,
        None => server
            .trust_domain
            .clone()
            .ok_or(ConfigLoadError::Missing {
                path: display_path.clone(),
                key: "server.trust_domain",
                flag: "trustDomain",
            })?,
    };
    let bind_address = overrides
        .bind_address
        .clone()
        .or(server.bind_address.clone())
        .unwrap_or_else(|| DEFAULT_BIND_ADDRESS.to_owned());
    if bind_address.trim().is_empty() {
        return Err(match overrides.bind_address {
            Some(_) => ConfigLoadError::Flag {
                flag: "bindAddress",
                message: "must not be empty".into(),
            },
            None => ConfigLoadError::Invalid {
                path: display_path,
                key: "server.bind_address",
                message: "must not be empty".into(),
            },
        });
    }
    let bind_port = overrides
        .bind_port
        .or(server.bind_port)
        .unwrap_or(DEFAULT_BIND_PORT);
    let data_dir = overrides
        .data_dir
        .clone()
        .or(server.data_dir.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let socket_path = overrides
        .socket_path
        .clone()
        .or(server.socket_path.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH));
    let log_level = match &overrides.log_level {
        Some(level) => {
            parse_level(level).map_err(|e| ConfigLoadError::Flag {
                flag: "logLevel",
                message: e.to_string(),
            })?;
            level.clone()
        }
        None => server
            .log_level
            .clone()
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned()),
    };
    let log_format = match &overrides.log_format {
        Some(format) => format
            .parse()
            .map_err(
                |e: spinel_config::logging::LoggingError| ConfigLoadError::Flag {
                    flag: "logFormat",
                    message: e.to_string(),
                },
            )?,
        None => server.log_format.unwrap_or_default(),
    };
    let log_file = overrides
        .log_file
        .clone()
        .or(server.log_file.as_ref().map(PathBuf::from));

    let ca_key_type = server.ca_key_type.unwrap_or(KeyType::EcP256);
    let subject = server.ca_subject.clone().unwrap_or_default();
    let ca = CaConfig {
        trust_domain: trust_domain.clone(),
        // Read from (or made in) `data_dir` at start-up (run.rs).
        server_id: String::new(),
        ca_key_type,
        jwt_key_type: server.jwt_key_type.unwrap_or(ca_key_type),
        ca_ttl: server.ca_ttl.unwrap_or(DEFAULT_CA_TTL),
        ca_subject: if server.ca_subject.is_some() {
            CaSubject {
                country: subject.country,
                organization: subject.organization,
                common_name: subject.common_name.unwrap_or_default(),
            }
        } else {
            CaSubject {
                country: vec![DEFAULT_CA_COUNTRY.into()],
                organization: vec![DEFAULT_CA_ORGANIZATION.into()],
                common_name: String::new(),
            }
        },
        default_x509_svid_ttl: server
            .default_x509_svid_ttl
            .unwrap_or(DEFAULT_X509_SVID_TTL),
        default_jwt_svid_ttl: server.default_jwt_svid_ttl.unwrap_or(DEFAULT_JWT_SVID_TTL),
        jwt_issuer: server.jwt_issuer.clone().filter(|s| !s.is_empty()),
        // Loaded from `plugins.upstream_authority` at start-up (run.rs).
        upstream: None,
    };
    for (key, ttl) in [
        ("server.default_x509_svid_ttl", ca.default_x509_svid_ttl),
        ("server.default_jwt_svid_ttl", ca.default_jwt_svid_ttl),
    ] {
        if ttl > ca.ca_ttl {
            warnings.push(format!(
                "{key} ({}) is longer than ca_ttl ({}): SVIDs will be cut short at the CA's expiry",
                spinel_config::format_go_duration(ttl),
                spinel_config::format_go_duration(ca.ca_ttl)
            ));
        }
    }

    let (federation, oidc_discovery) =
        resolve_federation_blocks(file, &mut server, &trust_domain, &display_path)?;
    let plugins = plugins::resolve(file, &data_dir)?;
    let health_checks = HealthChecks::from_section(health);
    let connection_limits = connection_limits(
        server.connection_limits.take().unwrap_or_default(),
        &display_path,
    )?;
    Ok(ServerConfig {
        bind_address,
        bind_port,
        trust_domain,
        data_dir,
        socket_path,
        log_level,
        log_format,
        log_file,
        ca,
        agent_ttl: server.agent_ttl,
        admin_ids: server.admin_ids,
        audit_log_enabled: server.audit_log_enabled,
        plugins,
        health_checks,
        telemetry,
        warnings,
        federation,
        oidc_discovery,
        connection_limits,
    })
}

/// `server.connection_limits`, defaults filled in.
fn connection_limits(
    section: file::ConnectionLimitsSection,
    path: &str,
) -> Result<spinel_transport::ConnectionLimits, ConfigLoadError> {
    let defaults = crate::api::transport::DEFAULT_TCP_LIMITS;
    let positive = |key: &'static str, value: Option<usize>, default: usize| match value {
        Some(0) => Err(ConfigLoadError::Invalid {
            path: path.to_owned(),
            key,
            message: "must be at least 1".into(),
        }),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    Ok(spinel_transport::ConnectionLimits {
        max_connections: positive(
            "server.connection_limits.max_connections",
            section.max_connections,
            defaults.max_connections,
        )?,
        max_connections_per_peer: positive(
            "server.connection_limits.max_connections_per_ip",
            section.max_connections_per_ip,
            defaults.max_connections_per_peer,
        )?,
        first_request_timeout: section
            .first_request_timeout
            .unwrap_or(defaults.first_request_timeout),
    })
}

/// The `federation` and `oidc_discovery` blocks, checked beyond decoding
/// (the server's own trust domain is not a federation peer; OIDC discovery
/// knows its issuer, see `oidc::check_issuer`).
fn resolve_federation_blocks(
    file: &ConfigFile,
    server: &mut file::ServerSection,
    trust_domain: &TrustDomain,
    display_path: &str,
) -> Result<(FederationConfig, Option<OidcDiscoveryConfig>), ConfigLoadError> {
    let invalid = |key: &'static str, message: String| ConfigLoadError::Invalid {
        path: display_path.to_owned(),
        key,
        message,
    };
    let federation = match server.federation.take() {
        Some(section) => federation::resolve_federation(section, trust_domain)
            .map_err(|m| invalid("server.federation", m))?,
        None => FederationConfig::default(),
    };
    let oidc = server.oidc_discovery.take().map(|section| section.0);
    if let Some(oidc) = &oidc {
        oidc::check_issuer(file, oidc, server.jwt_issuer.as_deref())?;
    }
    Ok((federation, oidc))
}
