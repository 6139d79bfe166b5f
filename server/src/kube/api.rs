//! The slice of the Kubernetes API the attestor uses, and the seam
//! ([`KubeApi`]) between the attestation logic and the HTTPS client.
//!
//! The structs are the JSON shapes of `authentication.k8s.io/v1`
//! `TokenReview` and core `v1` `Pod` and `Node`, reduced to the fields the
//! attestor reads; unknown fields are ignored, as every Kubernetes client
//! does.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::KubeError;

/// `TokenReview` as sent: `spec.token` and `spec.audiences`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenReviewRequest<'a> {
    /// `authentication.k8s.io/v1`.
    pub api_version: &'static str,
    /// `TokenReview`.
    pub kind: &'static str,
    /// What to review.
    pub spec: TokenReviewSpec<'a>,
}

impl std::fmt::Debug for TokenReviewRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewRequest")
            .field("spec", &self.spec)
            .finish()
    }
}

/// `TokenReview.spec`.
#[derive(Serialize)]
pub struct TokenReviewSpec<'a> {
    /// The token under review (a secret).
    pub token: &'a str,
    /// Audiences the token must be valid for (one at least).
    pub audiences: &'a [String],
}

impl std::fmt::Debug for TokenReviewSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewSpec")
            .field("token", &"<redacted>")
            .field("audiences", &self.audiences)
            .finish()
    }
}

impl<'a> TokenReviewRequest<'a> {
    /// A review of `token` for `audiences`.
    pub fn new(token: &'a str, audiences: &'a [String]) -> Self {
        TokenReviewRequest {
            api_version: "authentication.k8s.io/v1",
            kind: "TokenReview",
            spec: TokenReviewSpec { token, audiences },
        }
    }
}

/// A `TokenReview` as returned; only `status` matters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenReviewResponse {
    /// The verdict.
    #[serde(default)]
    pub status: TokenReviewStatus,
}

/// `TokenReview.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TokenReviewStatus {
    /// The token is valid (signature, expiry, bound object, audience).
    #[serde(default)]
    pub authenticated: bool,
    /// Who the token belongs to.
    #[serde(default)]
    pub user: UserInfo,
    /// The audiences the token is valid for, among those asked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Why the token was not authenticated.
    #[serde(default)]
    pub error: String,
}

/// `TokenReview.status.user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct UserInfo {
    /// `system:serviceaccount:<namespace>:<name>` for a service account.
    #[serde(default)]
    pub username: String,
    /// The user's UID.
    #[serde(default)]
    pub uid: String,
    /// Extra attributes; a projected token carries
    /// `authentication.kubernetes.io/pod-name` and `.../pod-uid`.
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Object metadata: the fields read from pods and nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ObjectMeta {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace (pods only).
    #[serde(default)]
    pub namespace: String,
    /// UID.
    #[serde(default)]
    pub uid: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A `v1` `Pod`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Pod {
    /// Name, namespace, UID, labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec: its node.
    #[serde(default)]
    pub spec: PodSpec,
    /// The status: its host IP.
    #[serde(default)]
    pub status: PodStatus,
}

/// `Pod.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The node the pod is scheduled on.
    #[serde(default)]
    pub node_name: String,
}

/// `Pod.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PodStatus {
    /// The IP of the node the pod runs on.
    #[serde(default, rename = "hostIP")]
    pub host_ip: String,
}

/// A `v1` `Node`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Node {
    /// Name, UID, labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// What the attestor asks of one cluster's API server.
#[async_trait]
pub trait KubeApi: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a `TokenReview` of `token` for `audiences` and returns its
    /// status.
    async fn token_review(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<TokenReviewStatus, KubeError>;

    /// `GET /api/v1/namespaces/<namespace>/pods/<name>`.
    async fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, KubeError>;

    /// `GET /api/v1/nodes/<name>`.
    async fn get_node(&self, name: &str) -> Result<Node, KubeError>;
}
