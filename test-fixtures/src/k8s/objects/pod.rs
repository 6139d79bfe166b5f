//! [`PodBuilder`]: a pod as a real cluster returns it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodSpec, PodStatus, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::image::{image_id, normalize_image};
use super::{random_hex, random_uid, time_at, unix_now};

/// One container of the pod being built.
#[derive(Debug, Clone)]
struct ContainerDef {
    name: String,
    image: String,
    /// 64 hex digits, without the `containerd://` prefix.
    id: String,
}

/// Builds a [`Pod`] that looks like what the kubelet's `GET /pods` and the
/// API server's `GET /api/v1/namespaces/{ns}/pods/{name}` return: phase
/// `Running`, every container with a running status, conditions, IPs and
/// timestamps. UIDs and container IDs are random unless set.
///
/// ```
/// use spinel_test_fixtures::k8s::PodBuilder;
///
/// let builder = PodBuilder::new("payments", "api-7d9f")
///     .service_account("api")
///     .node_name("node-1")
///     .label("app", "api")
///     .owner("ReplicaSet", "api-7d9f", "2b1c7c7e-1111-4c0b-9a55-0d1c2b3a4f5e")
///     .container("api", "ghcr.io/acme/api:1.2.3");
/// let pod = builder.build();
/// let cgroup = format!(
///     "0::/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{}.scope",
///     builder.pod_uid().replace('-', "_"),
///     builder.container_id("api").unwrap(),
/// );
/// assert_eq!(pod.metadata.namespace.as_deref(), Some("payments"));
/// # let _ = cgroup;
/// ```
#[derive(Debug, Clone)]
pub struct PodBuilder {
    namespace: String,
    name: String,
    uid: String,
    service_account: String,
    node_name: String,
    labels: BTreeMap<String, String>,
    owners: Vec<OwnerReference>,
    containers: Vec<ContainerDef>,
    init_containers: Vec<ContainerDef>,
    statuses: bool,
    host_ip: String,
    pod_ip: String,
    /// Unix seconds the pod was created; the other timestamps follow it.
    created: i64,
    resource_version: String,
}

impl PodBuilder {
    /// A pod `name` in `namespace`, service account `default`, on node
    /// `node-1`, host IP `10.0.0.10`, pod IP `10.244.1.23`, no containers
    /// yet, a random UID.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PodBuilder {
            namespace: namespace.into(),
            name: name.into(),
            uid: random_uid(),
            service_account: "default".to_owned(),
            node_name: "node-1".to_owned(),
            labels: BTreeMap::new(),
            owners: Vec::new(),
            containers: Vec::new(),
            init_containers: Vec::new(),
            statuses: true,
            host_ip: "10.0.0.10".to_owned(),
            pod_ip: "10.244.1.23".to_owned(),
            created: unix_now() - 120,
            resource_version: format!("{}", 100_000 + u32::from(rand::random::<u16>())),
        }
    }

    /// Sets the pod UID (`metadata.uid`).
    pub fn uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    /// Sets `spec.serviceAccountName`.
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.service_account = name.into();
        self
    }

    /// Sets `spec.nodeName`.
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = name.into();
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a controlling owner reference (`apiVersion` chosen from the
    /// kind: `apps/v1` for ReplicaSet, Deployment, StatefulSet, DaemonSet;
    /// `batch/v1` for Job and CronJob; `v1` otherwise).
    pub fn owner(
        mut self,
        kind: impl Into<String>,
        name: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        let kind = kind.into();
        let api_version = match kind.as_str() {
            "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
            "Job" | "CronJob" => "batch/v1",
            _ => "v1",
        };
        self.owners.push(OwnerReference {
            api_version: api_version.to_owned(),
            block_owner_deletion: Some(true),
            controller: Some(self.owners.is_empty()),
            kind,
            name: name.into(),
            uid: uid.into(),
        });
        self
    }

    /// Adds a container with a random container ID.
    pub fn container(self, name: impl Into<String>, image: impl Into<String>) -> Self {
        self.container_with_id(name, image, random_hex(32))
    }

    /// Adds a container whose container ID is `id` (64 hex digits, no
    /// `containerd://` prefix).
    pub fn container_with_id(
        mut self,
        name: impl Into<String>,
        image: impl Into<String>,
        id: impl Into<String>,
    ) -> Self {
        self.containers.push(ContainerDef {
            name: name.into(),
            image: image.into(),
            id: id.into(),
        });
        self
    }

    /// Adds an init container (completed, in the status) with a random ID.
    pub fn init_container(mut self, name: impl Into<String>, image: impl Into<String>) -> Self {
        self.init_containers.push(ContainerDef {
            name: name.into(),
            image: image.into(),
            id: random_hex(32),
        });
        self
    }

    /// Leaves out container statuses, as for a pod just scheduled: phase
    /// `Pending`, only the `PodScheduled` condition, no pod IP.
    pub fn without_container_statuses(mut self) -> Self {
        self.statuses = false;
        self
    }

    /// Sets `status.hostIP` (and `hostIPs`).
    pub fn host_ip(mut self, ip: impl Into<String>) -> Self {
        self.host_ip = ip.into();
        self
    }

    /// Sets `status.podIP` (and `podIPs`).
    pub fn pod_ip(mut self, ip: impl Into<String>) -> Self {
        self.pod_ip = ip.into();
        self
    }

    /// The pod UID.
    pub fn pod_uid(&self) -> &str {
        &self.uid
    }

    /// The container ID (64 hex digits, no prefix) of container or init
    /// container `name`.
    pub fn container_id(&self, name: &str) -> Option<&str> {
        self.containers
            .iter()
            .chain(&self.init_containers)
            .find(|c| c.name == name)
            .map(|c| c.id.as_str())
    }

    /// The pod. Building twice gives equal pods.
    pub fn build(&self) -> Pod {
        Pod {
            metadata: self.metadata(),
            spec: Some(self.spec()),
            status: Some(self.status()),
        }
    }

    fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            resource_version: Some(self.resource_version.clone()),
            creation_timestamp: Some(time_at(self.created)),
            labels: (!self.labels.is_empty()).then(|| self.labels.clone()),
            owner_references: (!self.owners.is_empty()).then(|| self.owners.clone()),
            ..Default::default()
        }
    }

    fn spec(&self) -> PodSpec {
        let container = |c: &ContainerDef| Container {
            name: c.name.clone(),
            image: Some(c.image.clone()),
            image_pull_policy: Some("IfNotPresent".to_owned()),
            termination_message_path: Some("/dev/termination-log".to_owned()),
            termination_message_policy: Some("File".to_owned()),
            ..Default::default()
        };
        let toleration = |key: &str| Toleration {
            effect: Some("NoExecute".to_owned()),
            key: Some(key.to_owned()),
            operator: Some("Exists".to_owned()),
            toleration_seconds: Some(300),
            value: None,
        };
        PodSpec {
            containers: self.containers.iter().map(container).collect(),
            init_containers: (!self.init_containers.is_empty())
                .then(|| self.init_containers.iter().map(container).collect()),
            service_account_name: Some(self.service_account.clone()),
            node_name: Some(self.node_name.clone()),
            restart_policy: Some("Always".to_owned()),
            dns_policy: Some("ClusterFirst".to_owned()),
            scheduler_name: Some("default-scheduler".to_owned()),
            termination_grace_period_seconds: Some(30),
            enable_service_links: Some(true),
            priority: Some(0),
            preemption_policy: Some("PreemptLowerPriority".to_owned()),
            tolerations: Some(vec![
                toleration("node.kubernetes.io/not-ready"),
                toleration("node.kubernetes.io/unreachable"),
            ]),
            ..Default::default()
        }
    }

    fn status(&self) -> PodStatus {
        let condition = |type_: &str| PodCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            last_transition_time: Some(time_at(self.created + 10)),
            ..Default::default()
        };
        let base = PodStatus {
            host_ip: Some(self.host_ip.clone()),
            host_ips: Some(vec![HostIP {
                ip: self.host_ip.clone(),
            }]),
            qos_class: Some("BestEffort".to_owned()),
            start_time: Some(time_at(self.created + 5)),
            ..Default::default()
        };
        if !self.statuses {
            return PodStatus {
                phase: Some("Pending".to_owned()),
                conditions: Some(vec![condition("PodScheduled")]),
                ..base
            };
        }
        PodStatus {
            phase: Some("Running".to_owned()),
            conditions: Some(
                [
                    "PodReadyToStartContainers",
                    "Initialized",
                    "Ready",
                    "ContainersReady",
                    "PodScheduled",
                ]
                .into_iter()
                .map(condition)
                .collect(),
            ),
            pod_ip: Some(self.pod_ip.clone()),
            pod_ips: Some(vec![PodIP {
                ip: self.pod_ip.clone(),
            }]),
            container_statuses: Some(
                self.containers
                    .iter()
                    .map(|c| running_status(c, self.created))
                    .collect(),
            ),
            init_container_statuses: (!self.init_containers.is_empty()).then(|| {
                self.init_containers
                    .iter()
                    .map(|c| completed_status(c, self.created))
                    .collect()
            }),
            ..base
        }
    }
}

fn running_status(c: &ContainerDef, created: i64) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: normalize_image(&c.image),
        image_id: image_id(&c.image),
        container_id: Some(format!("containerd://{}", c.id)),
        ready: true,
        started: Some(true),
        restart_count: 0,
        state: Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time_at(created + 20)),
            }),
            ..Default::default()
        }),
        last_state: Some(ContainerState::default()),
        ..Default::default()
    }
}

fn completed_status(c: &ContainerDef, created: i64) -> ContainerStatus {
    let container_id = format!("containerd://{}", c.id);
    ContainerStatus {
        started: Some(false),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(container_id),
                exit_code: 0,
                reason: Some("Completed".to_owned()),
                started_at: Some(time_at(created + 8)),
                finished_at: Some(time_at(created + 9)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..running_status(c, created)
    }
}

/// The UID of `pod` (`metadata.uid`), if set.
pub fn pod_uid(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref()
}

/// `(container name, container ID without the runtime prefix)` for every
/// container and init container status of `pod`.
pub fn container_ids(pod: &Pod) -> Vec<(String, String)> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let statuses = status.container_statuses.iter().flatten();
    let init = status.init_container_statuses.iter().flatten();
    statuses
        .chain(init)
        .filter_map(|s| {
            let id = s.container_id.as_deref()?;
            let raw = id.split_once("://").map_or(id, |(_, raw)| raw);
            Some((s.name.clone(), raw.to_owned()))
        })
        .collect()
}
