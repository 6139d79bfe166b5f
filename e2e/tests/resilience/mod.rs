//! Agents that outlive outages, restarts, corrupt state, bans and
//! evictions, with real processes.
//!
//! - `agent.rs`: a join-token agent;
//! - `k8s_psat.rs`: a reattestable (`k8s_psat`) agent.

mod agent;
mod k8s_psat;
