//! Scale: an agent authorized for many entries (issue 12), many agents
//! on several servers (issue 13).
//!
//! - `many_entries.rs`: 10,000 entries for one agent: every SVID is
//!   minted in chunks far under the gRPC message limit, the workload gets
//!   its SVIDs, and the agent does not keep asking once it has them all.
//! - `ha_scale.rs`: `spinel-bench ha-scale` in a CI size: 200 simulated
//!   agents syncing with three servers on PostgreSQL; every agent gets
//!   exactly its entries and no sync fails.

mod ha_scale;
mod many_entries;
