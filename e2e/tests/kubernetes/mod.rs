//! Spinel on Kubernetes' terms, with the protocol-faithful fakes of
//! `spinel_test_fixtures::k8s`.
//!
//! - `workload_attestor.rs`: the agent's `k8s` workload attestor asking a
//!   fake kubelet, this test process in a real pod-shaped cgroup;
//! - `psat.rs`: `k8s_psat` node attestation against the fake
//!   kube-apiserver: attest, alias, re-attest, restart;
//! - `k8sbundle.rs`: the server's `k8sbundle` notifier keeping its trust
//!   bundle in a ConfigMap of the fake kube-apiserver through rotation.

mod k8sbundle;
mod psat;
mod workload_attestor;
