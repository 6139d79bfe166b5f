//! Tests of the [`plugins`](super) block.

use std::path::Path;

use serde::Deserialize;

use super::*;
use crate::hcl::ConfigFile;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct DiskData {
    keys_path: String,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct OptionalData {
    #[serde(default)]
    trust_bundle_path: Option<String>,
}

fn plugins(source: &str) -> Result<Vec<PluginDecl>, ConfigError> {
    ConfigFile::parse(Path::new("agent.conf"), source)?.plugins()
}

#[test]
fn decodes_plugin_data() {
    let list = plugins("plugins {\n  KeyManager \"disk\" {\n    plugin_data {\n      keys_path = \"k.json\"\n    }\n  }\n}\n").unwrap();
    assert_eq!(list.len(), 1);
    let plugin = &list[0];
    assert_eq!(
        (plugin.kind.as_str(), plugin.name.as_str(), plugin.line),
        ("KeyManager", "disk", 2)
    );
    assert!(plugin.enabled);
    assert_eq!(plugin.location(), "agent.conf:2");
    assert_eq!(plugin.data::<DiskData>().unwrap().keys_path, "k.json");
}

#[test]
fn unknown_key_in_plugin_data_names_key_and_line() {
    let list = plugins("plugins {\n  KeyManager \"disk\" {\n    plugin_data {\n      keys_path = \"k\"\n      key_path = \"k\"\n    }\n  }\n}\n").unwrap();
    let err = list[0].data::<DiskData>().unwrap_err();
    match &err {
        ConfigError::UnknownKey { line, key_path, .. } => {
            assert_eq!(*line, 5);
            assert_eq!(key_path, "plugins.KeyManager.disk.plugin_data.key_path");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        err.to_string().starts_with("agent.conf:5: unknown key"),
        "{err}"
    );
}

#[test]
fn empty_or_missing_plugin_data_is_an_empty_object() {
    let list = plugins("plugins {\n  NodeAttestor \"join_token\" {\n    plugin_data {}\n  }\n  WorkloadAttestor \"unix\" {\n  }\n}\n").unwrap();
    assert_eq!(list.len(), 2);
    for plugin in &list {
        assert_eq!(
            plugin.data::<OptionalData>().unwrap(),
            OptionalData::default()
        );
        let _: std::collections::BTreeMap<String, String> = plugin.data().unwrap();
    }
    let err = list[1].data::<DiskData>().unwrap_err().to_string();
    assert_eq!(
        err,
        "agent.conf:5: missing required key `plugins.WorkloadAttestor.unix.plugin_data.keys_path`"
    );
}

#[test]
fn several_plugins_of_one_kind_keep_file_order_and_lines() {
    let source = "plugins {\n  NodeAttestor \"join_token\" {\n    plugin_data {}\n  }\n  KeyManager \"memory\" {\n  }\n  NodeAttestor \"x509pop\" {\n    plugin_data = { trust_bundle_path = \"ca.pem\" }\n  }\n}\n";
    let list = plugins(source).unwrap();
    let seen: Vec<_> = list
        .iter()
        .map(|p| (p.kind.as_str(), p.name.as_str(), p.line))
        .collect();
    assert_eq!(
        seen,
        [
            ("NodeAttestor", "join_token", 2),
            ("KeyManager", "memory", 5),
            ("NodeAttestor", "x509pop", 7)
        ]
    );
    let data: OptionalData = list[2].data().unwrap();
    assert_eq!(data.trust_bundle_path.as_deref(), Some("ca.pem"));
    let err = single_plugin(Path::new("agent.conf"), &list, "NodeAttestor").unwrap_err();
    assert_eq!(
        err.to_string(),
        "agent.conf:7: only one NodeAttestor plugin may be enabled, but \"join_token\" at line 2 is enabled too"
    );
    assert_eq!(
        single_plugin(Path::new("agent.conf"), &list, "KeyManager")
            .unwrap()
            .name,
        "memory"
    );
    let err = single_plugin(Path::new("agent.conf"), &list, "DataStore").unwrap_err();
    assert_eq!(
        err.to_string(),
        "agent.conf: no enabled DataStore plugin is configured; exactly one is required"
    );
}

#[test]
fn same_kind_and_name_twice_is_a_duplicate() {
    let err = plugins("plugins {\n  NodeAttestor \"a\" {\n  }\n  NodeAttestor \"a\" {\n  }\n}\n")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "agent.conf:4: `plugins.NodeAttestor.a` is already defined at line 2"
    );
}

#[test]
fn external_plugins_are_rejected_unless_disabled() {
    let err = plugins("plugins {\n  NodeAttestor \"custom\" {\n    plugin_cmd = \"/bin/x\"\n    plugin_checksum = \"ab\"\n  }\n}\n").unwrap_err();
    match &err {
        ConfigError::ExternalPlugin {
            line,
            kind,
            name,
            key,
            ..
        } => {
            assert_eq!(
                (*line, kind.as_str(), name.as_str(), *key),
                (3, "NodeAttestor", "custom", "plugin_cmd")
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("external plugins are not supported"),
        "{err}"
    );
    let err =
        plugins("plugins {\n  X \"y\" {\n    plugin_checksum = \"ab\"\n  }\n}\n").unwrap_err();
    assert!(matches!(
        err,
        ConfigError::ExternalPlugin {
            line: 3,
            key: "plugin_checksum",
            ..
        }
    ));
    let list = plugins("plugins {\n  NodeAttestor \"custom\" {\n    plugin_cmd = \"/bin/x\"\n    enabled = false\n  }\n}\n").unwrap();
    assert!(!list[0].enabled);
}

#[test]
fn unsupported_plugin_messages_name_everything() {
    let list = plugins("\nplugins {\n  NodeAttestor \"aws_iid\" {\n  }\n}\n").unwrap();
    let err = list[0].unsupported(&["join_token", "x509pop"]);
    assert_eq!(
        err.to_string(),
        "agent.conf:3: unsupported NodeAttestor plugin \"aws_iid\"; supported: join_token, x509pop"
    );
    let err = list[0].unsupported_kind(&["KeyManager"]);
    assert_eq!(
        err.to_string(),
        "agent.conf:3: unsupported plugin type NodeAttestor; supported types: KeyManager"
    );
    assert!(list[0]
        .unsupported(&[])
        .to_string()
        .ends_with("supported: none"));
}

#[test]
fn malformed_plugin_blocks_are_explained() {
    let err = plugins("plugins {\n  NodeAttestor {\n  }\n}\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "agent.conf:2: `plugins.NodeAttestor`: a plugin needs a name, as in `NodeAttestor \"name\" { ... }`"
    );
    let err = plugins("plugins {\n  NodeAttestor \"a\" \"b\" {\n  }\n}\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "agent.conf:2: `plugins.NodeAttestor.a`: a plugin takes exactly one name label"
    );
    let err = plugins("plugins {\n  K \"n\" {\n    plugin_dta {}\n  }\n}\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "agent.conf:3: unknown key `plugins.K.n.plugin_dta`; expected one of `plugin_data`, `plugin_data_file`, `enabled`"
    );
    let err = plugins("plugins {\n  K \"n\" {\n    enabled = \"no\"\n  }\n}\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "agent.conf:3: invalid value for `plugins.K.n.enabled`: expected `true` or `false`"
    );
    let err = plugins("plugins {\n  K \"n\" {\n    plugin_data = \"x\"\n  }\n}\n").unwrap_err();
    assert!(
        matches!(err, ConfigError::InvalidValue { line: 3, .. }),
        "{err}"
    );
    let err = plugins("plugins = 1\n").unwrap_err().to_string();
    assert_eq!(err, "agent.conf:1: `plugins`: must be a block");
    assert!(plugins("server {}\n").unwrap().is_empty());
}

#[test]
fn plugin_data_file_is_read_and_errors_point_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("disk.hcl");
    std::fs::write(&data_path, "# keys\nkeys_path = \"k.json\"\n").unwrap();
    let source = format!(
        "plugins {{\n  KeyManager \"disk\" {{\n    plugin_data_file = {:?}\n  }}\n}}\n",
        data_path.display().to_string()
    );
    let list = plugins(&source).unwrap();
    assert_eq!(list[0].data::<DiskData>().unwrap().keys_path, "k.json");

    std::fs::write(&data_path, "\n\nkeys_pth = \"k.json\"\n").unwrap();
    let list = plugins(&source).unwrap();
    let err = list[0].data::<DiskData>().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}:3: unknown key `plugins.KeyManager.disk.plugin_data.keys_pth`",
            data_path.display()
        )),
        "{err}"
    );

    std::fs::remove_file(&data_path).unwrap();
    let err = plugins(&source).unwrap_err();
    assert!(
        matches!(err, ConfigError::PluginDataFile { line: 3, .. }),
        "{err}"
    );
    let disabled = source.replace(
        "    plugin_data_file",
        "    enabled = false\n    plugin_data_file",
    );
    assert!(!plugins(&disabled).unwrap()[0].enabled);

    let both = source.replace(
        "    plugin_data_file",
        "    plugin_data {}\n    plugin_data_file",
    );
    let err = plugins(&both).unwrap_err().to_string();
    assert!(
        err.contains("`plugin_data` and `plugin_data_file` cannot both be set"),
        "{err}"
    );
}
