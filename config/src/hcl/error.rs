//! The error type of the [`hcl`](super) module.
//!
//! Every variant that concerns a place in a file carries the file path and
//! the one-based line, and displays as `file:line: ...` so that editors and
//! terminals can jump to it. Dotted key paths (`server.bind_port`,
//! `plugins.KeyManager.disk.plugin_data.keys_path`) name the offending key.

use std::io;
use std::path::PathBuf;

/// Errors raised while loading and decoding a SPIRE-shaped HCL file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file (the configuration or a `plugin_data_file`) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },

    /// The file is not syntactically valid HCL.
    #[error("{}:{line}:{column}: HCL syntax error: {message}", path.display())]
    Syntax {
        /// The file with the error.
        path: PathBuf,
        /// One-based line of the error.
        line: usize,
        /// One-based column of the error.
        column: usize,
        /// The parser's explanation.
        message: String,
    },

    /// A value is an HCL expression that configuration files may not use
    /// (variables, function calls, operators, `for` expressions...).
    #[error("{}:{line}: `{key_path}`: {what} are not supported in configuration files; use a literal value", path.display())]
    UnsupportedExpression {
        /// The file with the expression.
        path: PathBuf,
        /// One-based line of the expression.
        line: usize,
        /// Dotted path of the key whose value it is.
        key_path: String,
        /// What kind of expression it is, in the plural ("variables").
        what: &'static str,
    },

    /// The same key is defined twice in one block or object.
    #[error("{}:{line}: `{key_path}` is already defined at line {first_line}", path.display())]
    DuplicateKey {
        /// The file with the duplicate.
        path: PathBuf,
        /// One-based line of the second definition.
        line: usize,
        /// One-based line of the first definition.
        first_line: usize,
        /// Dotted path of the key.
        key_path: String,
    },

    /// A key is not one the configuration accepts (usually a typo).
    #[error("{}:{line}: unknown key `{key_path}`; {expected}", path.display())]
    UnknownKey {
        /// The file with the key.
        path: PathBuf,
        /// One-based line of the key.
        line: usize,
        /// Dotted path of the key, ending with the key itself.
        key_path: String,
        /// The accepted keys, as `expected one of ...`.
        expected: String,
    },

    /// A required key is absent from a block.
    #[error("{}:{line}: missing required key `{key_path}`", path.display())]
    MissingKey {
        /// The file that lacks the key.
        path: PathBuf,
        /// One-based line of the block that should contain the key.
        line: usize,
        /// Dotted path the key should have.
        key_path: String,
    },

    /// A value has the wrong type or is out of range.
    #[error("{}:{line}: invalid value for `{key_path}`: {message}", path.display())]
    InvalidValue {
        /// The file with the value.
        path: PathBuf,
        /// One-based line of the key holding the value.
        line: usize,
        /// Dotted path of the key.
        key_path: String,
        /// What was found and what was expected.
        message: String,
    },

    /// The file's layout is wrong: a block where a value belongs, a plugin
    /// without a name, a top-level block given twice...
    #[error("{}:{line}: `{key_path}`: {message}", path.display())]
    Structure {
        /// The file with the problem.
        path: PathBuf,
        /// One-based line of the problem.
        line: usize,
        /// Dotted path of the key concerned.
        key_path: String,
        /// What is wrong.
        message: String,
    },

    /// A required top-level block (such as `server`) is absent.
    #[error("{}: missing required `{name}` block", path.display())]
    MissingSection {
        /// The file that lacks the block.
        path: PathBuf,
        /// The block's name.
        name: String,
    },

    /// The file has a top-level block this program does not know.
    #[error("{}:{line}: unknown top-level block `{name}`; expected one of: {allowed}", path.display())]
    UnknownSection {
        /// The file with the block.
        path: PathBuf,
        /// One-based line of the block.
        line: usize,
        /// The block's name.
        name: String,
        /// The accepted names, comma-separated.
        allowed: String,
    },

    /// A plugin declares `plugin_cmd` or `plugin_checksum`: external plugin
    /// binaries are not supported, only built-in plugins.
    #[error("{}:{line}: plugin {kind} \"{name}\" sets `{key}`, but external plugins are not supported; only built-in plugins can be configured", path.display())]
    ExternalPlugin {
        /// The configuration file.
        path: PathBuf,
        /// One-based line of the offending key.
        line: usize,
        /// The plugin kind (`NodeAttestor`...).
        kind: String,
        /// The plugin name (`join_token`...).
        name: String,
        /// The key that asks for an external plugin.
        key: &'static str,
    },

    /// A plugin's `plugin_data_file` could not be read.
    #[error("{}:{line}: plugin {kind} \"{name}\": cannot read plugin_data_file {}: {source}", path.display(), data_file.display())]
    PluginDataFile {
        /// The configuration file.
        path: PathBuf,
        /// One-based line of the `plugin_data_file` key.
        line: usize,
        /// The plugin kind.
        kind: String,
        /// The plugin name.
        name: String,
        /// The data file named by the configuration.
        data_file: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },

    /// A plugin kind is not one this program has.
    #[error("{}:{line}: unsupported plugin type {kind}; supported types: {supported}", path.display())]
    UnsupportedPluginKind {
        /// The configuration file.
        path: PathBuf,
        /// One-based line of the plugin.
        line: usize,
        /// The plugin kind.
        kind: String,
        /// The supported kinds, comma-separated.
        supported: String,
    },

    /// A plugin name is not among the built-in plugins of its kind.
    #[error("{}:{line}: unsupported {kind} plugin \"{name}\"; supported: {supported}", path.display())]
    UnsupportedPlugin {
        /// The configuration file.
        path: PathBuf,
        /// One-based line of the plugin.
        line: usize,
        /// The plugin kind.
        kind: String,
        /// The plugin name.
        name: String,
        /// The supported names for this kind, comma-separated.
        supported: String,
    },

    /// No enabled plugin of a kind that needs exactly one is configured.
    #[error("{}: no enabled {kind} plugin is configured; exactly one is required", path.display())]
    MissingPlugin {
        /// The configuration file.
        path: PathBuf,
        /// The plugin kind.
        kind: String,
    },

    /// Several enabled plugins of a kind that allows only one are configured.
    #[error("{}:{line}: only one {kind} plugin may be enabled, but \"{first_name}\" at line {first_line} is enabled too", path.display())]
    TooManyPlugins {
        /// The configuration file.
        path: PathBuf,
        /// One-based line of the second plugin.
        line: usize,
        /// The plugin kind.
        kind: String,
        /// The name of the first plugin.
        first_name: String,
        /// One-based line of the first plugin.
        first_line: usize,
    },
}

impl ConfigError {
    /// Turns a deserialization message into the most specific variant.
    ///
    /// `serde` spells unknown and missing fields in a fixed way
    /// (`unknown field `x`, expected ...`, `missing field `x``); those become
    /// [`ConfigError::UnknownKey`] and [`ConfigError::MissingKey`].
    pub(crate) fn from_serde(
        path: PathBuf,
        line: usize,
        key_path: String,
        message: String,
    ) -> Self {
        if message.starts_with("unknown field `") {
            let expected = message.split_once("`, ").map_or_else(
                || "it is not allowed here".to_owned(),
                |(_, rest)| rest.to_owned(),
            );
            return ConfigError::UnknownKey {
                path,
                line,
                key_path,
                expected,
            };
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            if let Some(field) = rest.strip_suffix('`') {
                let key_path = join_key(&key_path, field);
                return ConfigError::MissingKey {
                    path,
                    line,
                    key_path,
                };
            }
        }
        ConfigError::InvalidValue {
            path,
            line,
            key_path,
            message,
        }
    }

    /// The one-based line the error points at, when it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. }
            | ConfigError::MissingSection { .. }
            | ConfigError::MissingPlugin { .. } => None,
            ConfigError::Syntax { line, .. }
            | ConfigError::UnsupportedExpression { line, .. }
            | ConfigError::DuplicateKey { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::MissingKey { line, .. }
            | ConfigError::InvalidValue { line, .. }
            | ConfigError::Structure { line, .. }
            | ConfigError::UnknownSection { line, .. }
            | ConfigError::ExternalPlugin { line, .. }
            | ConfigError::PluginDataFile { line, .. }
            | ConfigError::UnsupportedPluginKind { line, .. }
            | ConfigError::UnsupportedPlugin { line, .. }
            | ConfigError::TooManyPlugins { line, .. } => Some(*line),
        }
    }
}

/// Appends `key` to a dotted path.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(message: &str) -> ConfigError {
        ConfigError::from_serde("a.conf".into(), 3, "server.x".into(), message.into())
    }

    #[test]
    fn unknown_field_becomes_unknown_key() {
        let err = classify("unknown field `x`, expected one of `a`, `b`");
        assert!(matches!(err, ConfigError::UnknownKey { line: 3, .. }));
        assert_eq!(
            err.to_string(),
            "a.conf:3: unknown key `server.x`; expected one of `a`, `b`"
        );
    }

    #[test]
    fn missing_field_becomes_missing_key() {
        let err = ConfigError::from_serde(
            "a.conf".into(),
            1,
            "server".into(),
            "missing field `trust_domain`".into(),
        );
        assert_eq!(
            err.to_string(),
            "a.conf:1: missing required key `server.trust_domain`"
        );
    }

    #[test]
    fn other_messages_become_invalid_value() {
        let err = classify("invalid type: string \"abc\", expected u16");
        assert_eq!(
            err.to_string(),
            "a.conf:3: invalid value for `server.x`: invalid type: string \"abc\", expected u16"
        );
        assert_eq!(err.line(), Some(3));
    }

    #[test]
    fn join_key_handles_the_root() {
        assert_eq!(join_key("", "server"), "server");
        assert_eq!(join_key("server", "bind_port"), "server.bind_port");
    }
}
