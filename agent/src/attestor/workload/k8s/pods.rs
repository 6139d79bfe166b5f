//! The few fields of the kubelet's `GET /pods` answer (a `v1.PodList`)
//! that the selectors need; every other field is skipped while parsing, so
//! what is kept per pod is small whatever the pod spec holds.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A `v1.PodList`, reduced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PodList {
    /// The pods (`items`; `null` reads as none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<Pod>,
}

/// A `v1.Pod`, reduced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Pod {
    /// `metadata`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: PodSpec,
    /// `status`.
    #[serde(default)]
    pub status: PodStatus,
}

/// `metadata` of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `namespace`.
    #[serde(default)]
    pub namespace: String,
    /// `uid`.
    #[serde(default)]
    pub uid: String,
    /// `labels`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// `ownerReferences`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub owner_references: Vec<OwnerReference>,
}

/// One of `metadata.ownerReferences`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OwnerReference {
    /// `kind`, e.g. `ReplicaSet`.
    #[serde(default)]
    pub kind: String,
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `uid`.
    #[serde(default)]
    pub uid: String,
}

/// `spec` of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// `serviceAccountName`.
    #[serde(default)]
    pub service_account_name: String,
    /// `nodeName`.
    #[serde(default)]
    pub node_name: String,
}

/// `status` of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// `containerStatuses`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_statuses: Vec<ContainerStatus>,
    /// `initContainerStatuses`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub init_container_statuses: Vec<ContainerStatus>,
    /// `ephemeralContainerStatuses` (debug containers: never given an
    /// identity, but recognised so the caller is told so at once).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ephemeral_container_statuses: Vec<ContainerStatus>,
}

/// One container status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `image`, as the runtime reports it (usually a tag).
    #[serde(default)]
    pub image: String,
    /// `imageID` (usually a digest).
    #[serde(default, rename = "imageID")]
    pub image_id: String,
    /// `containerID`: `<runtime>://<id>`, empty until the container is
    /// created.
    #[serde(default, rename = "containerID")]
    pub container_id: String,
}

impl ContainerStatus {
    /// The ID after `<runtime>://` (`containerd://<id>` gives `<id>`), or the
    /// whole value when there is no scheme.
    pub fn bare_id(&self) -> &str {
        match self.container_id.split_once("://") {
            Some((_, id)) => id,
            None => &self.container_id,
        }
    }
}

/// How a container ID was found in a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// A regular or init container: it is the workload.
    Container(&'a ContainerStatus),
    /// An ephemeral (debug) container.
    Ephemeral(&'a ContainerStatus),
}

impl Pod {
    /// The status of the container whose ID is `container_id`.
    pub fn find_container(&self, container_id: &str) -> Option<Found<'_>> {
        let s = &self.status;
        let matches =
            |c: &&ContainerStatus| !c.container_id.is_empty() && c.bare_id() == container_id;
        if let Some(c) = s
            .container_statuses
            .iter()
            .chain(&s.init_container_statuses)
            .find(matches)
        {
            return Some(Found::Container(c));
        }
        s.ephemeral_container_statuses
            .iter()
            .find(matches)
            .map(Found::Ephemeral)
    }
}

impl PodList {
    /// Parses a kubelet `GET /pods` body.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// Lets `null` stand for an empty list or map, as Go's encoder writes them.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubelet_json_ignoring_other_fields() {
        let body = br#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[
          {"metadata":{"name":"web-7d4b9c-x2x","namespace":"shop","uid":"u-1",
             "labels":{"app":"web"},"annotations":{"a":"b"},
             "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d4b9c","uid":"rs-1","controller":true}]},
           "spec":{"serviceAccountName":"web","nodeName":"n1","containers":[{"name":"app","image":"web:1"}]},
           "status":{"phase":"Running","containerStatuses":[{"name":"app","image":"web:1","imageID":"web@sha256:ab","containerID":"containerd://c1","ready":true,"state":{"running":{}}}],
             "initContainerStatuses":null}},
          {"metadata":{"name":"bare","uid":"u-2","labels":null},"spec":{},"status":{}}]}"#;
        let list = PodList::parse(body).unwrap();
        assert_eq!(list.items.len(), 2);
        let pod = &list.items[0];
        assert_eq!(pod.metadata.owner_references[0].kind, "ReplicaSet");
        assert_eq!(pod.spec.service_account_name, "web");
        let Some(Found::Container(c)) = pod.find_container("c1") else {
            panic!("container not found");
        };
        assert_eq!(c.image_id, "web@sha256:ab");
        assert!(pod.find_container("c2").is_none());
        assert!(list.items[1].metadata.labels.is_empty());
        assert_eq!(PodList::parse(br#"{"items":null}"#).unwrap().items.len(), 0);
        assert!(PodList::parse(b"<html>").is_err());
    }

    #[test]
    fn ephemeral_containers_are_told_apart() {
        let mut pod = Pod::default();
        pod.status
            .ephemeral_container_statuses
            .push(ContainerStatus {
                name: "debugger".into(),
                container_id: "cri-o://e1".into(),
                ..Default::default()
            });
        assert!(matches!(
            pod.find_container("e1"),
            Some(Found::Ephemeral(_))
        ));
        // A status without container ID matches nothing.
        pod.status
            .container_statuses
            .push(ContainerStatus::default());
        assert!(pod.find_container("").is_none());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes from the kubelet are a pod list or an error, never a
        /// panic.
        #[test]
        fn any_body_parses_or_fails(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = PodList::parse(&body);
        }

        /// JSON of the right shape with arbitrary strings keeps every pod's
        /// identity as sent.
        #[test]
        fn pods_keep_their_names(names in proptest::collection::vec("\\PC{0,40}", 0..8)) {
            let items: Vec<serde_json::Value> = names
                .iter()
                .map(|n| serde_json::json!({"metadata": {"name": n, "namespace": "ns", "uid": n}}))
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({"kind": "PodList", "items": items}))
                .unwrap_or_default();
            let list = PodList::parse(&body);
            prop_assert!(list.is_ok(), "{:?}", list.err());
            if let Ok(list) = list {
                let parsed: Vec<String> = list.items.iter().map(|p| p.metadata.name.clone()).collect();
                prop_assert_eq!(parsed, names);
            }
        }
    }
}
