//! Agents that outlive outages, restarts, corrupt state, bans and
//! evictions, with real processes.
//!
//! - `agent.rs`: a join-token agent;
//! - `failover.rs`: servers that are unreachable: a prompt return after a
//!   long outage, dead addresses in the list;
//! - `k8s_psat.rs`: a reattestable (`k8s_psat`) agent.

mod agent;
mod failover;
mod k8s_psat;
