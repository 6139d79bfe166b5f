//! What `spinel-agent` does by itself, with real processes.
//!
//! - `rebootstrap.rs`: the server is reinstalled (a new CA) while the agent
//!   runs;
//! - `svid_helper.rs`: `spinel-agent svid-helper` keeps SVID files fresh
//!   for an `openssl` peer;
//! - `delegated_identity.rs`: SPIRE's Delegated Identity API on the admin
//!   socket, called with the `spire-api` crate's client;
//! - `explain.rs`: "why does this process get no identity?"
//!   (`debug explain`, the agent log);
//! - `health.rs`: SPIRE's `health_checks` HTTP listener (live, ready) on
//!   the agent and the server;
//! - `streams.rs`: many long-lived `FetchX509SVID` streams: the same
//!   responses and updates for all, memory flat across open/close cycles.

mod delegated_identity;
mod explain;
mod health;
mod rebootstrap;
mod streams;
mod svid_helper;
