//! Whole-system tests: real `spinel-server` and `spinel-agent` processes.
//!
//! One binary, one folder per area:
//!
//! - `transport/`: what every listener accepts and refuses at the
//!   connection level (`:authority` on Unix sockets, limits, timeouts).
//! - `spire/`: SPIRE 1.13.3's own server, agent and CLIs against Spinel
//!   (built by `interop/spire/build`; skipped without it, unless
//!   `SPINEL_INTEROP_REQUIRED=1`).
//!
//! `support/` holds what several areas share. Real processes run on the
//! real clock, so these tests read the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod spire;
mod support;
