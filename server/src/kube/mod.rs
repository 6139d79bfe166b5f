//! The server's Kubernetes API client, shared by the `k8s_psat` node
//! attestor ([`crate::attestor::node::k8s_psat`]) and the `k8sbundle`
//! notifier ([`crate::notifier`]).
//!
//! Parts:
//! - [`api`]: the JSON shapes the server reads (`TokenReview`, `Pod`,
//!   `Node`) and the [`KubeApi`] seam the attestor is tested through;
//! - [`kubeconfig`]: connection settings from a kubeconfig file or the
//!   in-cluster service account;
//! - [`client`]: [`KubeClient`], the HTTPS client (rustls, bounded time,
//!   TCP_NODELAY), which also patches one ConfigMap key for the notifier.
//!
//! No message or log line carries a token.

pub mod api;
pub mod client;
pub mod kubeconfig;

pub use api::{KubeApi, Node, ObjectMeta, Pod, PodSpec, PodStatus, TokenReviewStatus, UserInfo};
pub use client::KubeClient;
pub use kubeconfig::{ClusterConnection, Credentials};

use std::path::Path;

/// A client for the cluster a `kube_config_file` key names, or, when the
/// key is absent, for the cluster the server runs in (its service account
/// and `KUBERNETES_SERVICE_HOST`/`_PORT`), as SPIRE's plugins do.
pub fn connect(kube_config_file: Option<&Path>) -> Result<KubeClient, KubeError> {
    let connection = match kube_config_file {
        Some(path) => ClusterConnection::from_kubeconfig(path)?,
        None => ClusterConnection::in_cluster(
            std::env::var("KUBERNETES_SERVICE_HOST").ok(),
            std::env::var("KUBERNETES_SERVICE_PORT").ok(),
            Path::new(kubeconfig::SERVICE_ACCOUNT_DIR),
        )?,
    };
    KubeClient::new(connection)
}

/// What went wrong between the server and a Kubernetes API server, in an
/// operator's terms. Messages never carry a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
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
