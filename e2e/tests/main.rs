//! Whole-system tests: real `spinel-server` and `spinel-agent` processes.
//!
//! One binary, one folder per area:
//!
//! - `transport/`: what every listener accepts and refuses at the
//!   connection level (`:authority` on Unix sockets, limits, timeouts).
//! - `validation/`: what the binaries refuse to take as input (config,
//!   OIDC requests, SPIFFE IDs, JWT-SVIDs to validate).
//!
//! `support/` holds what several areas share. Real processes run on the
//! real clock, so these tests read the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;
mod transport;
mod validation;
