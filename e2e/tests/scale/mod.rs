//! An agent authorized for many entries (issue 12).
//!
//! - `many_entries.rs`: 10,000 entries for one agent: every SVID is
//!   minted in chunks far under the gRPC message limit, the workload gets
//!   its SVIDs, and the agent does not keep asking once it has them all.

mod many_entries;
