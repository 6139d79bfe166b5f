//! The `k8s` workload attestor, as SPIRE's: the caller's pod and container
//! from its cgroups, the pod's facts from the kubelet.
//!
//! One attestation:
//! 1. pin the pid (its start time, read again at the end: a pid reused by
//!    another process meanwhile fails the attestation);
//! 2. find the pod UID and container ID in `/proc/<pid>/cgroup`, or
//!    `/proc/<pid>/mountinfo` ([`from_cgroup_file`], [`from_mountinfo`]);
//!    a process in no container gets no `k8s` selectors;
//! 3. list the node's pods from the kubelet ([`KubeletClient`]) through
//!    [`SharedPods`] (one request in flight for all callers, the list reused
//!    for `poll_retry_interval`), and look the container up; while the pod
//!    or container status is not listed yet, poll again, up to
//!    `max_poll_attempts` lists, `poll_retry_interval` apart;
//! 4. produce the pod and container [`selectors`] (pod selectors only with
//!    `disable_container_selectors`, as soon as the pod is listed).
//!
//! Configuration: [`K8sConfig`] (SPIRE's `plugin_data` keys), resolved into
//! [`Settings`]. The kubelet is reached at the node name (`node_name`, else
//! the variable named by `node_name_env`, read once at build), else
//! `127.0.0.1`.

mod cgroup;
mod config;
mod error;
mod kubelet;
mod pods;
pub mod selectors;
mod shared;
mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use spinel_config::hcl::PluginDecl;
use spinel_spiffe::Selector;

pub use cgroup::{from_cgroup_file, from_mountinfo, from_path, ContainerRef};
pub use config::{Auth, Environment, K8sConfig, Settings, Transport, Verify};
pub use error::K8sError;
pub use kubelet::KubeletClient;
pub use pods::{ContainerStatus, ObjectMeta, OwnerReference, Pod, PodList, PodSpec, PodStatus};
pub use selectors::SELECTOR_TYPE;
pub use shared::{PodSource, SharedPods, Snapshot};

use super::procfs::{self, Root};
use super::{AttestError, Caller, WorkloadAttestor};
use pods::Found;

/// The `k8s` workload attestor.
#[derive(Debug, Clone)]
pub struct K8sAttestor {
    settings: Arc<Settings>,
    pods: SharedPods,
    root: Root,
}

impl From<K8sError> for AttestError {
    fn from(e: K8sError) -> Self {
        match e {
            K8sError::ProcessGone { pid } => AttestError::ProcessGone { pid },
            K8sError::ProcessChanged { pid } => AttestError::ProcessChanged { pid },
            other => AttestError::K8s(other),
        }
    }
}

impl K8sAttestor {
    /// Builds the attestor of a `WorkloadAttestor "k8s"` declaration, with
    /// the process environment and the real `/proc`.
    pub fn from_decl(decl: &PluginDecl) -> Result<Self, AttestError> {
        let root = Root::system();
        let lookup = |name: &str| std::env::var(name).ok();
        let hostname = std::fs::read_to_string(root.proc.join("sys/kernel/hostname"))
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        let env = Environment {
            var: &lookup,
            hostname,
        };
        Self::from_decl_in(decl, &env, root)
    }

    /// Builds the attestor of a declaration with the given environment,
    /// asking the configured kubelet and reading `/proc` under `root`.
    pub fn from_decl_in(
        decl: &PluginDecl,
        env: &Environment<'_>,
        root: Root,
    ) -> Result<Self, AttestError> {
        let config: K8sConfig = decl.data()?;
        let settings = config.resolve(decl, env)?;
        if settings.transport == Transport::Plain
            && (config.skip_kubelet_verification
                || config.kubelet_ca_path.is_some()
                || config.token_path.is_some())
        {
            tracing::warn!(plugin = %decl.location(),
                "k8s: kubelet_read_only_port is plain HTTP; skip_kubelet_verification, kubelet_ca_path and token_path are ignored");
        }
        if config.use_new_container_locator == Some(false) {
            tracing::info!("k8s: use_new_container_locator = false is ignored; Spinel has one container locator (cgroup v1 and v2)");
        }
        let client = KubeletClient::new(settings.clone())?;
        Ok(Self::with_source(settings, Arc::new(client), root))
    }

    /// An attestor asking the kubelet of `settings`, reading the real `/proc`.
    pub fn new(settings: Settings) -> Result<Self, K8sError> {
        let client = KubeletClient::new(settings.clone())?;
        Ok(Self::with_source(
            settings,
            Arc::new(client),
            Root::system(),
        ))
    }

    /// An attestor listing pods from `source` and reading `/proc` under
    /// `root` (tests).
    pub fn with_source(settings: Settings, source: Arc<dyn PodSource>, root: Root) -> Self {
        let pods = SharedPods::new(source, settings.poll_retry_interval);
        K8sAttestor {
            settings: Arc::new(settings),
            pods,
            root,
        }
    }

    /// The caller's start time and container, read from `/proc`.
    async fn locate(&self, pid: i32) -> Result<(u64, Option<ContainerRef>), AttestError> {
        let root = self.root.clone();
        let verbose = self.settings.verbose_container_locator_logs;
        tokio::task::spawn_blocking(move || {
            let started = procfs::start_time(&root, pid)?;
            let found = cgroup::locate(&root.proc, pid, verbose)?;
            Ok((started, found))
        })
        .await
        .map_err(|e| AttestError::Internal(format!("k8s attestor task failed: {e}")))?
    }

    async fn start_time(&self, pid: i32) -> Result<u64, AttestError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || procfs::start_time(&root, pid))
            .await
            .map_err(|e| AttestError::Internal(format!("k8s attestor task failed: {e}")))?
    }

    /// Polls the pod lists until the container (or, with
    /// `disable_container_selectors`, its pod) is found.
    async fn poll(&self, pid: i32, want: &ContainerRef) -> Result<Vec<Selector>, K8sError> {
        let attempts = self.settings.max_poll_attempts;
        let mut seen = 0;
        let mut pod_listed = false;
        let mut last_error = None;
        for attempt in 1..=attempts {
            let snapshot = match self.pods.newer_than(seen).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(pid, attempt, error = %e, "k8s: listing pods failed; will retry");
                    last_error = Some(e);
                    continue;
                }
            };
            seen = snapshot.version;
            last_error = None;
            match self.search(pid, &snapshot.pods, want)? {
                Search::Found(selectors) => return Ok(selectors),
                Search::PodOnly => pod_listed = true,
                Search::Nothing => {}
            }
            tracing::debug!(pid, attempt, pod_uid = ?want.pod_uid, container_id = %want.container_id,
                "k8s: container not listed yet; will retry");
        }
        if let Some(e) = last_error {
            return Err(e);
        }
        let pod = want.pod_uid.clone().unwrap_or_else(|| "unknown".to_owned());
        let container_id = want.container_id.clone();
        Err(if pod_listed {
            K8sError::ContainerNotFound {
                pid,
                pod_uid: pod,
                container_id,
                attempts,
            }
        } else {
            K8sError::PodNotFound {
                pid,
                pod,
                container_id,
                attempts,
            }
        })
    }

    fn search(&self, pid: i32, list: &PodList, want: &ContainerRef) -> Result<Search, K8sError> {
        let mut result: Option<(&Pod, Vec<Selector>)> = None;
        let mut pod_listed = false;
        for pod in &list.items {
            if want
                .pod_uid
                .as_ref()
                .is_some_and(|uid| *uid != pod.metadata.uid)
            {
                continue;
            }
            let selectors = match pod.find_container(&want.container_id) {
                Some(Found::Container(status)) => {
                    let mut s = selectors::pod_selectors(pod)?;
                    if !self.settings.disable_container_selectors {
                        s.extend(selectors::container_selectors(status)?);
                    }
                    s
                }
                Some(Found::Ephemeral(status)) => {
                    return Err(K8sError::EphemeralContainer {
                        pid,
                        pod_uid: pod.metadata.uid.clone(),
                        name: status.name.clone(),
                    })
                }
                None if want.pod_uid.is_some() && self.settings.disable_container_selectors => {
                    selectors::pod_selectors(pod)?
                }
                None => {
                    pod_listed |= want.pod_uid.is_some();
                    continue;
                }
            };
            if let Some((first, _)) = &result {
                return Err(K8sError::DuplicateContainer {
                    container_id: want.container_id.clone(),
                    first: first.metadata.uid.clone(),
                    second: pod.metadata.uid.clone(),
                });
            }
            result = Some((pod, selectors));
        }
        Ok(match result {
            Some((_, selectors)) => Search::Found(selectors),
            None if pod_listed => Search::PodOnly,
            None => Search::Nothing,
        })
    }
}

/// What one pod list said about the caller.
enum Search {
    Found(Vec<Selector>),
    /// The pod is listed, not the container.
    PodOnly,
    Nothing,
}

#[async_trait]
impl WorkloadAttestor for K8sAttestor {
    async fn attest(&self, caller: &Caller) -> Result<Vec<Selector>, AttestError> {
        let pid = caller.pid;
        if pid <= 0 {
            return Err(AttestError::NoPid);
        }
        let (started, found) = self.locate(pid).await?;
        let Some(want) = found else {
            tracing::debug!(pid, "k8s: process is in no container; no k8s selectors");
            return Ok(Vec::new());
        };
        let selectors = self.poll(pid, &want).await.inspect_err(|e| {
            tracing::warn!(pid, pod_uid = ?want.pod_uid, container_id = %want.container_id, error = %e,
                "k8s: attestation failed");
        })?;
        if self.start_time(pid).await? != started {
            return Err(AttestError::ProcessChanged { pid });
        }
        tracing::debug!(pid, pod_uid = ?want.pod_uid, container_id = %want.container_id,
            selectors = selectors.len(), "k8s: attested");
        Ok(selectors)
    }
}

#[cfg(test)]
mod tests;
