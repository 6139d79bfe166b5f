//! Protocol-faithful fakes of the Kubernetes endpoints Spinel talks to.
//!
//! Kubelet and kube-apiserver cannot run in a test, so these fakes stand in
//! for them. What they serve is built from the `k8s-openapi` types and
//! serialized with serde_json, over real HTTPS (rustls, certificates from a
//! throwaway [`TestCa`]), so the JSON has Kubernetes' real shape and our
//! own minimal parsers are checked against an independent source.
//!
//! - [`FakeKubelet`]: `GET /pods` (a `v1.PodList`) on a secure port with a
//!   bearer token or client certificate, and optionally a plain-HTTP
//!   read-only port; kubelet's plain-text 401/403 bodies; a request counter
//!   and an artificial latency to test that concurrent attestations share
//!   one request.
//! - [`FakeApiServer`] serves TokenReview
//!   (`POST /apis/authentication.k8s.io/v1/tokenreviews`), `GET` pod and
//!   node, `GET` and `PATCH` (merge patch) of ConfigMaps ([`configmap`]),
//!   `v1.Status` errors, a kubeconfig writer and projected service
//!   account tokens ([`ServiceAccountToken`]) signed ES256 by a fake issuer.
//! - [`PodBuilder`], [`NodeBuilder`] ([`objects`]): realistic objects.
//!
//! Tokens and timestamps use the real wall clock (through
//! `spinel_spiffe::clock::Clock::system()`), not a test's paused tokio
//! time: to test expiry, issue a token already expired
//! ([`ServiceAccountToken::expired`]) or revoke it.
//!
//! Each fake runs on its own thread with its own tokio runtime, so it works
//! from `#[test]` and `#[tokio::test]` alike; it listens on `127.0.0.1:0`
//! and stops when dropped (connect to `127.0.0.1`: the serving certificate
//! also names `localhost` and `::1`, but nothing listens on `::1`). Its
//! state sits behind a mutex and may be changed while it runs.
//!
//! ```
//! use spinel_test_fixtures::k8s::{
//!     ApiServerOptions, FakeApiServer, FakeKubelet, KubeletOptions, NodeBuilder, PodBuilder,
//!     ServiceAccountToken,
//! };
//!
//! # fn main() -> anyhow::Result<()> {
//! // Agent side: a kubelet that knows one pod.
//! let kubelet = FakeKubelet::start(KubeletOptions {
//!     token: Some("kubelet-token".into()),
//!     ..Default::default()
//! })?;
//! let pod = PodBuilder::new("payments", "api-0")
//!     .service_account("api")
//!     .container("api", "ghcr.io/acme/api:1.2.3");
//! kubelet.upsert_pod(pod.build());
//! let cgroup_line = format!(
//!     "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{}.scope",
//!     pod.pod_uid().replace('-', "_"),
//!     pod.container_id("api").unwrap_or_default(),
//! );
//! // ... point the k8s workload attestor at https://127.0.0.1:{kubelet.secure_port()}
//! //     with kubelet.ca_pem() and the token.
//! # let _ = cgroup_line;
//!
//! // Server side: an API server that knows the agent's pod and node.
//! let api = FakeApiServer::start(ApiServerOptions::default())?;
//! let node = NodeBuilder::new("node-1");
//! let agent = PodBuilder::new("spire", "spire-agent-x2k9p")
//!     .service_account("spire-agent")
//!     .node_name("node-1");
//! api.add_node(node.build());
//! api.add_pod(agent.build());
//! let psat = api.add_service_account_token(
//!     ServiceAccountToken::for_pod(&agent.build()).node("node-1", node.node_uid()),
//! )?;
//! let dir = tempfile::tempdir()?;
//! api.write_kubeconfig(&dir.path().join("kubeconfig"))?;
//! // ... configure NodeAttestor "k8s_psat" with that kubeconfig; the agent
//! //     presents `psat`.
//! # let _ = psat;
//! # Ok(())
//! # }
//! ```

mod apiserver;
mod ca;
pub mod configmap;
mod kubeconfig;
mod kubelet;
pub mod objects;
mod serve;
mod status;
mod token;

pub use apiserver::{ApiServerOptions, FakeApiServer, TOKEN_REVIEW_PATH};
pub use ca::{IssuedCert, TestCa};
pub use kubelet::{FakeKubelet, KubeletOptions, FORBIDDEN_TOKEN_USER};
pub use objects::{container_ids, pod_uid, NodeBuilder, PodBuilder};
pub use token::ServiceAccountToken;
