//! How changes reach agents (`spinel.server.v1.Watch/WatchChanges`).
//!
//! - `push.rs`: `entry create` reaches three agents' workload streams
//!   without waiting for a poll;
//! - `refused_watch.rs`: a watch stream ends with `PermissionDenied` when
//!   its agent is banned or evicted.

mod push;
mod refused_watch;
