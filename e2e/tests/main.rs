//! Whole-system tests: real `spinel-server` and `spinel-agent` processes.
//!
//! One binary, one folder per area:
//!
//! - `interop/`: SPIFFE client libraries of other languages (py-spiffe,
//!   go-spiffe, java-spiffe), built by `interop/build`, against real
//!   processes.
//! - `transport/`: what every listener accepts and refuses at the
//!   connection level (`:authority` on Unix sockets, limits, timeouts).
//! - `local_user/`: a second local user against key files, socket
//!   directories and the CLIs' sockets.
//! - `security/`: the attacks of the security review (issue 10), each the
//!   regression test of a hole it found.
//! - `cli/`: the commands, output and log lines SPIRE operators script.
//! - `validation/`: what the binaries refuse to take as input (config,
//!   OIDC requests, SPIFFE IDs, JWT-SVIDs to validate).
//! - `spire/`: SPIRE 1.13.3's own server, agent and CLIs against Spinel
//!   (built by `interop/spire/build`; skipped without it, unless
//!   `SPINEL_INTEROP_REQUIRED=1`).
//!
//! - `trust_domain/`: one trust domain set up as an operator would
//!   (CLIs, OIDC discovery, `UpstreamAuthority "disk"`, key files).
//! - `localauthority/`: CA rotation, and a soak through two CA lifetimes.
//! - `kubernetes/`: the `k8s` workload attestor and `k8s_psat` node
//!   attestation against fake kubelet and kube-apiserver.
//! - `resilience/`: agents through outages, restarts, bans, evictions.
//! - `crash/`: `kill -9` of the server at failpoints and mid-write.
//! - `audit/`: the audit log.
//! - `federation/`: two trust domains federated.
//! - `propagation/`: changes pushed to agents (`WatchChanges`).
//! - `scale/`: an agent authorized for 10,000 entries; many agents on
//!   several servers on PostgreSQL (`spinel-bench ha-scale`).
//! - `agent/`: the agent's rebootstrap, `svid-helper` and `debug explain`.
//! - `backends/`: PostgreSQL logins with an X509-SVID; the SQL datastore.
//! - `docs/`: the paths the developer docs cite exist.
//! - `telemetry/`: Prometheus metrics of both binaries, read with the
//!   official Python client's parser; the metrics listener's limits.
//!
//! `support/` holds what several areas share. Real processes run on the
//! real clock, so these tests read the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod agent;
mod audit;
mod backends;
mod cli;
mod crash;
mod docs;
mod federation;
mod interop;
mod kubernetes;
mod local_user;
mod localauthority;
mod propagation;
mod resilience;
mod scale;
mod security;
mod spire;
mod support;
mod telemetry;
mod transport;
mod trust_domain;
mod validation;
