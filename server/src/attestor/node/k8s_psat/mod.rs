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
//! Parts:
//! - [`api`]: the Kubernetes JSON shapes and the [`KubeApi`] seam;
//! - [`kubeconfig`]: connection settings from a kubeconfig file or the
//!   in-cluster service account;
//! - [`client`]: [`KubeClient`], the HTTPS client (rustls, bounded time);
//! - [`attestor`]: [`K8sPsatAttestor`], the checks above.
//!
//! No message or log line carries the token.

pub mod api;
pub mod attestor;
pub mod client;
pub mod kubeconfig;

#[cfg(test)]
mod tests;

pub use api::{KubeApi, Node, ObjectMeta, Pod, PodSpec, PodStatus, TokenReviewStatus, UserInfo};
pub use attestor::{ClusterConfig, K8sPsatAttestor};
pub use client::KubeClient;
pub use kubeconfig::{ClusterConnection, Credentials};

/// The attestor's name in config files and `AttestationData.type`, and the
/// type of its selectors.
pub const NAME: &str = "k8s_psat";

/// The default audience of the tokens (SPIRE's).
pub const DEFAULT_AUDIENCE: &str = "spire-server";

/// What went wrong between the attestor and a Kubernetes API server, in an
/// operator's terms. Messages never carry a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum K8sPsatError {
    /// The kubeconfig file is unreadable or unusable.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The in-cluster configuration (service account files and
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`) is missing or unusable.
    #[error("in-cluster Kubernetes configuration: {0}")]
    InCluster(String),
    /// The API server could not be reached.
    #[error("cannot reach the Kubernetes API server {server}: {reason}")]
    Connect {
        /// The server URL.
        server: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake failed: usually the configured CA does not match
    /// the API server's certificate.
    #[error("TLS with the Kubernetes API server {server} failed: {reason} (check the cluster CA: certificate-authority / certificate-authority-data, or ca.crt in cluster)")]
    Tls {
        /// The server URL.
        server: String,
        /// The TLS error.
        reason: String,
    },
    /// The API server did not answer in time.
    #[error("the Kubernetes API server {server} did not answer within {seconds}s")]
    Timeout {
        /// The server URL.
        server: String,
        /// The bound.
        seconds: u64,
    },
    /// The API server refused the server's credentials (401).
    #[error("the Kubernetes API server {server} rejected the credentials (401 Unauthorized) for {action}: check the kubeconfig user (token, tokenFile, client certificate)")]
    Unauthorized {
        /// The server URL.
        server: String,
        /// What was attempted (`create tokenreviews`, ...).
        action: &'static str,
    },
    /// The credentials lack an RBAC permission (403).
    #[error("the Kubernetes API server {server} forbids {action} (403 Forbidden): grant the server's identity RBAC permission to {action}")]
    Forbidden {
        /// The server URL.
        server: String,
        /// The verb and resource (`create tokenreviews`, `get pods`, `get nodes`,
        /// `patch configmaps`).
        action: &'static str,
    },
    /// The object does not exist (404).
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// `pod`, `node` or `configmap`.
        kind: &'static str,
        /// Its name (`namespace/name` for a pod).
        name: String,
    },
    /// Any other unexpected HTTP status.
    #[error("the Kubernetes API server {server} answered {status} to {action}: {message}")]
    Status {
        /// The server URL.
        server: String,
        /// The HTTP status code.
        status: u16,
        /// What was attempted.
        action: &'static str,
        /// The `message` of the returned `Status`, or the body's start.
        message: String,
    },
    /// The answer is not the expected JSON.
    #[error("unexpected answer from the Kubernetes API server {server} to {action}: {reason}")]
    Decode {
        /// The server URL.
        server: String,
        /// What was attempted.
        action: &'static str,
        /// What is wrong.
        reason: String,
    },
}
