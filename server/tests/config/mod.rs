//! Server config files and flags, loaded by `spinel_server::config`.
//!
//! - `files.rs`: every sample config loads with the values it claims;
//! - `errors.rs`: bad configs are refused naming the key and `file:line`;
//! - `upstream.rs`: the `UpstreamAuthority "disk"` block.

mod errors;
mod files;
mod upstream;
