//! SPIRE-shaped HCL configuration and Go-style command-line flags, shared by
//! the Spinel server and agent.
//!
//! Spinel is a drop-in for SPIRE, so its configuration files and command
//! lines are SPIRE's:
//!
//! * [`hcl`] loads `server.conf`/`agent.conf` files: sections decode into
//!   consumer types with `serde`, plugins are listed as [`hcl::PluginDecl`]s,
//!   and every error names `file:line` and the dotted key path;
//! * [`de`] holds `serde` helpers for SPIRE's lenient values (`"8081"` or
//!   `8081`, Go durations);
//! * [`duration`] parses and formats Go durations (`"1h30m"`);
//! * [`flags`] accepts Go's `-flag value` spelling on top of `clap`;
//! * [`logging`] sets up `tracing` from `log_level`, `log_format` and
//!   `log_file`, and [`logging::api`] is the core of both binaries'
//!   Logger API (`logger get|set|reset`);
//! * [`health`] and [`telemetry`] are the `health_checks` and `telemetry`
//!   blocks both binaries read;
//! * [`program`] is both binaries' `main`: flags, runtime, exit codes.

pub mod de;
pub mod duration;
pub mod flags;
pub mod hcl;
pub mod health;
pub mod logging;
pub mod program;
pub mod telemetry;

pub use duration::{format_go_duration, parse_go_duration, DurationError};
pub use hcl::{ConfigError, ConfigFile, PluginDecl};
