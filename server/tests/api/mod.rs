//! The server API, served in process by `spinel_server::run`
//! (`support::TestServer`).
//!
//! - `admin.rs`: entries, join tokens, bundles and health over the admin
//!   socket;
//! - `agent.rs`: the agent's side: attestation, then mTLS for entries and
//!   SVIDs;
//! - `propagation.rs`: incremental entry sync (`SyncAuthorizedEntries`);
//! - `refused_svid.rs`: an expired agent SVID is refused;
//! - `standing_refusal.rs`: every refusal names its reason;
//! - `restart.rs`: a restart on the same data keeps what was stored.

mod admin;
mod agent;
mod propagation;
mod refused_svid;
mod restart;
mod standing_refusal;
