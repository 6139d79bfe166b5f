//! Loading SPIRE-shaped HCL configuration files with precise errors.
//!
//! A file is parsed once into a [`ConfigFile`]; each top-level block is then
//! decoded on demand with [`ConfigFile::section`] into a consumer type that
//! uses `#[serde(deny_unknown_fields)]`, and the `plugins` block is read with
//! [`ConfigFile::plugins`]. Every error names the file, the line and the
//! dotted key path, such as
//! `server.conf:3: unknown key `server.bind_prot`; expected one of ...`.
//!
//! The syntax follows SPIRE (HCL 1 semantics on an HCL 2 parser): see the
//! tree module for how blocks, labels and repeated blocks map to values. For
//! numbers SPIRE accepts either as `8081` or `"8081"`, and for Go durations,
//! see [`crate::de`].
//!
//! ```
//! use std::path::Path;
//! use serde::Deserialize;
//! use spinel_config::hcl::ConfigFile;
//!
//! #[derive(Debug, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Server {
//!     #[serde(deserialize_with = "spinel_config::de::u16_or_string")]
//!     bind_port: u16,
//! }
//!
//! let file = ConfigFile::parse(Path::new("server.conf"), "server {\n  bind_prot = 1\n}\n")?;
//! let err = file.section::<Server>("server").unwrap_err();
//! assert!(err.to_string().starts_with("server.conf:2: unknown key `server.bind_prot`"));
//! # Ok::<(), spinel_config::hcl::ConfigError>(())
//! ```

mod error;
mod plugins;
mod source;
mod tree;

#[cfg(test)]
mod samples_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use error::ConfigError;
pub use plugins::{single_plugin, PluginDecl};
pub use source::expand_env;

use tree::{Builder, Node, NodeValue};

/// A parsed configuration file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The path used in messages.
    path: PathBuf,
    /// The whole file as an object node.
    root: Node,
}

impl ConfigFile {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(path, &read_file(path)?)
    }

    /// Reads the file at `path`, expands `$VAR` and `${VAR}` in it with
    /// [`expand_env`] (SPIRE's `-expandEnv`), and parses it.
    ///
    /// `lookup` gives a variable's value; pass
    /// `|name| std::env::var(name).ok()` for the process environment. As in
    /// SPIRE, substitution happens before parsing, so a value holding a
    /// newline shifts the line numbers of later errors.
    pub fn read_expand_env(
        path: &Path,
        lookup: impl FnMut(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::parse(path, &expand_env(&read_file(path)?, lookup))
    }

    /// Parses `source`; `path` is only used in messages.
    pub fn parse(path: &Path, source: &str) -> Result<Self, ConfigError> {
        let root = Builder::new(path, source).parse()?;
        Ok(ConfigFile {
            path: path.to_owned(),
            root,
        })
    }

    /// The path of the file, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the top-level blocks and keys, in file order.
    pub fn section_names(&self) -> Vec<&str> {
        match &self.root.value {
            NodeValue::Object(entries) => entries.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// Fails on the first top-level block whose name is not in `allowed`
    /// (such as `["server", "plugins", "health_checks", "telemetry"]`).
    pub fn check_top_level(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        let NodeValue::Object(entries) = &self.root.value else {
            return Ok(());
        };
        match entries
            .iter()
            .find(|(name, _)| !allowed.contains(&name.as_str()))
        {
            None => Ok(()),
            Some((name, node)) => Err(ConfigError::UnknownSection {
                path: self.path.clone(),
                line: node.line,
                name: name.clone(),
                allowed: allowed.join(", "),
            }),
        }
    }

    /// Whether the file has a top-level block `name`.
    pub fn has_section(&self, name: &str) -> bool {
        self.root.get(name).is_some()
    }

    /// The one-based line of the key or block at `key_path` (such as
    /// `["server", "oidc_discovery"]`), for errors about a value that is
    /// wrong only together with others; `None` when it is absent. A
    /// repeated block gives its first occurrence.
    pub fn line_of(&self, key_path: &[&str]) -> Option<usize> {
        let mut node = &self.root;
        for key in key_path {
            node = node.get(key)?;
            if let NodeValue::Array(items) = &node.value {
                if items
                    .first()
                    .is_some_and(|i| matches!(i.value, NodeValue::Object(_)))
                {
                    node = items.first()?;
                }
            }
        }
        Some(node.line)
    }

    /// Decodes the required top-level block `name` (such as `server`) into
    /// `T`, which should use `#[serde(deny_unknown_fields)]`.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<T, ConfigError> {
        self.optional_section(name)?
            .ok_or_else(|| ConfigError::MissingSection {
                path: self.path.clone(),
                name: name.to_owned(),
            })
    }

    /// Decodes the top-level block `name` into `T` if the file has it.
    pub fn optional_section<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(node) = self.root.get(name) else {
            return Ok(None);
        };
        if let NodeValue::Array(items) = &node.value {
            if let [first, second, ..] = items.as_slice() {
                return Err(ConfigError::Structure {
                    path: self.path.clone(),
                    line: second.line,
                    key_path: name.to_owned(),
                    message: format!("the block is given twice (first at line {})", first.line),
                });
            }
        }
        node.deserialize(&self.path, name).map(Some)
    }

    /// Decodes the whole file into `T`, for files whose settings are
    /// top-level attributes (spiffe-helper's `helper.conf`) rather than
    /// blocks.
    pub fn whole<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.root.deserialize(&self.path, "")
    }

    /// Decodes the top-level block `name` into `T`, or returns `T::default()`
    /// when the file does not have it.
    pub fn section_or_default<T: DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> Result<T, ConfigError> {
        Ok(self.optional_section(name)?.unwrap_or_default())
    }

    /// The plugins of the `plugins` block, in file order (an empty list when
    /// there is no such block). Disabled plugins are included, with
    /// [`PluginDecl::enabled`] `false`; their `plugin_data_file` is not read.
    pub fn plugins(&self) -> Result<Vec<PluginDecl>, ConfigError> {
        plugins::collect(&self.path, &self.root, &|path| {
            std::fs::read_to_string(path)
        })
    }
}

/// Reads a whole file as UTF-8.
fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}
