//! Attestors: how the agent proves its node, and how it identifies workloads.
pub mod node;
pub mod workload;
