//! The `plugins { Kind "name" { ... } }` block.
//!
//! Each plugin is a block with a kind and a name label. Its body may hold
//! `plugin_data { ... }` (or `plugin_data = { ... }`), `plugin_data_file =
//! "path"` (an HCL file holding the same, read relative to the working
//! directory as SPIRE does) and `enabled = false`. `plugin_cmd` and
//! `plugin_checksum` ask for external plugin binaries, which Spinel does not
//! run: they are rejected unless the plugin is disabled. Several plugins of
//! one kind are allowed; the consumer decides which kinds and names exist.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::error::ConfigError;
use super::tree::{Builder, Node, NodeValue};

/// The keys a plugin block accepts, for error messages.
const PLUGIN_KEYS: &str = "expected one of `plugin_data`, `plugin_data_file`, `enabled`";

/// One plugin declared in the `plugins` block.
#[derive(Debug, Clone)]
pub struct PluginDecl {
    /// The plugin kind, such as `NodeAttestor`.
    pub kind: String,
    /// The plugin name, such as `join_token`.
    pub name: String,
    /// The configuration file declaring the plugin.
    pub path: PathBuf,
    /// One-based line of the plugin's block.
    pub line: usize,
    /// `false` when the block says `enabled = false`: such a plugin must be
    /// ignored.
    pub enabled: bool,
    /// The plugin data (an empty object when there is none).
    data: Node,
    /// The file the data comes from: `path`, or the `plugin_data_file`.
    data_path: PathBuf,
}

impl PluginDecl {
    /// Decodes the plugin data into `T`.
    ///
    /// Give `T` `#[serde(deny_unknown_fields)]`: unknown keys then fail with
    /// the key, its dotted path (`plugins.KeyManager.disk.plugin_data.x`)
    /// and `file:line`. A missing or empty `plugin_data` decodes as an empty
    /// object, so a `T` whose fields all have defaults always succeeds.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let prefix = format!("plugins.{}.{}.plugin_data", self.kind, self.name);
        self.data.deserialize(&self.data_path, &prefix)
    }

    /// `file:line` of the plugin's block.
    pub fn location(&self) -> String {
        format!("{}:{}", self.path.display(), self.line)
    }

    /// The error for a plugin name this program does not have, listing the
    /// `supported` names of the plugin's kind.
    pub fn unsupported(&self, supported: &[&str]) -> ConfigError {
        ConfigError::UnsupportedPlugin {
            path: self.path.clone(),
            line: self.line,
            kind: self.kind.clone(),
            name: self.name.clone(),
            supported: list(supported),
        }
    }

    /// The error for a plugin kind this program does not have, listing the
    /// `supported` kinds.
    pub fn unsupported_kind(&self, supported: &[&str]) -> ConfigError {
        ConfigError::UnsupportedPluginKind {
            path: self.path.clone(),
            line: self.line,
            kind: self.kind.clone(),
            supported: list(supported),
        }
    }
}

/// The one enabled plugin of `kind` (for kinds such as `DataStore` that need
/// exactly one); `path` is the configuration file, for the error when there
/// is none.
pub fn single_plugin<'a>(
    path: &Path,
    plugins: &'a [PluginDecl],
    kind: &str,
) -> Result<&'a PluginDecl, ConfigError> {
    let mut enabled = plugins.iter().filter(|p| p.enabled && p.kind == kind);
    let first = enabled.next().ok_or_else(|| ConfigError::MissingPlugin {
        path: path.to_owned(),
        kind: kind.to_owned(),
    })?;
    match enabled.next() {
        None => Ok(first),
        Some(second) => Err(ConfigError::TooManyPlugins {
            path: second.path.clone(),
            line: second.line,
            kind: kind.to_owned(),
            first_name: first.name.clone(),
            first_line: first.line,
        }),
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Collects the plugins of the file `path` whose tree is `root`, in file
/// order; `read` reads `plugin_data_file`s.
pub(crate) fn collect(
    path: &Path,
    root: &Node,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Vec<PluginDecl>, ConfigError> {
    let structure = |line: usize, key_path: String, message: String| ConfigError::Structure {
        path: path.to_owned(),
        line,
        key_path,
        message,
    };
    let Some(plugins) = root.get("plugins") else {
        return Ok(Vec::new());
    };
    let blocks: Vec<&Node> = match &plugins.value {
        NodeValue::Array(items) => items.iter().collect(),
        _ => vec![plugins],
    };
    let mut out = Vec::new();
    for block in blocks {
        let NodeValue::Object(kinds) = &block.value else {
            return Err(structure(
                block.line,
                "plugins".into(),
                "must be a block".into(),
            ));
        };
        for (kind, kind_node) in kinds {
            let key_path = format!("plugins.{kind}");
            let named = match &kind_node.value {
                NodeValue::Object(named) if kind_node.from_labels => named,
                _ => {
                    let message =
                        format!("a plugin needs a name, as in `{kind} \"name\" {{ ... }}`");
                    return Err(structure(kind_node.line, key_path, message));
                }
            };
            for (name, body) in named {
                if body.from_labels {
                    let message = "a plugin takes exactly one name label".to_owned();
                    return Err(structure(body.line, format!("{key_path}.{name}"), message));
                }
                out.push(plugin(path, kind, name, body, read)?);
            }
        }
    }
    out.sort_by_key(|p| p.line);
    Ok(out)
}

/// Decodes one plugin body.
fn plugin(
    path: &Path,
    kind: &str,
    name: &str,
    body: &Node,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<PluginDecl, ConfigError> {
    let key_path = format!("plugins.{kind}.{name}");
    let NodeValue::Object(entries) = &body.value else {
        return Err(ConfigError::Structure {
            path: path.to_owned(),
            line: body.line,
            key_path,
            message: "must be a block".to_owned(),
        });
    };
    let mut enabled = true;
    let mut data: Option<&Node> = None;
    let mut data_file: Option<(&str, usize)> = None;
    let mut external: Option<(&'static str, usize)> = None;
    for (key, node) in entries {
        let invalid = |message: &str| ConfigError::InvalidValue {
            path: path.to_owned(),
            line: node.line,
            key_path: format!("{key_path}.{key}"),
            message: message.to_owned(),
        };
        match (key.as_str(), &node.value) {
            ("enabled", NodeValue::Scalar(hcl::Value::Bool(b))) => enabled = *b,
            ("enabled", _) => return Err(invalid("expected `true` or `false`")),
            ("plugin_data", NodeValue::Object(_)) => data = Some(node),
            ("plugin_data", NodeValue::Scalar(hcl::Value::Null)) => {}
            ("plugin_data", _) => {
                return Err(invalid("expected a block, as in `plugin_data { ... }`"))
            }
            ("plugin_data_file", NodeValue::Scalar(hcl::Value::String(s))) => {
                data_file = Some((s, node.line));
            }
            ("plugin_data_file", _) => return Err(invalid("expected a file path string")),
            ("plugin_cmd", _) => external = Some(("plugin_cmd", node.line)),
            ("plugin_checksum", _) => external = external.or(Some(("plugin_checksum", node.line))),
            (other, _) => {
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    line: node.line,
                    key_path: format!("{key_path}.{other}"),
                    expected: PLUGIN_KEYS.to_owned(),
                })
            }
        }
    }
    if let (true, Some((key, line))) = (enabled, external) {
        return Err(ConfigError::ExternalPlugin {
            path: path.to_owned(),
            line,
            kind: kind.to_owned(),
            name: name.to_owned(),
            key,
        });
    }
    let (data, data_path) = match (data, data_file) {
        _ if !enabled => (Node::empty_object(body.line), path.to_owned()),
        (Some(_), Some((_, line))) => {
            return Err(ConfigError::Structure {
                path: path.to_owned(),
                line,
                key_path: format!("{key_path}.plugin_data_file"),
                message: "`plugin_data` and `plugin_data_file` cannot both be set".to_owned(),
            })
        }
        (Some(data), None) => (data.clone(), path.to_owned()),
        (None, Some((file, line))) => {
            let data_path = PathBuf::from(file);
            let text = read(&data_path).map_err(|source| ConfigError::PluginDataFile {
                path: path.to_owned(),
                line,
                kind: kind.to_owned(),
                name: name.to_owned(),
                data_file: data_path.clone(),
                source,
            })?;
            (Builder::new(&data_path, &text).parse()?, data_path)
        }
        (None, None) => (Node::empty_object(body.line), path.to_owned()),
    };
    Ok(PluginDecl {
        kind: kind.to_owned(),
        name: name.to_owned(),
        path: path.to_owned(),
        line: body.line,
        enabled,
        data,
        data_path,
    })
}

#[cfg(test)]
mod tests;
