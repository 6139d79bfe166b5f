//! Agents that outlive outages, restarts, corrupt state, bans and
//! evictions, with real processes.
//!
//! - `agent.rs`: a join-token agent;
//! - `failover.rs`: servers that are unreachable or untrusted: a prompt
//!   return after a long outage, dead and untrusted addresses in
//!   `server_addresses`, moving to the next server when one dies;
//! - `k8s_psat.rs`: a reattestable (`k8s_psat`) agent;
//! - `shared_database.rs`: three servers on one PostgreSQL database, one
//!   trust domain, the agent moving between them; the database lost or
//!   restarted mid-write.

mod agent;
mod failover;
mod k8s_psat;
mod shared_database;
