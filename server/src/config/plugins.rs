//! The `plugins { ... }` block: which built-in plugin backs each seam.
//!
//! Supported: `DataStore "sled"` (exactly one data store), `KeyManager
//! "disk"` or `"memory"` (exactly one key manager), `NodeAttestor
//! "join_token"` and `NodeAttestor "k8s_psat"` ([`super::k8s_psat`]). `DataStore "sql"` is recognised so that a SPIRE file gets
//! a precise answer: PostgreSQL is planned but not there yet, other
//! databases are not supported. Anything else is an error naming the plugin
//! and its `file:line`.

use std::path::{Path, PathBuf};

use spinel_config::hcl::{single_plugin, ConfigFile, PluginDecl};

use super::file::{DiskKeysData, DiskUpstreamData, NoData, SledData, SqlData};
use super::k8s_psat::K8sPsatConfig;
use super::ConfigLoadError;

/// Plugin kinds this server has.
const KINDS: &[&str] = &[
    "DataStore",
    "KeyManager",
    "NodeAttestor",
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
    /// `UpstreamAuthority "disk"`, when configured (its files are read at
    /// start-up).
    pub upstream_authority: Option<crate::upstream::DiskUpstreamConfig>,
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
    for decl in decls
        .iter()
        .filter(|d| d.enabled && d.kind == "NodeAttestor")
    {
        match decl.name.as_str() {
            "join_token" => {
                decl.data::<NoData>()?;
            }
            "k8s_psat" => k8s_psat = Some(super::k8s_psat::resolve(decl)?),
            _ => return Err(decl.unsupported(&["join_token", "k8s_psat"]).into()),
        }
        node_attestors.push(decl.name.clone());
    }
    let upstream_authority = upstream_authority(file, &decls)?;
    Ok(Plugins {
        datastore,
        key_manager,
        node_attestors,
        k8s_psat,
        upstream_authority,
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
        "sql" => {
            let data: SqlData = decl.data()?;
            let database_type = data.database_type.unwrap_or_default();
            let message = match database_type.as_str() {
                "postgres" => {
                    "DataStore \"sql\" with database_type \"postgres\" is not yet supported; use DataStore \"sled\""
                        .to_owned()
                }
                "" => "DataStore \"sql\" requires database_type; only \"postgres\" is planned, and it is not yet supported; use DataStore \"sled\"".to_owned(),
                other => format!(
                    "DataStore \"sql\" with database_type {other:?} is not supported (only \"postgres\" is planned); use DataStore \"sled\""
                ),
            };
            Err(ConfigLoadError::Unsupported {
                location: decl.location(),
                message,
            })
        }
        _ => Err(decl.unsupported(&["sled", "sql"]).into()),
    }
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
