//! Attacks on real processes, each the regression test of a hole that an
//! outside review found (issue 10) and of the invariant it broke.
//!
//! - `tls_resumption.rs`: a certificate whose CA was revoked authorizes
//!   nothing on the server's TCP listener, whether it comes in a full
//!   handshake, a resumed session or a connection opened before the
//!   revocation (DESIGN.md invariant 9).
//! - `pid_reuse.rs`: a connection whose process exited never gets the
//!   identity of the process that took its PID (invariant 10).
//!
//! `mtls.rs` is an mTLS gRPC client for the server's TCP port that shows
//! what the server does at the TLS level (handshake kind, connection
//! closed) rather than hiding it behind reconnects as a gRPC channel would.

mod mtls;
mod pid_reuse;
mod tls_resumption;
