//! Whole-system tests: real `spinel-server` and `spinel-agent` processes.
//!
//! One binary, one folder per area:
//!
//! - `transport/`: what every listener accepts and refuses at the
//!   connection level (`:authority` on Unix sockets, limits, timeouts).
//! - `local_user/`: a second local user against key files, socket
//!   directories and the CLIs' sockets.
//!
//! `support/` holds what several areas share. Real processes run on the
//! real clock, so these tests read the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod local_user;
mod support;
mod transport;
