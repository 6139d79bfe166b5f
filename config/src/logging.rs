//! Logging set-up from SPIRE's `log_level`, `log_format` and `log_file`.
//!
//! SPIRE spells levels `DEBUG`, `INFO`, `WARN`, `ERROR`... in any case;
//! [`parse_level`] maps them (and logrus's `warning`, `fatal`, `panic`) to
//! [`tracing::Level`]. [`init`] installs a global `tracing` subscriber that
//! writes text or JSON lines to stderr or appends to a file; [`subscriber`]
//! builds the same subscriber without installing it. [`LevelHandle`]
//! changes the installed subscriber's level at run time, for SPIRE's
//! Logger API ([`api`]).

use std::fs::{File, OpenOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

pub mod api;

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
    Ok(build(level, format, output)?.0)
}

/// The [`subscriber`] and a handle that changes its level.
fn build(
    level: &str,
    format: LogFormat,
    output: Option<&Path>,
) -> Result<(Box<dyn Subscriber + Send + Sync>, LevelHandle), LoggingError> {
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
        LogFormat::Text => {
            let builder = builder.with_ansi(ansi).with_filter_reloading();
            let handle = builder.reload_handle();
            let reload: Reload = Arc::new(move |f| handle.reload(f).map_err(|e| e.to_string()));
            (Box::new(builder.finish()), LevelHandle::new(level, reload))
        }
        LogFormat::Json => {
            let builder = builder.json().with_ansi(false).with_filter_reloading();
            let handle = builder.reload_handle();
            let reload: Reload = Arc::new(move |f| handle.reload(f).map_err(|e| e.to_string()));
            (Box::new(builder.finish()), LevelHandle::new(level, reload))
        }
    })
}

type Reload =
    Arc<dyn Fn(tracing_subscriber::EnvFilter) -> Result<(), String> + Send + Sync + 'static>;

/// The level of the installed subscriber, changeable at run time: what
/// SPIRE's logger API (`logger get|set|reset`) reads and sets.
#[derive(Clone)]
pub struct LevelHandle {
    launch: Level,
    current: Arc<Mutex<Level>>,
    reload: Reload,
}

impl std::fmt::Debug for LevelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LevelHandle")
            .field("launch", &self.launch)
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

impl LevelHandle {
    fn new(launch: Level, reload: Reload) -> Self {
        LevelHandle {
            launch,
            current: Arc::new(Mutex::new(launch)),
            reload,
        }
    }

    /// The level the process was started with.
    pub fn launch(&self) -> Level {
        self.launch
    }

    /// The level in effect now.
    pub fn current(&self) -> Level {
        match self.current.lock() {
            Ok(l) => *l,
            Err(p) => *p.into_inner(),
        }
    }

    /// Logs at `level` from now on (the transport crates stay at INFO at
    /// most, as at start).
    pub fn set(&self, level: Level) -> Result<(), String> {
        let mut current = match self.current.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        (self.reload)(filter(level))?;
        *current = level;
        Ok(())
    }

    /// Back to the launch level.
    pub fn reset(&self) -> Result<(), String> {
        self.set(self.launch)
    }
}

/// The number of `level` in SPIRE's `spire.api.types.LogLevel`.
pub fn api_level(level: Level) -> i32 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 5,
        Level::DEBUG => 6,
        Level::TRACE => 7,
    }
}

/// The level for a `spire.api.types.LogLevel` number: PANIC (1) and FATAL
/// (2) log as ERROR, as `log_level` does; `None` for UNSPECIFIED (0) or an
/// unknown number.
pub fn level_from_api(n: i32) -> Option<Level> {
    match n {
        1..=3 => Some(Level::ERROR),
        4 => Some(Level::WARN),
        5 => Some(Level::INFO),
        6 => Some(Level::DEBUG),
        7 => Some(Level::TRACE),
        _ => None,
    }
}

/// The name SPIRE's `logger` commands print for a `spire.api.types.LogLevel`
/// number (logrus's names: `warning`, not `warn`).
pub fn api_level_name(n: i32) -> Option<&'static str> {
    Some(match n {
        1 => "panic",
        2 => "fatal",
        3 => "error",
        4 => "warning",
        5 => "info",
        6 => "debug",
        7 => "trace",
        _ => return None,
    })
}

/// The protobuf enum name of a `spire.api.types.LogLevel` number.
pub fn api_level_enum_name(n: i32) -> &'static str {
    match n {
        1 => "PANIC",
        2 => "FATAL",
        3 => "ERROR",
        4 => "WARN",
        5 => "INFO",
        6 => "DEBUG",
        7 => "TRACE",
        _ => "UNSPECIFIED",
    }
}

/// `logger set -level`'s value (logrus's names, any case) as a
/// `spire.api.types.LogLevel` number.
pub fn parse_api_level(s: &str) -> Option<i32> {
    Some(match s.to_ascii_lowercase().as_str() {
        "panic" => 1,
        "fatal" => 2,
        "error" => 3,
        "warn" | "warning" => 4,
        "info" => 5,
        "debug" => 6,
        "trace" => 7,
        _ => return None,
    })
}

static INSTALLED: OnceLock<LevelHandle> = OnceLock::new();

/// The handle of the subscriber [`init`] installed, if it was called.
pub fn level_handle() -> Option<LevelHandle> {
    INSTALLED.get().cloned()
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
///
/// The returned handle (also kept for [`level_handle`]) changes the level
/// while the process runs.
pub fn init(
    level: &str,
    format: LogFormat,
    output: Option<&Path>,
) -> Result<LevelHandle, LoggingError> {
    let (subscriber, handle) = build(level, format, output)?;
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| LoggingError::AlreadyInitialized)?;
    let _ = INSTALLED.set(handle.clone());
    Ok(handle)
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
    fn the_level_changes_and_resets_at_run_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spinel.log");
        let (sub, handle) = build("info", LogFormat::Text, Some(&path)).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::debug!("hidden at info");
            handle.set(Level::DEBUG).unwrap();
            assert_eq!(handle.current(), Level::DEBUG);
            tracing::debug!("shown at debug");
            handle.reset().unwrap();
            assert_eq!(
                (handle.current(), handle.launch()),
                (Level::INFO, Level::INFO)
            );
            tracing::debug!("hidden again");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("shown at debug"), "{text}");
        assert!(!text.contains("hidden"), "{text}");
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
