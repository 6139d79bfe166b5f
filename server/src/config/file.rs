//! The sections of `server.conf` as written, decoded with `serde`.
//!
//! Every struct refuses unknown keys, and every value is checked while it
//! is decoded (trust domain, IDs, key types, durations, log level and
//! format, port range), so that a bad value is reported by
//! [`spinel_config`] with its `file:line` and dotted key path, e.g.
//! `server.conf:4: invalid value for `server.trust_domain`: ...`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use spinel_config::de;
use spinel_config::logging::{parse_level, LogFormat};
use spinel_spiffe::{id, SpiffeId, TrustDomain};

use crate::keymanager::KeyType;

/// The `server { ... }` block. Every field is optional here: defaults and
/// command-line overrides are applied afterwards.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// IP address or host name the TCP API listens on (default `0.0.0.0`).
    #[serde(default)]
    pub bind_address: Option<String>,
    /// TCP port of the API (default 8081; 0 picks a free port).
    #[serde(default, deserialize_with = "de::option_number_or_string")]
    pub bind_port: Option<u16>,
    /// The trust domain (required here or as `-trustDomain`).
    #[serde(default, deserialize_with = "trust_domain")]
    pub trust_domain: Option<TrustDomain>,
    /// Directory for runtime data (default `./.data`).
    #[serde(default)]
    pub data_dir: Option<String>,
    /// Path of the admin API socket.
    #[serde(default)]
    pub socket_path: Option<String>,
    /// `DEBUG`, `INFO`, `WARN`, `ERROR` (default `INFO`).
    #[serde(default, deserialize_with = "log_level")]
    pub log_level: Option<String>,
    /// `text` (default) or `json`.
    #[serde(default)]
    pub log_format: Option<LogFormat>,
    /// Append logs to this file instead of stderr.
    #[serde(default)]
    pub log_file: Option<String>,
    /// Lifetime of CA certificates (default 24h).
    #[serde(default, deserialize_with = "positive_duration")]
    pub ca_ttl: Option<Duration>,
    /// Default X509-SVID lifetime (default 1h).
    #[serde(default, deserialize_with = "positive_duration")]
    pub default_x509_svid_ttl: Option<Duration>,
    /// Default JWT-SVID lifetime (default 5m).
    #[serde(default, deserialize_with = "positive_duration")]
    pub default_jwt_svid_ttl: Option<Duration>,
    /// Lifetime of agent SVIDs (default: `default_x509_svid_ttl`).
    #[serde(default, deserialize_with = "positive_duration")]
    pub agent_ttl: Option<Duration>,
    /// Key type of the X.509 CA (default `ec-p256`).
    #[serde(default, deserialize_with = "key_type")]
    pub ca_key_type: Option<KeyType>,
    /// Key type of the JWT signing key (default: `ca_key_type`).
    #[serde(default, deserialize_with = "key_type")]
    pub jwt_key_type: Option<KeyType>,
    /// Subject of the CA certificate.
    #[serde(default)]
    pub ca_subject: Option<CaSubjectSection>,
    /// `iss` claim of JWT-SVIDs.
    #[serde(default)]
    pub jwt_issuer: Option<String>,
    /// SPIFFE IDs allowed to call the admin API over mTLS.
    #[serde(default, deserialize_with = "spiffe_ids")]
    pub admin_ids: Vec<SpiffeId>,
    /// Log one audit line per API call (SPIRE's `audit_log_enabled`,
    /// default false).
    #[serde(default, deserialize_with = "de::bool_or_string")]
    pub audit_log_enabled: bool,
    /// Federation: the bundle endpoint and foreign trust domains.
    #[serde(default)]
    pub federation: Option<super::federation::FederationSection>,
    /// OIDC discovery document and JWKS for JWT-SVIDs.
    #[serde(default)]
    pub oidc_discovery: Option<super::federation::OidcDiscoverySection>,
    /// Caps on the TCP listener (Spinel's own block; SPIRE has none).
    #[serde(default)]
    pub connection_limits: Option<ConnectionLimitsSection>,
}

/// `connection_limits { ... }` of `server { ... }`: the TCP listener's caps.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionLimitsSection {
    /// Connections open at once (default 8192).
    #[serde(default, deserialize_with = "de::option_number_or_string")]
    pub max_connections: Option<usize>,
    /// Connections open at once from one IP address (default 256).
    #[serde(default, deserialize_with = "de::option_number_or_string")]
    pub max_connections_per_ip: Option<usize>,
    /// How long a new connection may take to finish the TLS handshake and
    /// send its first request, each (default 10s).
    #[serde(default, deserialize_with = "positive_duration")]
    pub first_request_timeout: Option<Duration>,
}

/// `ca_subject { ... }`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaSubjectSection {
    /// `C=` values.
    #[serde(default)]
    pub country: Vec<String>,
    /// `O=` values.
    #[serde(default)]
    pub organization: Vec<String>,
    /// `CN=`.
    #[serde(default)]
    pub common_name: Option<String>,
}

/// `plugin_data` of `DataStore "sled"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SledData {
    /// Database directory (default `<data_dir>/datastore`).
    #[serde(default)]
    pub path: Option<String>,
}

/// `plugin_data` of `DataStore "sql"`, with SPIRE's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlData {
    /// `postgres`, `mysql` or `sqlite3`.
    #[serde(default)]
    pub database_type: Option<String>,
    /// Connection string.
    #[serde(default)]
    pub connection_string: Option<String>,
    /// Read-only replica connection string.
    #[serde(default)]
    pub ro_connection_string: Option<String>,
    /// CA bundle for the database's TLS (PostgreSQL's `sslrootcert`).
    #[serde(default)]
    pub root_ca_path: Option<String>,
    /// Client certificate (`sslcert`).
    #[serde(default)]
    pub client_cert_path: Option<String>,
    /// Client key (`sslkey`).
    #[serde(default)]
    pub client_key_path: Option<String>,
    /// Pool size.
    #[serde(default, deserialize_with = "de::option_number_or_string")]
    pub max_open_conns: Option<u32>,
    /// Idle pool size.
    #[serde(default, deserialize_with = "de::option_number_or_string")]
    pub max_idle_conns: Option<u32>,
    /// Connection lifetime.
    #[serde(default)]
    pub conn_max_lifetime: Option<String>,
    /// Skip schema migration.
    #[serde(default, deserialize_with = "de::bool_or_string")]
    pub disable_migration: bool,
    /// Log SQL statements.
    #[serde(default, deserialize_with = "de::bool_or_string")]
    pub log_sql: bool,
}

/// `plugin_data` of `KeyManager "disk"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskKeysData {
    /// The key file (JSON, mode 0600).
    pub keys_path: String,
}

/// `plugin_data` of `UpstreamAuthority "disk"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskUpstreamData {
    /// The upstream CA certificate (then its intermediates), PEM.
    #[serde(default)]
    pub cert_file_path: String,
    /// The upstream CA private key, PEM.
    #[serde(default)]
    pub key_file_path: String,
    /// The upstream roots, PEM; required unless the certificate is self-signed.
    #[serde(default)]
    pub bundle_file_path: Option<String>,
}

/// `plugin_data` of plugins that take no settings (`KeyManager "memory"`,
/// `NodeAttestor "join_token"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoData {}

fn trust_domain<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TrustDomain>, D::Error> {
    let text = String::deserialize(d)?;
    id::parse_trust_domain(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn log_level<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    parse_level(&text).map_err(serde::de::Error::custom)?;
    Ok(Some(text))
}

fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let value = de::go_duration(d)?;
    if value.is_zero() {
        return Err(serde::de::Error::custom("must be longer than zero"));
    }
    Ok(Some(value))
}

fn key_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<KeyType>, D::Error> {
    let text = String::deserialize(d)?;
    parse_key_type(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn spiffe_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SpiffeId>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| id::parse_id(t).map_err(serde::de::Error::custom))
        .collect()
}

/// Parses a key type name as SPIRE spells it.
pub fn parse_key_type(text: &str) -> Result<KeyType, String> {
    match text {
        "ec-p256" => Ok(KeyType::EcP256),
        "ec-p384" => Ok(KeyType::EcP384),
        "rsa-2048" => Ok(KeyType::Rsa2048),
        "rsa-4096" => Ok(KeyType::Rsa4096),
        other => Err(format!(
            "unsupported key type {other:?}; expected one of ec-p256, ec-p384, rsa-2048, rsa-4096"
        )),
    }
}
