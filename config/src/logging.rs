//! Logging set-up from SPIRE's `log_level`, `log_format` and `log_file`.
//!
//! SPIRE spells levels `DEBUG`, `INFO`, `WARN`, `ERROR`... in any case;
//! [`parse_level`] maps them (and logrus's `warning`, `fatal`, `panic`) to
//! [`tracing::Level`]. [`init`] installs a global `tracing` subscriber that
//! writes text or JSON lines to stderr or appends to a file; [`subscriber`]
//! builds the same subscriber without installing it.

use std::fs::{File, OpenOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;
use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// Errors of the logging set-up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The log level is not one SPIRE knows.
    #[error("invalid log level {level:?}; expected one of TRACE, DEBUG, INFO, WARN, ERROR")]
    UnknownLevel {
        /// The level given.
        level: String,
    },
    /// The log format is neither `text` nor `json`.
    #[error("invalid log format {format:?}; expected \"text\" or \"json\"")]
    UnknownFormat {
        /// The format given.
        format: String,
    },
    /// The log file could not be opened for appending.
    #[error("cannot open log file {}: {source}", path.display())]
    OpenOutput {
        /// The log file.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },
    /// A global subscriber is already installed ([`init`] was called before).
    #[error("logging is already initialized")]
    AlreadyInitialized,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (SPIRE's `text`, the default).
    #[default]
    Text,
    /// One JSON object per line (SPIRE's `json`).
    Json,
}

impl FromStr for LogFormat {
    type Err = LoggingError;

    /// Parses `text` or `json`, in any case; an empty string means `text`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.eq_ignore_ascii_case("text") {
            Ok(LogFormat::Text)
        } else if s.eq_ignore_ascii_case("json") {
            Ok(LogFormat::Json)
        } else {
            Err(LoggingError::UnknownFormat {
                format: s.to_owned(),
            })
        }
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a SPIRE log level, case-insensitively: `TRACE`, `DEBUG`, `INFO`,
/// `WARN` (or `WARNING`), `ERROR` (`FATAL` and `PANIC` also map to `ERROR`).
pub fn parse_level(s: &str) -> Result<Level, LoggingError> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Ok(Level::TRACE),
        "debug" => Ok(Level::DEBUG),
        "info" => Ok(Level::INFO),
        "warn" | "warning" => Ok(Level::WARN),
        "error" | "fatal" | "panic" => Ok(Level::ERROR),
        _ => Err(LoggingError::UnknownLevel {
            level: s.to_owned(),
        }),
    }
}

/// Builds a subscriber logging at `level` and above, in `format`, to
/// `output` (appended to, created if needed) or to stderr.
pub fn subscriber(
    level: &str,
    format: LogFormat,
    output: Option<&Path>,
) -> Result<Box<dyn Subscriber + Send + Sync>, LoggingError> {
    let level = parse_level(level)?;
    let (writer, ansi) = match output {
        Some(path) => {
            let file = open_append(path)?;
            (BoxMakeWriter::new(Arc::new(file)), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(writer);
    Ok(match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(builder.json().with_ansi(false).finish()),
    })
}

/// Crates whose debug output is wire-level noise for an operator.
const QUIET_CRATES: [&str; 7] = [
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "tonic",
    "rustls",
    "sled",
];

/// `level` for Spinel's own modules; the transport crates above stop at
/// INFO so that `log_level = "DEBUG"` shows Spinel's decisions, not frames.
fn filter(level: tracing::Level) -> tracing_subscriber::EnvFilter {
    let quiet = level.min(tracing::Level::INFO);
    let mut directives = level.to_string().to_lowercase();
    for name in QUIET_CRATES {
        directives.push_str(&format!(",{name}={}", quiet.to_string().to_lowercase()));
    }
    tracing_subscriber::EnvFilter::new(directives)
}

/// Installs the [`subscriber`] for `level`, `format` and `output` as the
/// global default. Fails with [`LoggingError::AlreadyInitialized`] when a
/// global subscriber is already set.
pub fn init(level: &str, format: LogFormat, output: Option<&Path>) -> Result<(), LoggingError> {
    let subscriber = subscriber(level, format, output)?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| LoggingError::AlreadyInitialized)
}

fn open_append(path: &Path) -> Result<File, LoggingError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LoggingError::OpenOutput {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spire_levels_in_any_case() {
        assert_eq!(parse_level("DEBUG").unwrap(), Level::DEBUG);
        assert_eq!(parse_level("debug").unwrap(), Level::DEBUG);
        assert_eq!(parse_level("Info").unwrap(), Level::INFO);
        assert_eq!(parse_level("WARN").unwrap(), Level::WARN);
        assert_eq!(parse_level("warning").unwrap(), Level::WARN);
        assert_eq!(parse_level("ERROR").unwrap(), Level::ERROR);
        assert_eq!(parse_level("fatal").unwrap(), Level::ERROR);
        assert_eq!(parse_level("TRACE").unwrap(), Level::TRACE);
    }

    #[test]
    fn bad_level_is_named() {
        let err = parse_level("LOUD").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid log level \"LOUD\"; expected one of TRACE, DEBUG, INFO, WARN, ERROR"
        );
        assert!(matches!(
            subscriber("", LogFormat::Text, None),
            Err(LoggingError::UnknownLevel { .. })
        ));
    }

    #[test]
    fn parses_formats() {
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert_eq!("".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert!("xml"
            .parse::<LogFormat>()
            .unwrap_err()
            .to_string()
            .contains("\"xml\""));
        let format: LogFormat = hcl::from_str::<Wrapper>("f = \"json\"").unwrap().f;
        assert_eq!(format, LogFormat::Json);
    }

    #[derive(Deserialize)]
    struct Wrapper {
        f: LogFormat,
    }

    #[test]
    fn writes_json_lines_at_the_level_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spinel.log");
        std::fs::write(&path, "earlier line\n").unwrap();
        let sub = subscriber("info", LogFormat::Json, Some(&path)).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::debug!("hidden");
            tracing::info!(answer = 42, "shown");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "earlier line");
        let json: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(json["level"], "INFO");
        assert_eq!(json["fields"]["message"], "shown");
        assert_eq!(json["fields"]["answer"], 42);
    }

    #[test]
    fn writes_text_lines_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spinel.log");
        let sub = subscriber("WARN", LogFormat::Text, Some(&path)).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::info!("hidden");
            tracing::warn!("careful");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("WARN") && text.contains("careful"), "{text}");
        assert!(!text.contains("hidden"));
        assert!(!text.contains('\u{1b}'), "no colour codes in files");
    }

    #[test]
    fn unopenable_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("x.log");
        let Err(err) = subscriber("info", LogFormat::Text, Some(&path)) else {
            panic!("opening a file in a missing directory succeeded");
        };
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn init_installs_once() {
        // The only test in this crate that touches the global subscriber.
        assert!(matches!(
            init("bogus", LogFormat::Text, None),
            Err(LoggingError::UnknownLevel { .. })
        ));
        let first = init("info", LogFormat::Text, None);
        let second = init("info", LogFormat::Text, None);
        assert!(first.is_ok());
        assert!(matches!(second, Err(LoggingError::AlreadyInitialized)));
    }
}
