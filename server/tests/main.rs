//! The server library's tests, in process (no `spinel-server` process;
//! those are in the `spinel-e2e` crate). One binary, one folder per area:
//!
//! - `api/`: the server API over its real admin socket and TLS listener,
//!   served by `spinel_server::run` in this process;
//! - `config/`: server config files and flags, good and bad;
//! - `federation/`: the TrustDomain API, the `federation` config blocks and
//!   the bundle endpoint;
//! - `k8s_psat/`: the `k8s_psat` node attestor against fake kube-apiservers;
//! - `datastore/`: the datastore conformance suite.
//!
//! `support/` holds what the areas share.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod config;
mod datastore;
mod federation;
mod k8s_psat;
mod support;
