//! The `k8s_psat` node attestor in process.
//!
//! - `attestation.rs`: the client and an in-process server attesting agents
//!   against `support::fake_kube`;
//! - `apiserver.rs`: the client against `spinel_test_fixtures`' fake
//!   kube-apiserver.

mod apiserver;
mod attestation;
