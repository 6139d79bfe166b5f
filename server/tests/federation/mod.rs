//! Federation in process.
//!
//! - `api.rs`: the TrustDomain API;
//! - `config.rs`: the `federation` and `oidc_discovery` config blocks;
//! - `endpoint.rs`: the bundle endpoint, fetched with the federation client.

mod api;
mod config;
mod endpoint;
