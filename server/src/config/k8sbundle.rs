//! `Notifier "k8sbundle"`: SPIRE's plugin data, checked.
//!
//! ```hcl
//! Notifier "k8sbundle" {
//!     plugin_data {
//!         namespace = "spire"              # the default
//!         config_map = "spire-bundle"      # the default
//!         config_map_key = "bundle.crt"    # the default
//!         kube_config_file = ""            # empty: in-cluster service account
//!     }
//! }
//! ```
//!
//! Unknown keys are errors naming the key and line. The kubeconfig itself
//! is read when the server starts.

use std::path::PathBuf;

use serde::Deserialize;
use spinel_config::hcl::PluginDecl;

use super::ConfigLoadError;

/// The default `namespace` (SPIRE's).
pub const DEFAULT_NAMESPACE: &str = "spire";
/// The default `config_map` (SPIRE's).
pub const DEFAULT_CONFIG_MAP: &str = "spire-bundle";
/// The default `config_map_key` (SPIRE's).
pub const DEFAULT_CONFIG_MAP_KEY: &str = "bundle.crt";

/// `plugin_data` of `Notifier "k8sbundle"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sBundleData {
    /// Namespace of the ConfigMap (default `spire`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name of the ConfigMap (default `spire-bundle`).
    #[serde(default)]
    pub config_map: Option<String>,
    /// Key of the bundle in the ConfigMap's `data` (default `bundle.crt`).
    #[serde(default)]
    pub config_map_key: Option<String>,
    /// Kubeconfig of the API server (empty: in-cluster config).
    #[serde(default)]
    pub kube_config_file: String,
}

/// `Notifier "k8sbundle"`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sBundleConfig {
    /// Namespace of the ConfigMap.
    pub namespace: String,
    /// Name of the ConfigMap.
    pub config_map: String,
    /// Key of the bundle in the ConfigMap's `data`.
    pub config_map_key: String,
    /// The kubeconfig (`None`: in-cluster config).
    pub kube_config_file: Option<PathBuf>,
}

/// Decodes and checks the plugin data of `decl`.
pub fn resolve(decl: &PluginDecl) -> Result<K8sBundleConfig, ConfigLoadError> {
    let data: K8sBundleData = decl.data()?;
    let invalid = |message: String| ConfigLoadError::Unsupported {
        location: decl.location(),
        message: format!("Notifier \"k8sbundle\": {message}"),
    };
    let pick = |value: Option<String>, default: &str| match value {
        Some(v) if !v.is_empty() => v,
        _ => default.to_owned(),
    };
    let namespace = pick(data.namespace, DEFAULT_NAMESPACE);
    let config_map = pick(data.config_map, DEFAULT_CONFIG_MAP);
    let config_map_key = pick(data.config_map_key, DEFAULT_CONFIG_MAP_KEY);
    for (key, value) in [("namespace", &namespace), ("config_map", &config_map)] {
        if !dns_subdomain(value) {
            return Err(invalid(format!(
                "`{key}` {value:?} is not a Kubernetes object name (lower-case letters, digits, `-` and `.`, at most 253)"
            )));
        }
    }
    let key_ok = config_map_key.len() <= 253
        && config_map_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !key_ok {
        return Err(invalid(format!(
            "`config_map_key` {config_map_key:?} is not a ConfigMap key (letters, digits, `-`, `_` and `.`)"
        )));
    }
    Ok(K8sBundleConfig {
        namespace,
        config_map,
        config_map_key,
        kube_config_file: (!data.kube_config_file.is_empty())
            .then(|| PathBuf::from(data.kube_config_file)),
    })
}

/// An RFC 1123 DNS subdomain, as Kubernetes names most objects.
fn dns_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use spinel_config::hcl::ConfigFile;

    use super::*;

    fn parse(plugin_data: &str) -> Result<K8sBundleConfig, ConfigLoadError> {
        let text = format!(
            "plugins {{\n    Notifier \"k8sbundle\" {{\n        plugin_data {{\n{plugin_data}\n        }}\n    }}\n}}\n"
        );
        let file = ConfigFile::parse(Path::new("server.conf"), &text).unwrap();
        let decls = file.plugins().unwrap();
        resolve(&decls[0])
    }

    #[test]
    fn defaults_are_spires() {
        let c = parse("").unwrap();
        assert_eq!(
            c,
            K8sBundleConfig {
                namespace: "spire".into(),
                config_map: "spire-bundle".into(),
                config_map_key: "bundle.crt".into(),
                kube_config_file: None,
            }
        );
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"            namespace = "infra"
            config_map = "trust"
            config_map_key = "ca.pem"
            kube_config_file = "/etc/kube.conf""#,
        )
        .unwrap();
        assert_eq!(c.namespace, "infra");
        assert_eq!(c.config_map, "trust");
        assert_eq!(c.config_map_key, "ca.pem");
        assert_eq!(c.kube_config_file, Some(PathBuf::from("/etc/kube.conf")));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("            namespace = \"spire\"\n            webhook_label = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("webhook_label"), "{err}");
        assert!(err.contains("server.conf:"), "{err}");
    }

    /// The whole file: `Notifier` is a known kind, `k8sbundle` its only
    /// name, and it may be configured once.
    fn load(notifiers: &str) -> Result<Option<K8sBundleConfig>, String> {
        let text = format!(
            "server {{\n    trust_domain = \"example.org\"\n    data_dir = \"./data\"\n}}\nplugins {{\n    DataStore \"sled\" {{}}\n    KeyManager \"memory\" {{}}\n{notifiers}\n}}\n"
        );
        let file = ConfigFile::parse(Path::new("server.conf"), &text).map_err(|e| e.to_string())?;
        crate::config::from_file(&file, &crate::config::Overrides::default())
            .map(|c| c.plugins.k8sbundle)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn server_conf_rules() {
        assert_eq!(load("").unwrap(), None);
        let one = "    Notifier \"k8sbundle\" {\n        plugin_data {}\n    }\n";
        assert_eq!(load(one).unwrap().unwrap().config_map, "spire-bundle");
        let err = load(&format!("{one}{one}")).unwrap_err();
        assert!(err.contains("server.conf:"), "{err}");
        let err =
            load("    Notifier \"gcs_bundle\" {\n        plugin_data {}\n    }\n").unwrap_err();
        assert!(
            err.contains("gcs_bundle") && err.contains("k8sbundle"),
            "{err}"
        );
    }

    #[test]
    fn bad_names_are_refused_naming_the_key() {
        let err = parse("            config_map = \"Bad_Name\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`config_map`"), "{err}");
        let err = parse("            namespace = \"-x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`namespace`"), "{err}");
        let err = parse("            config_map_key = \"a/b\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`config_map_key`"), "{err}");
    }
}
