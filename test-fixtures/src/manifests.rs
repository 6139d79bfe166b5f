//! Reading the shipped Kubernetes manifests (`conf/k8s/`), so tests parse
//! the configuration files embedded in their ConfigMaps with the real
//! config loaders and the manifests cannot drift from the code.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The repository's `conf/k8s` directory.
pub fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/k8s")
}

/// `data[key]` of the ConfigMap in `file` (a YAML file of one or more
/// documents).
pub fn configmap_value(file: &Path, key: &str) -> Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = serde_yaml_ng::Value::deserialize(document)
            .with_context(|| format!("{} is not valid YAML", file.display()))?;
        if value["kind"].as_str() != Some("ConfigMap") {
            continue;
        }
        if let Some(found) = value["data"][key].as_str() {
            return Ok(found.to_owned());
        }
    }
    anyhow::bail!("{} has no ConfigMap with data.{key}", file.display())
}
