//! `NodeAttestor "k8s_psat"`: SPIRE's plugin data, checked.
//!
//! ```hcl
//! NodeAttestor "k8s_psat" {
//!     plugin_data {
//!         clusters = {
//!             "demo" = {
//!                 service_account_allow_list = ["spire:spire-agent"]
//!                 audience = ["spire-server"]          # the default
//!                 kube_config_file = "/etc/kube/demo"  # empty: in-cluster
//!                 allowed_node_label_keys = ["topology.kubernetes.io/zone"]
//!                 allowed_pod_label_keys = ["app"]
//!             }
//!         }
//!     }
//! }
//! ```
//!
//! Unknown keys, in the plugin data or inside a cluster, are errors naming
//! the key and line. A cluster needs at least one allowed service account
//! (`<namespace>:<name>`); its name becomes a segment of agent IDs, so it
//! must be a valid SPIFFE ID path segment. The kubeconfig itself is read
//! when the server starts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use spinel_config::hcl::PluginDecl;

use super::ConfigLoadError;
use crate::attestor::node::k8s_psat::{ClusterConfig, DEFAULT_AUDIENCE};

/// `plugin_data` of `NodeAttestor "k8s_psat"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sPsatData {
    /// Clusters by name, as agents name them in their payload.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterData>,
}

/// One cluster of `clusters = { "<name>" = { ... } }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterData {
    /// `<namespace>:<service account>` pairs allowed to attest.
    #[serde(default)]
    pub service_account_allow_list: Vec<String>,
    /// Audiences of the tokens (default `["spire-server"]`).
    #[serde(default)]
    pub audience: Option<Vec<String>>,
    /// Kubeconfig of the cluster's API server (empty: in-cluster config).
    #[serde(default)]
    pub kube_config_file: String,
    /// Node label keys that become `agent_node_label` selectors.
    #[serde(default)]
    pub allowed_node_label_keys: Vec<String>,
    /// Pod label keys that become `agent_pod_label` selectors.
    #[serde(default)]
    pub allowed_pod_label_keys: Vec<String>,
}

/// One cluster, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sPsatCluster {
    /// The checks.
    pub checks: ClusterConfig,
    /// The kubeconfig (`None`: in-cluster config).
    pub kube_config_file: Option<PathBuf>,
}

/// `NodeAttestor "k8s_psat"`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sPsatConfig {
    /// Clusters by name.
    pub clusters: BTreeMap<String, K8sPsatCluster>,
}

/// Decodes and checks the plugin data of `decl`.
pub fn resolve(decl: &PluginDecl) -> Result<K8sPsatConfig, ConfigLoadError> {
    let data: K8sPsatData = decl.data()?;
    let invalid = |message: String| ConfigLoadError::Unsupported {
        location: decl.location(),
        message: format!("NodeAttestor \"k8s_psat\": {message}"),
    };
    if data.clusters.is_empty() {
        return Err(invalid(
            "configuration must have at least one cluster in `clusters`".into(),
        ));
    }
    let mut clusters = BTreeMap::new();
    for (name, cluster) in data.clusters {
        if !valid_segment(&name) {
            return Err(invalid(format!(
                "cluster name {name:?} must be a SPIFFE ID path segment (letters, digits, `.`, `-`, `_`): it is part of agent IDs"
            )));
        }
        if cluster.service_account_allow_list.is_empty() {
            return Err(invalid(format!(
                "cluster {name:?}: `service_account_allow_list` must name at least one service account"
            )));
        }
        for sa in &cluster.service_account_allow_list {
            let ok = sa
                .split_once(':')
                .is_some_and(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains(':'));
            if !ok {
                return Err(invalid(format!(
                    "cluster {name:?}: service account {sa:?} must be `<namespace>:<name>`"
                )));
            }
        }
        let audience = cluster
            .audience
            .unwrap_or_else(|| vec![DEFAULT_AUDIENCE.to_owned()]);
        if audience.is_empty() || audience.iter().any(String::is_empty) {
            return Err(invalid(format!(
                "cluster {name:?}: `audience` must hold non-empty audiences (default [\"{DEFAULT_AUDIENCE}\"])"
            )));
        }
        clusters.insert(
            name,
            K8sPsatCluster {
                checks: ClusterConfig {
                    service_account_allow_list: cluster
                        .service_account_allow_list
                        .into_iter()
                        .collect(),
                    audience,
                    allowed_node_label_keys: cluster.allowed_node_label_keys.into_iter().collect(),
                    allowed_pod_label_keys: cluster.allowed_pod_label_keys.into_iter().collect(),
                },
                kube_config_file: Some(cluster.kube_config_file)
                    .filter(|f| !f.is_empty())
                    .map(PathBuf::from),
            },
        );
    }
    Ok(K8sPsatConfig { clusters })
}

fn valid_segment(text: &str) -> bool {
    !text.is_empty()
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use spinel_config::hcl::ConfigFile;

    use super::*;

    fn parse(plugin_data: &str) -> Result<K8sPsatConfig, ConfigLoadError> {
        let text = format!(
            "plugins {{\n    NodeAttestor \"k8s_psat\" {{\n        plugin_data {{\n{plugin_data}\n        }}\n    }}\n}}\n"
        );
        let file = ConfigFile::parse(Path::new("server.conf"), &text).unwrap();
        let decls = file.plugins().unwrap();
        resolve(&decls[0])
    }

    #[test]
    fn spire_shape_with_defaults() {
        let c = parse(
            r#"            clusters = {
                "demo" = {
                    service_account_allow_list = ["spire:spire-agent"]
                    kube_config_file = "/etc/kube.conf"
                    allowed_node_label_keys = ["zone"]
                }
                "in-cluster" = {
                    service_account_allow_list = ["a:b", "c:d"]
                    audience = ["x", "y"]
                }
            }"#,
        )
        .unwrap();
        let demo = &c.clusters["demo"];
        assert_eq!(demo.checks.audience, ["spire-server"]);
        assert_eq!(demo.kube_config_file, Some(PathBuf::from("/etc/kube.conf")));
        assert!(demo.checks.allowed_node_label_keys.contains("zone"));
        assert!(demo
            .checks
            .service_account_allow_list
            .contains("spire:spire-agent"));
        let other = &c.clusters["in-cluster"];
        assert_eq!(other.kube_config_file, None);
        assert_eq!(other.checks.audience, ["x", "y"]);
    }

    #[test]
    fn unknown_key_inside_a_cluster_names_key_and_line() {
        let err = parse(
            "            clusters = {\n                \"demo\" = {\n                    service_account_allow_list = [\"a:b\"]\n                    audiance = [\"x\"]\n                }\n            }",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("audiance"), "{err}");
        assert!(err.contains("server.conf:7"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        for (data, needle) in [
            ("", "at least one cluster"),
            (
                "clusters = { \"demo\" = { service_account_allow_list = [] } }",
                "at least one service account",
            ),
            (
                "clusters = { \"demo\" = { service_account_allow_list = [\"spire\"] } }",
                "<namespace>:<name>",
            ),
            (
                "clusters = { \"a/b\" = { service_account_allow_list = [\"a:b\"] } }",
                "path segment",
            ),
            (
                "clusters = { \"demo\" = { service_account_allow_list = [\"a:b\"], audience = [] } }",
                "audience",
            ),
        ] {
            let err = parse(data).unwrap_err().to_string();
            assert!(err.contains(needle), "{data}: {err}");
            assert!(err.contains("server.conf:2"), "{data}: {err}");
        }
    }
}
