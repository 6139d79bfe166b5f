//! The agent's own identity: how it gets, keeps and recovers its SVID.
//!
//! - `start.rs`: [`Manager::start`](crate::manager::Manager::start) loads
//!   the bundle and agent SVID from `data_dir` or attests, restores the
//!   workload cache, and connects;
//! - `attest.rs`: the bootstrap roots and one node attestation (also
//!   `Manager::reattest`, used by the sync round for reattestable agents);
//! - `stored.rs`: stored state that is unusable or expired at start;
//! - `recovery.rs`: a failed sync round while running (bans, evictions,
//!   superseded or lapsed SVIDs);
//! - `rebootstrap.rs`: a server the stored bundle no longer trusts
//!   (`rebootstrap_mode`, `rebootstrap_delay`).
//!
//! Imports only go downwards: `start` → `stored`, `rebootstrap` →
//! `attest`; `recovery` → `rebootstrap` → `attest`.

pub(super) mod attest;
mod rebootstrap;
pub(super) mod recovery;
mod start;
mod stored;
