//! Workload attestors of the agent library.
//!
//! - `k8s.rs`: the `k8s` attestor against `spinel_test_fixtures`' fake
//!   kubelet;
//! - `unix.rs`: the `unix` attestor against this process and fixture
//!   `/proc` and `/etc` trees.

mod k8s;
mod unix;
