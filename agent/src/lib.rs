//! The Spinel agent: runs on every node and serves the SPIFFE Workload API.
//!
//! It attests its node to the server, syncs the registration entries it is
//! authorized for, keeps a fresh X509-SVID for each in its [`cache`], and
//! serves workloads on a Unix socket after identifying them by their
//! process ([`attestor::workload`]).
//!
//! Reading order:
//! - [`config`]: the SPIRE-shaped `agent.conf`;
//! - [`client`]: the TLS connection to the server (one channel, rebuilt by
//!   the manager when its roots or SVID change);
//! - [`attestor`]: node attestation (`join_token`, `k8s_psat`) and workload attestation (`unix`);
//! - [`manager`]: the agent's own identity (attestation, recovery), the sync
//!   of entries, bundles and SVIDs, and everything saved to disk;
//! - [`cache`]: the snapshot the Workload API serves;
//! - [`workload_api`]: the `SpiffeWorkloadAPI` gRPC service;
//! - [`metrics`]: the Prometheus metrics (`telemetry`);
//! - [`admin`]: the admin socket (debug API: why a process gets no identity);
//! - [`workload_client`]: the client side of the agent's sockets (the CLI
//!   and `svid_helper` use it);
//! - [`svid_helper`]: SVIDs kept as files for apps without Workload API support;
//! - [`cli`]: the `spinel-agent` command line (`run`, `api fetch`, ...).

pub mod admin;
pub mod attestor;
pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod manager;
pub mod metrics;
pub mod run;
pub mod svid_helper;
pub mod workload_api;
pub mod workload_client;

#[cfg(test)]
mod import_graph;
