//! The command lines operators script, run as SPIRE's would be: the
//! subcommands, flags, output and log lines SPIRE's own test suites rely
//! on (`spire-server-cli`, `join-token`, `evict-agent`, `agent-cli`).
//!
//! - `server.rs`: `spinel-server` admin commands against a running server
//!   (entry show/count with downstream entries, federation show, jwt mint,
//!   logger, agent purge, upstreamauthority) and `validate`;
//! - `agent.rs`: `spinel-agent` commands and what a banned agent does;
//! - `admin.rs`: `spinel-server` admin subcommands against SPIRE's output
//!   formats;
//! - `flags.rs`: bad flags and unreachable sockets, named, without a
//!   server.

mod admin;
mod agent;
mod flags;
mod server;
