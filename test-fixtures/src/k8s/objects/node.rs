//! [`NodeBuilder`]: a node as `GET /api/v1/nodes/{name}` returns it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{random_hex, random_uid, time_at, unix_now};

/// Builds a [`Node`]: random UID, the well-known labels
/// (`kubernetes.io/hostname`, `kubernetes.io/os`, `kubernetes.io/arch`),
/// addresses `InternalIP` and `Hostname`, condition `Ready`, system info.
///
/// ```
/// use spinel_test_fixtures::k8s::NodeBuilder;
///
/// let node = NodeBuilder::new("node-1")
///     .label("topology.kubernetes.io/zone", "eu-west-1a")
///     .internal_ip("10.0.0.10")
///     .build();
/// assert_eq!(node.metadata.name.as_deref(), Some("node-1"));
/// ```
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    name: String,
    uid: String,
    labels: BTreeMap<String, String>,
    internal_ip: String,
    created: i64,
    resource_version: String,
    boot_id: String,
    machine_id: String,
    system_uuid: String,
}

impl NodeBuilder {
    /// A node `name` with internal IP `10.0.0.10` and a random UID.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let labels = BTreeMap::from([
            ("beta.kubernetes.io/arch".to_owned(), "amd64".to_owned()),
            ("beta.kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("kubernetes.io/arch".to_owned(), "amd64".to_owned()),
            ("kubernetes.io/hostname".to_owned(), name.clone()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ]);
        NodeBuilder {
            name,
            uid: random_uid(),
            labels,
            internal_ip: "10.0.0.10".to_owned(),
            created: unix_now() - 86_400,
            resource_version: format!("{}", 200_000 + u32::from(rand::random::<u16>())),
            boot_id: random_uid(),
            machine_id: random_hex(16),
            system_uuid: random_uid(),
        }
    }

    /// Sets the node UID (`metadata.uid`).
    pub fn uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    /// Adds (or replaces) a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the `InternalIP` address.
    pub fn internal_ip(mut self, ip: impl Into<String>) -> Self {
        self.internal_ip = ip.into();
        self
    }

    /// The node UID.
    pub fn node_uid(&self) -> &str {
        &self.uid
    }

    /// The node. Building twice gives equal nodes.
    pub fn build(&self) -> Node {
        let ready = NodeCondition {
            type_: "Ready".to_owned(),
            status: "True".to_owned(),
            reason: Some("KubeletReady".to_owned()),
            message: Some("kubelet is posting ready status".to_owned()),
            last_heartbeat_time: Some(time_at(self.created + 86_390)),
            last_transition_time: Some(time_at(self.created)),
        };
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                uid: Some(self.uid.clone()),
                resource_version: Some(self.resource_version.clone()),
                creation_timestamp: Some(time_at(self.created)),
                labels: Some(self.labels.clone()),
                annotations: Some(BTreeMap::from([(
                    "node.alpha.kubernetes.io/ttl".to_owned(),
                    "0".to_owned(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: Some("10.244.1.0/24".to_owned()),
                pod_cidrs: Some(vec!["10.244.1.0/24".to_owned()]),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "InternalIP".to_owned(),
                        address: self.internal_ip.clone(),
                    },
                    NodeAddress {
                        type_: "Hostname".to_owned(),
                        address: self.name.clone(),
                    },
                ]),
                conditions: Some(vec![ready]),
                node_info: Some(NodeSystemInfo {
                    architecture: "amd64".to_owned(),
                    boot_id: self.boot_id.clone(),
                    container_runtime_version: "containerd://2.0.5".to_owned(),
                    kernel_version: "6.8.0-1024-aws".to_owned(),
                    kube_proxy_version: String::new(),
                    kubelet_version: "v1.33.1".to_owned(),
                    machine_id: self.machine_id.clone(),
                    operating_system: "linux".to_owned(),
                    os_image: "Ubuntu 24.04.2 LTS".to_owned(),
                    swap: None,
                    system_uuid: self.system_uuid.clone(),
                }),
                ..Default::default()
            }),
        }
    }
}
