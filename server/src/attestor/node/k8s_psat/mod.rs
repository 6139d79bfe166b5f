//! The `k8s_psat` node attestor: Kubernetes projected service account
//! tokens.
//!
//! An agent running in a pod sends `{"cluster": "<name>", "token": "<jwt>"}`
//! where the token is a projected service account token whose audience is
//! the server's. For the named cluster the attestor:
//!
//! 1. asks the cluster's API server for a `TokenReview` with
//!    `spec.audiences` set to the configured audiences, and requires
//!    `authenticated`, a returned audience among the configured ones, and a
//!    username `system:serviceaccount:<ns>:<sa>` whose `<ns>:<sa>` is in the
//!    cluster's `service_account_allow_list`;
//! 2. takes the pod name and UID from the review's `user.extra`
//!    (`authentication.kubernetes.io/pod-name`, `.../pod-uid`), `GET`s the
//!    pod and requires the same UID (the token is bound to that pod);
//! 3. `GET`s the pod's node.
//!
//! The agent ID is `spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node-uid>`
//! and its node selectors (type `k8s_psat`) are `cluster:`, `agent_ns:`,
//! `agent_sa:`, `agent_pod_name:`, `agent_pod_uid:`, `agent_node_ip:`,
//! `agent_node_name:`, `agent_node_uid:`, plus `agent_node_label:<k>:<v>` and
//! `agent_pod_label:<k>:<v>` for the allowed label keys only. Agents may
//! re-attest (a fresh token each time), and must: the server refuses
//! `RenewAgent` for them.
//!
//! [`attestor`] ([`K8sPsatAttestor`]) makes the checks above through the
//! [`KubeApi`] seam; the HTTPS client, the JSON shapes and the kubeconfig
//! handling are the server's shared Kubernetes client, [`crate::kube`].
//!
//! No message or log line carries the token.

pub mod attestor;

#[cfg(test)]
mod tests;

pub use attestor::{ClusterConfig, K8sPsatAttestor};

#[cfg(doc)]
use crate::kube::KubeApi;

/// The attestor's name in config files and `AttestationData.type`, and the
/// type of its selectors.
pub const NAME: &str = "k8s_psat";

/// The default audience of the tokens (SPIRE's).
pub const DEFAULT_AUDIENCE: &str = "spire-server";
