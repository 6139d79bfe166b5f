//! `NodeAttestor "x509pop"`: SPIRE's plugin data, checked.
//!
//! ```hcl
//! NodeAttestor "x509pop" {
//!     plugin_data {
//!         ca_bundle_path = "/opt/spinel/agent-cacert.pem"   # or ca_bundle_paths = [...]
//!         # agent_path_template = "/cn/{{ .Subject.CommonName }}"
//!         # mode = "external_pki"                           # the default, the only mode
//!     }
//! }
//! ```
//!
//! Exactly one of `ca_bundle_path` and `ca_bundle_paths` is required.
//! `mode = "spiffe"` (SPIRE's SVID exchange) is refused as not supported
//! yet; `spiffe_prefix` (SPIRE's key; its docs say `svid_prefix`, accepted
//! too) applies only to that mode. The CA files are read when the server
//! starts.

use std::path::PathBuf;

use serde::Deserialize;
use spinel_config::hcl::PluginDecl;

use super::ConfigLoadError;
use crate::attestor::node::x509pop::AgentPathTemplate;

/// `plugin_data` of `NodeAttestor "x509pop"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509popData {
    /// `external_pki` (default) or `spiffe` (not supported).
    #[serde(default)]
    pub mode: Option<String>,
    /// SVID prefix of mode `spiffe` (SPIRE's HCL key).
    #[serde(default)]
    pub spiffe_prefix: Option<String>,
    /// The same, as SPIRE's documentation spells it.
    #[serde(default)]
    pub svid_prefix: Option<String>,
    /// One PEM file of trusted roots.
    #[serde(default)]
    pub ca_bundle_path: Option<String>,
    /// Several PEM files of trusted roots.
    #[serde(default)]
    pub ca_bundle_paths: Option<Vec<String>>,
    /// The agent ID path after `/spire/agent`.
    #[serde(default)]
    pub agent_path_template: Option<String>,
}

/// `NodeAttestor "x509pop"`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509popConfig {
    /// The PEM files of trusted roots.
    pub ca_bundle_paths: Vec<PathBuf>,
    /// The agent ID path template.
    pub agent_path_template: AgentPathTemplate,
}

/// Decodes and checks the plugin data of `decl`.
pub fn resolve(decl: &PluginDecl) -> Result<X509popConfig, ConfigLoadError> {
    let data: X509popData = decl.data()?;
    let invalid = |message: String| ConfigLoadError::Unsupported {
        location: decl.location(),
        message: format!("NodeAttestor \"x509pop\": {message}"),
    };
    match data.mode.as_deref() {
        None | Some("") | Some("external_pki") => {}
        Some("spiffe") => {
            return Err(invalid(
                "`mode = \"spiffe\"` (exchanging an SVID of this trust domain) is not supported yet: use mode \"external_pki\" with `ca_bundle_path`".into(),
            ))
        }
        Some(other) => {
            return Err(invalid(format!(
                "`mode` {other:?}: mode can only be either spiffe or external_pki"
            )))
        }
    }
    let one = data.ca_bundle_path.filter(|p| !p.is_empty());
    let many = data.ca_bundle_paths.unwrap_or_default();
    let paths = match (one, many.is_empty()) {
        (Some(_), false) => {
            return Err(invalid(
                "only one of ca_bundle_path or ca_bundle_paths can be configured, not both".into(),
            ))
        }
        (Some(path), true) => vec![path],
        (None, false) => many,
        (None, true) => {
            return Err(invalid(
                "one of ca_bundle_path or ca_bundle_paths must be configured".into(),
            ))
        }
    };
    if paths.iter().any(String::is_empty) {
        return Err(invalid("`ca_bundle_paths` holds an empty path".into()));
    }
    let agent_path_template = match data.agent_path_template.as_deref() {
        None | Some("") => AgentPathTemplate::default(),
        Some(text) => AgentPathTemplate::parse(text)
            .map_err(|e| invalid(format!("`agent_path_template`: {e}")))?,
    };
    Ok(X509popConfig {
        ca_bundle_paths: paths.into_iter().map(PathBuf::from).collect(),
        agent_path_template,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use spinel_config::hcl::ConfigFile;

    use super::*;

    fn parse(plugin_data: &str) -> Result<X509popConfig, ConfigLoadError> {
        let text = format!(
            "plugins {{\n    NodeAttestor \"x509pop\" {{\n        plugin_data {{\n{plugin_data}\n        }}\n    }}\n}}\n"
        );
        let file = ConfigFile::parse(Path::new("server.conf"), &text).unwrap();
        let decls = file.plugins().unwrap();
        resolve(&decls[0])
    }

    #[test]
    fn spire_shape_with_defaults() {
        let c = parse("ca_bundle_path = \"/etc/ca.pem\"").unwrap();
        assert_eq!(c.ca_bundle_paths, [PathBuf::from("/etc/ca.pem")]);
        assert_eq!(
            c.agent_path_template.as_str(),
            "/{{ .PluginName }}/{{ .Fingerprint }}"
        );
        let c = parse(
            "ca_bundle_paths = [\"/a.pem\", \"/b.pem\"]\nmode = \"external_pki\"\nagent_path_template = \"/cn/{{ .Subject.CommonName }}\"",
        )
        .unwrap();
        assert_eq!(c.ca_bundle_paths.len(), 2);
        assert_eq!(
            c.agent_path_template.as_str(),
            "/cn/{{ .Subject.CommonName }}"
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_problem() {
        for (data, needle) in [
            ("", "one of ca_bundle_path or ca_bundle_paths"),
            (
                "ca_bundle_path = \"/a\"\nca_bundle_paths = [\"/b\"]",
                "not both",
            ),
            ("mode = \"spiffe\"", "not supported yet"),
            (
                "mode = \"other\"\nca_bundle_path = \"/a\"",
                "either spiffe or external_pki",
            ),
            (
                "ca_bundle_path = \"/a\"\nagent_path_template = \"/{{ .Subject.Organization }}\"",
                ".Subject.Organization",
            ),
            (
                "ca_bundle_path = \"/a\"\nagent_path_template = \"{{ .Fingerprint }}\"",
                "must start with",
            ),
        ] {
            let err = parse(data).unwrap_err().to_string();
            assert!(err.contains(needle), "{data}: {err}");
            assert!(err.contains("server.conf:2"), "{data}: {err}");
        }
        let err = parse("ca_bundle_path = \"/a\"\ncabundle = \"/b\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cabundle"), "{err}");
    }
}
