//! `kill -9` of a real server, and what it comes back with
//! (`support::crash`).
//!
//! - `ca.rs`: between the steps of a CA change (failpoints);
//! - `keyfile.rs`: inside a key-file write (failpoints);
//! - `durability.rs`: while operators write entries and join tokens, and
//!   inside a batch create (invariant 6).

mod ca;
mod durability;
mod keyfile;
