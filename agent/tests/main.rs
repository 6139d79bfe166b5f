//! The agent library's tests, in process (no `spinel-agent` process; those
//! are in the `spinel-e2e` crate). One binary, one module per area:
//!
//! - `workload_api/`: the Workload API over a real Unix socket, checked
//!   with the `spiffe` crate and a raw tonic client;
//! - `attestor/`: the `k8s` workload attestor against the fake kubelet, and
//!   the `unix` workload attestor;
//! - `manifests`: the agent configs in `conf/k8s/` load.
//!
//! `support` holds what the areas share.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod attestor;
mod manifests;
mod support;
mod workload_api;
