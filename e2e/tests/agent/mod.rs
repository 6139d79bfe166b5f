//! What `spinel-agent` does by itself, with real processes.
//!
//! - `rebootstrap.rs`: the server is reinstalled (a new CA) while the agent
//!   runs;
//! - `svid_helper.rs`: `spinel-agent svid-helper` keeps SVID files fresh
//!   for an `openssl` peer;
//! - `explain.rs`: "why does this process get no identity?"
//!   (`debug explain`, the agent log).

mod explain;
mod rebootstrap;
mod svid_helper;
