//! Scale: an agent authorized for many entries (issue 12), many agents
//! on several servers (issue 13).
//!
//! - `many_entries.rs`: 10,000 entries for one agent: every SVID is
//!   minted in chunks far under the gRPC message limit, the workload gets
//!   its SVIDs, and the agent does not keep asking once it has them all.
//! - `large_response.rs`: a workload whose X509-SVID response is over the
//!   4 MiB gRPC clients accept by default gets it with a raised limit,
//!   and the agent logs a warning naming the caller and the size.
//! - `ha_scale.rs`: `spinel-bench ha-scale` in a CI size: 200 simulated
//!   agents syncing with three servers on PostgreSQL; every agent gets
//!   exactly its entries and no sync fails.

mod ha_scale;
mod large_response;
mod many_entries;
