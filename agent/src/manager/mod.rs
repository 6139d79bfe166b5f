//! The manager: the agent's identity and everything it syncs from the server.
//!
//! - [`Manager::start`] (`identity/`) loads the agent SVID from `data_dir`
//!   or attests with the configured node attestor (a reattestable one,
//!   `k8s_psat`, attests at every start with fresh evidence), serves the
//!   workload cache saved by the previous run, and connects
//!   ([`crate::client::server_channel`]).
//! - [`Manager::run`] (`sync/`) syncs every [`SYNC_INTERVAL`] or when the
//!   server pushes a change: bundle, authorized entries, federated bundles,
//!   X509-SVIDs for new, changed or half-expired entries (one fresh key and
//!   CSR each, in one batch); it drops identities whose entries are gone,
//!   publishes a new cache snapshot when anything changed, and renews the
//!   agent's own SVID at half-life (`RenewAgent`, or attesting again when
//!   the server says the agent is reattestable). SVIDs from a tainted CA or
//!   from a CA that left the bundle are re-signed at once.
//! - Failures back off (capped, jittered) while cached SVIDs keep being
//!   served; while no server can be reached, cheap TCP probes end the
//!   wait as soon as one listens again (`sync/retry.rs`). An SVID that
//!   expires is dropped, never served. Bans,
//!   evictions, lapsed SVIDs and an untrusted server are handled in
//!   `identity/` (`rebootstrap_mode`, `rebootstrap_delay`);
//!   `docs/operations.md` tells operators what they see.
//! - It is the Workload API's JWT-SVID source (`sync/jwt.rs`).
//! - Everything saved to disk is in `persist/`.
//!
//! Files: `state.rs` (the [`Manager`] and its SVID, roots and channel),
//! `error.rs`, `timing.rs` (renewal, backoff and probe spacing), `certs.rs`,
//! `identity/`, `sync/`, `persist/`. Files import each other only
//! downwards (`state` never imports `identity` or `sync`); a unit test
//! (`src/import_graph.rs`) fails on any import loop.

mod certs;
mod error;
mod identity;
mod persist;
mod state;
mod sync;
mod timing;

pub use error::{ManagerError, Refused};
pub use identity::attest::pem_certificates;
pub use persist::store::{split_der, Store, StoreError};
pub use state::Manager;
pub use timing::{
    backoff, probe_interval, renewal_due_at, ISSUE_BACKDATE, MAX_BACKOFF, MAX_PROBE_INTERVAL,
    PROBE_INTERVAL, SYNC_INTERVAL,
};
