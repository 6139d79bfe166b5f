//! Test fixtures for Spinel's tests.
//!
//! - [`process`]: run a real binary, capture its log, wait for a line, kill
//!   it when dropped.
//! - [`spinel`]: a whole local trust domain made of real processes: a
//!   `spinel-server` with a temporary data dir and config, agents attested
//!   with join tokens, and the CLI driven as an operator would.
//! - [`spire`]: the same for SPIRE 1.13.3's `spire-server` and
//!   `spire-agent` (interop tests, side-by-side benchmarks).
//! - [`grpc_raw`]: a gRPC client written frame by frame, to send the
//!   `:authority` values (or none) that other languages' gRPC stacks send.
//! - [`cgroup`]: real pod-shaped cgroups (cgroup v1 cgroupfs, v2 systemd)
//!   to put a test process "in a pod" for the `k8s` workload attestor.
//! - [`manifests`]: the config files embedded in `conf/k8s/` ConfigMaps.
//! - [`k8s`]: protocol-faithful fakes of the kubelet and kube-apiserver
//!   (real Kubernetes JSON from `k8s-openapi`, over real HTTPS), and
//!   builders of realistic pods and nodes.
//! - [`x509pop`]: CAs and node certificates (ECDSA, RSA) for `x509pop`
//!   node attestation.
//!
//! The process harness drives the real binaries built by cargo (found next to
//! the test executable, in `target/<profile>/`), so an end-to-end test
//! exercises exactly what an operator runs.

pub mod cgroup;
pub mod grpc_raw;
pub mod k8s;
pub mod manifests;
pub mod postgres;
pub mod process;
pub mod raw_agent;
pub mod spinel;
pub mod spire;
pub mod x509;
pub mod x509pop;

pub use process::{bin_path, Process};
pub use spinel::{
    AgentHandle, AgentOptions, CliOutput, ServerEndpoint, ServerHandle, ServerOptions,
};
