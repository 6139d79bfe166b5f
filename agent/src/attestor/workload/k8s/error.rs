//! Why the `k8s` attestor could not attest a caller, in operator terms.

use std::path::PathBuf;
use std::sync::Arc;

use spinel_spiffe::SelectorError;

/// Errors of the `k8s` workload attestor. Cloneable: one kubelet failure is
/// handed to every attestation that shared the request.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum K8sError {
    /// The process exited before it could be attested.
    #[error("process {pid} is gone")]
    ProcessGone {
        /// The caller's pid.
        pid: i32,
    },
    /// The pid names another process than when attestation started.
    #[error("process {pid} was replaced during attestation")]
    ProcessChanged {
        /// The caller's pid.
        pid: i32,
    },
    /// A local file (cgroup, token, CA, certificate, key) could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A credential file does not hold what it should.
    #[error("{}: {reason}", path.display())]
    BadCredential {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The process's cgroups name two pods or two containers.
    #[error("the process's cgroups name several {what} ({first}, {second})")]
    Ambiguous {
        /// `pod UIDs` or `container IDs`.
        what: &'static str,
        /// The first one seen.
        first: String,
        /// The other one.
        second: String,
    },
    /// No TCP connection to the kubelet.
    #[error("cannot connect to the kubelet at {addr}: {source}; check `node_name` / `node_name_env` and the kubelet port (`kubelet_secure_port` / `kubelet_read_only_port`)")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The I/O error (e.g. connection refused).
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The TLS handshake with the kubelet failed.
    #[error("TLS handshake with the kubelet at {addr} failed: {source}; {hint}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// The handshake error.
        #[source]
        source: Arc<std::io::Error>,
        /// What to check (the CA file, `skip_kubelet_verification`).
        hint: String,
    },
    /// The HTTP exchange with the kubelet failed.
    #[error("kubelet request to {addr} failed: {reason}")]
    Http {
        /// `host:port`.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The kubelet did not answer in time.
    #[error("the kubelet at {addr} did not answer within {seconds}s")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// The limit.
        seconds: u64,
    },
    /// 401: the kubelet does not accept the agent's credentials.
    #[error(
        "the kubelet at {addr} rejected the agent's credentials (401 Unauthorized): {credential}"
    )]
    Unauthorized {
        /// `host:port`.
        addr: String,
        /// Which credential was sent and what to check.
        credential: String,
    },
    /// 403: the credentials are valid but not allowed to list pods.
    #[error("the kubelet at {addr} refused to list pods (403 Forbidden): {detail}; the agent's identity needs RBAC `get` on `nodes/proxy` (kubelet authorization of /pods)")]
    Forbidden {
        /// `host:port`.
        addr: String,
        /// The kubelet's message.
        detail: String,
    },
    /// Another HTTP status.
    #[error("the kubelet at {addr} answered {status} to GET /pods: {detail}")]
    Status {
        /// `host:port`.
        addr: String,
        /// HTTP status code.
        status: u16,
        /// The start of the body.
        detail: String,
    },
    /// The body is not a pod list.
    #[error("the kubelet at {addr} sent an unusable pod list: {reason}")]
    BadPodList {
        /// `host:port`.
        addr: String,
        /// What is wrong.
        reason: String,
    },
    /// The pod of the caller was never listed by the kubelet.
    #[error("process {pid}: pod {pod} holding container {container_id} is not among the kubelet's pods after {attempts} attempts")]
    PodNotFound {
        /// The caller's pid.
        pid: i32,
        /// The pod UID, or `unknown`.
        pod: String,
        /// The container ID.
        container_id: String,
        /// Polls made.
        attempts: u32,
    },
    /// The pod is listed but the caller's container status never appeared.
    #[error("process {pid}: pod {pod_uid} is listed but has no status for container {container_id} after {attempts} attempts (not started yet? `disable_container_selectors` attests with pod selectors only)")]
    ContainerNotFound {
        /// The caller's pid.
        pid: i32,
        /// The pod UID.
        pod_uid: String,
        /// The container ID.
        container_id: String,
        /// Polls made.
        attempts: u32,
    },
    /// The caller runs in an ephemeral (debug) container, which gets no
    /// identity.
    #[error("process {pid} runs in ephemeral container {name:?} of pod {pod_uid}; debug containers are given no k8s selectors")]
    EphemeralContainer {
        /// The caller's pid.
        pid: i32,
        /// The pod UID.
        pod_uid: String,
        /// The container's name.
        name: String,
    },
    /// Two listed pods claim the caller's container.
    #[error("two pods ({first}, {second}) list container {container_id}")]
    DuplicateContainer {
        /// The container ID.
        container_id: String,
        /// One pod UID.
        first: String,
        /// The other.
        second: String,
    },
    /// A pod field does not make a valid selector.
    #[error("invalid selector: {0}")]
    Selector(#[from] SelectorError),
    /// A task failed unexpectedly.
    #[error("{0}")]
    Internal(String),
}

impl K8sError {
    /// A [`K8sError::Read`] of `path`.
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        K8sError::Read {
            path: path.into(),
            source: Arc::new(source),
        }
    }
}
