//! Everything the agent saves to disk, and how.
//!
//! - `store.rs` ([`Store`](store::Store)), in `data_dir`: the agent SVID
//!   chain, its key (in the key directory of `KeyManager "disk"`), and the
//!   last trust bundle;
//! - `workload_cache.rs` (`CacheFile`), in the key directory: the workload
//!   SVIDs and bundles, so a restarted agent serves what is still valid
//!   before it reaches the server.
//!
//! Every file is written atomically through `spinel_spiffe::keyfile`; a
//! file that does not parse is a [`StoreError`](store::StoreError) naming
//! it. Deciding what to do about such a file is `identity/stored.rs`'s job;
//! this module only reads and writes.

pub(super) mod store;
pub(super) mod workload_cache;
