//! What the agent syncs from the server: entries, bundles, workload SVIDs
//! and its own SVID's rotation.
//!
//! - `run.rs`: the loop ([`Manager::run`](crate::manager::Manager::run)),
//!   woken by the server's change stream or every `SYNC_INTERVAL`;
//! - `round.rs`: one sync round, step by step;
//! - `retry.rs`: the wait after a failed round: probes while no server
//!   can be reached, the full backoff when one answered and failed;
//! - `svids.rs`: the round's X509-SVIDs, asked for in chunks, keys made
//!   on every core while the server signs;
//! - `authorities.rs`: tainted CAs and CAs that left the bundle;
//! - `jwt.rs`: the Workload API's JWT-SVID source (minted per audience by
//!   the server, cached until half their lifetime).

pub(super) mod authorities;
mod jwt;
mod retry;
mod round;
mod run;
mod svids;
