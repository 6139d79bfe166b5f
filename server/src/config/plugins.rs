//! The `plugins { ... }` block: which built-in plugin backs each seam.
//!
//! Supported: `DataStore "sled"` or `DataStore "sql"` with `database_type`
//! `"postgres"` or `"sqlite3"` (exactly one data store), `KeyManager
//! "disk"` or `"memory"` (exactly one key manager), `NodeAttestor
//! "join_token"`, `NodeAttestor "k8s_psat"` ([`super::k8s_psat`]) and
//! `NodeAttestor "x509pop"` ([`super::x509pop`]),
//! `UpstreamAuthority "disk"`, and `Notifier "k8sbundle"`
//! ([`super::k8sbundle`]).
//! Anything else is an error naming the plugin (and for `DataStore "sql"`
//! the key) and its `file:line`.

use std::path::{Path, PathBuf};

use spinel_config::hcl::{single_plugin, ConfigFile, PluginDecl};

use super::file::{DiskKeysData, DiskUpstreamData, NoData, SledData, SqlData};
use super::k8s_psat::K8sPsatConfig;
use super::k8sbundle::K8sBundleConfig;
use super::ConfigLoadError;
use crate::datastore::sql::options::{connection_url, parse_go_duration};
use crate::datastore::sql::{DatabaseType, SqlOptions};

/// Plugin kinds this server has.
const KINDS: &[&str] = &[
    "DataStore",
    "KeyManager",
    "NodeAttestor",
    "Notifier",
    "UpstreamAuthority",
];

/// The data store to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataStoreConfig {
    /// The embedded sled database in this directory.
    Sled {
        /// Database directory.
        path: PathBuf,
    },
    /// A SQL database (`DataStore "sql"`): PostgreSQL or SQLite.
    Sql(SqlOptions),
}

/// The key manager to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyManagerConfig {
    /// Keys in one JSON file (mode 0600), kept across restarts.
    Disk {
        /// The key file.
        keys_path: PathBuf,
    },
    /// Keys in memory: a restart makes a new CA.
    Memory,
}

/// The plugins of a config file, resolved.
#[derive(Debug, Clone)]
pub struct Plugins {
    /// The data store.
    pub datastore: DataStoreConfig,
    /// The key manager.
    pub key_manager: KeyManagerConfig,
    /// Names of the configured node attestors.
    pub node_attestors: Vec<String>,
    /// `NodeAttestor "k8s_psat"`, when configured.
    pub k8s_psat: Option<K8sPsatConfig>,
    /// `NodeAttestor "x509pop"`, when configured.
    pub x509pop: Option<super::x509pop::X509popConfig>,
    /// `UpstreamAuthority "disk"`, when configured (its files are read at
    /// start-up).
    pub upstream_authority: Option<crate::upstream::DiskUpstreamConfig>,
    /// `Notifier "k8sbundle"`, when configured.
    pub k8sbundle: Option<K8sBundleConfig>,
}

/// Resolves the plugins of `file`; `data_dir` is the server's data
/// directory (for the default sled path).
pub fn resolve(file: &ConfigFile, data_dir: &Path) -> Result<Plugins, ConfigLoadError> {
    let decls = file.plugins()?;
    for decl in decls.iter().filter(|d| d.enabled) {
        if !KINDS.contains(&decl.kind.as_str()) {
            return Err(decl.unsupported_kind(KINDS).into());
        }
    }
    let datastore = datastore(single_plugin(file.path(), &decls, "DataStore")?, data_dir)?;
    let key_manager = key_manager(single_plugin(file.path(), &decls, "KeyManager")?)?;
    let mut node_attestors = Vec::new();
    let mut k8s_psat = None;
    let mut x509pop = None;
    for decl in decls
        .iter()
        .filter(|d| d.enabled && d.kind == "NodeAttestor")
    {
        match decl.name.as_str() {
            "join_token" => {
                decl.data::<NoData>()?;
            }
            "k8s_psat" => k8s_psat = Some(super::k8s_psat::resolve(decl)?),
            "x509pop" => x509pop = Some(super::x509pop::resolve(decl)?),
            _ => {
                return Err(decl
                    .unsupported(&["join_token", "k8s_psat", "x509pop"])
                    .into())
            }
        }
        node_attestors.push(decl.name.clone());
    }
    let upstream_authority = upstream_authority(file, &decls)?;
    let k8sbundle = notifier(&decls)?;
    Ok(Plugins {
        datastore,
        key_manager,
        node_attestors,
        k8s_psat,
        x509pop,
        upstream_authority,
        k8sbundle,
    })
}

fn datastore(decl: &PluginDecl, data_dir: &Path) -> Result<DataStoreConfig, ConfigLoadError> {
    match decl.name.as_str() {
        "sled" => {
            let data: SledData = decl.data()?;
            let path = data
                .path
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("datastore"));
            Ok(DataStoreConfig::Sled { path })
        }
        "sql" => sql_datastore(decl, decl.data()?).map(DataStoreConfig::Sql),
        _ => Err(decl.unsupported(&["sled", "sql"]).into()),
    }
}

/// `DataStore "sql"`: SPIRE's keys, checked; an error names the key.
fn sql_datastore(decl: &PluginDecl, data: SqlData) -> Result<SqlOptions, ConfigLoadError> {
    let fail = |message: String| ConfigLoadError::Unsupported {
        location: decl.location(),
        message: format!("DataStore \"sql\": {message}"),
    };
    let database_type = match data.database_type.as_deref().unwrap_or_default() {
        "postgres" => DatabaseType::Postgres,
        "sqlite3" => DatabaseType::Sqlite,
        "" => {
            return Err(fail(
                "`database_type` is required: \"postgres\" or \"sqlite3\"".into(),
            ))
        }
        other => {
            return Err(fail(format!(
                "`database_type` {other:?} is not supported: use \"postgres\" or \"sqlite3\" (or DataStore \"sled\")"
            )))
        }
    };
    let connection_string = data
        .connection_string
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| fail("`connection_string` is required".into()))?;
    let mut url = connection_url(database_type, connection_string)
        .map_err(|e| fail(format!("`connection_string`: {e}")))?;
    let ro_url = match data.ro_connection_string.as_deref() {
        None | Some("") => None,
        Some(ro) => Some(
            connection_url(database_type, ro)
                .map_err(|e| fail(format!("`ro_connection_string`: {e}")))?,
        ),
    };
    // SPIRE's TLS file keys, as the libpq parameters they stand for.
    let tls = [
        ("root_ca_path", "sslrootcert", &data.root_ca_path),
        ("client_cert_path", "sslcert", &data.client_cert_path),
        ("client_key_path", "sslkey", &data.client_key_path),
    ];
    for (key, parameter, value) in tls {
        let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        if database_type != DatabaseType::Postgres {
            return Err(fail(format!(
                "`{key}` applies to database_type \"postgres\" only"
            )));
        }
        let mut parsed =
            url::Url::parse(&url).map_err(|e| fail(format!("`connection_string`: {e}")))?;
        parsed.query_pairs_mut().append_pair(parameter, value);
        url = parsed.to_string();
    }
    let conn_max_lifetime = data
        .conn_max_lifetime
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(parse_go_duration)
        .transpose()
        .map_err(|e| {
            fail(format!(
                "`conn_max_lifetime`: {e} (a Go duration such as \"30s\")"
            ))
        })?;
    Ok(SqlOptions {
        database_type,
        url,
        ro_url,
        max_open_conns: data.max_open_conns,
        max_idle_conns: data.max_idle_conns,
        conn_max_lifetime,
        disable_migration: data.disable_migration,
        log_sql: data.log_sql,
    })
}

fn key_manager(decl: &PluginDecl) -> Result<KeyManagerConfig, ConfigLoadError> {
    match decl.name.as_str() {
        "disk" => {
            let data: DiskKeysData = decl.data()?;
            if data.keys_path.is_empty() {
                return Err(ConfigLoadError::Unsupported {
                    location: decl.location(),
                    message: "KeyManager \"disk\": `keys_path` must not be empty".into(),
                });
            }
            Ok(KeyManagerConfig::Disk {
                keys_path: PathBuf::from(data.keys_path),
            })
        }
        "memory" => {
            decl.data::<NoData>()?;
            Ok(KeyManagerConfig::Memory)
        }
        _ => Err(decl.unsupported(&["disk", "memory"]).into()),
    }
}

/// `UpstreamAuthority "disk"` (at most one upstream authority).
fn upstream_authority(
    file: &ConfigFile,
    decls: &[PluginDecl],
) -> Result<Option<crate::upstream::DiskUpstreamConfig>, ConfigLoadError> {
    let mut found = decls
        .iter()
        .filter(|d| d.enabled && d.kind == "UpstreamAuthority");
    let Some(decl) = found.next() else {
        return Ok(None);
    };
    if let Some(second) = found.next() {
        return Err(ConfigLoadError::Unsupported {
            location: second.location(),
            message: format!(
                "only one UpstreamAuthority may be configured in {}",
                file.path().display()
            ),
        });
    }
    if decl.name != "disk" {
        return Err(decl.unsupported(&["disk"]).into());
    }
    let data: DiskUpstreamData = decl.data()?;
    if data.cert_file_path.is_empty() || data.key_file_path.is_empty() {
        return Err(ConfigLoadError::Unsupported {
            location: decl.location(),
            message:
                "UpstreamAuthority \"disk\": `cert_file_path` and `key_file_path` are required"
                    .into(),
        });
    }
    Ok(Some(crate::upstream::DiskUpstreamConfig {
        cert_file_path: PathBuf::from(data.cert_file_path),
        key_file_path: PathBuf::from(data.key_file_path),
        bundle_file_path: data
            .bundle_file_path
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    }))
}

/// `Notifier "k8sbundle"`, the one notifier this server has (the HCL
/// parser already refuses the same block twice).
fn notifier(decls: &[PluginDecl]) -> Result<Option<K8sBundleConfig>, ConfigLoadError> {
    let mut config = None;
    for decl in decls.iter().filter(|d| d.enabled && d.kind == "Notifier") {
        if decl.name != "k8sbundle" {
            return Err(decl.unsupported(&["k8sbundle"]).into());
        }
        config = Some(super::k8sbundle::resolve(decl)?);
    }
    Ok(config)
}
