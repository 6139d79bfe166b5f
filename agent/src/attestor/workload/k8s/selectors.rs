//! The `k8s:` selectors of a pod and of the workload's container, as
//! SPIRE's attestor produces them.
//!
//! Pod selectors: `sa`, `ns`, `node-name`, `pod-uid`, `pod-name`,
//! `pod-image-count` and `pod-init-image-count` (the number of container
//! and init container *statuses*), `pod-image` and `pod-init-image` (every
//! status's `image` and `imageID`), `pod-label:<k>:<v>`,
//! `pod-owner:<Kind>:<name>` and `pod-owner-uid:<Kind>:<uid>`. Container
//! selectors: `container-name`, `container-image` (its `image` and
//! `imageID`). Images come from the status, not the spec: the status says
//! what runs (`imageID` is the resolved digest).
//!
//! Values are deduplicated; an empty image (a status not filled in yet)
//! gives no selector.

use std::collections::BTreeSet;

use spinel_spiffe::{Selector, SelectorError};

use super::pods::{ContainerStatus, Pod};

/// The selector type of this attestor.
pub const SELECTOR_TYPE: &str = "k8s";

/// The selectors of `pod`.
pub fn pod_selectors(pod: &Pod) -> Result<Vec<Selector>, SelectorError> {
    let mut out = Out::default();
    let meta = &pod.metadata;
    out.push("sa", &pod.spec.service_account_name)?;
    out.push("ns", &meta.namespace)?;
    out.push("node-name", &pod.spec.node_name)?;
    out.push("pod-uid", &meta.uid)?;
    out.push("pod-name", &meta.name)?;
    let status = &pod.status;
    out.push(
        "pod-image-count",
        &status.container_statuses.len().to_string(),
    )?;
    out.push(
        "pod-init-image-count",
        &status.init_container_statuses.len().to_string(),
    )?;
    for image in images(&status.container_statuses) {
        out.push("pod-image", image)?;
    }
    for image in images(&status.init_container_statuses) {
        out.push("pod-init-image", image)?;
    }
    for (k, v) in &meta.labels {
        out.push("pod-label", &format!("{k}:{v}"))?;
    }
    for owner in &meta.owner_references {
        out.push("pod-owner", &format!("{}:{}", owner.kind, owner.name))?;
        out.push("pod-owner-uid", &format!("{}:{}", owner.kind, owner.uid))?;
    }
    Ok(out.list)
}

/// The selectors of the workload's container.
pub fn container_selectors(status: &ContainerStatus) -> Result<Vec<Selector>, SelectorError> {
    let mut out = Out::default();
    out.push("container-name", &status.name)?;
    for image in images(std::slice::from_ref(status)) {
        out.push("container-image", image)?;
    }
    Ok(out.list)
}

/// `image` and `imageID` of every status, sorted, without duplicates or
/// empty values.
fn images(statuses: &[ContainerStatus]) -> BTreeSet<&str> {
    statuses
        .iter()
        .flat_map(|s| [s.image.as_str(), s.image_id.as_str()])
        .filter(|i| !i.is_empty())
        .collect()
}

#[derive(Default)]
struct Out {
    seen: BTreeSet<Selector>,
    list: Vec<Selector>,
}

impl Out {
    fn push(&mut self, kind: &str, value: &str) -> Result<(), SelectorError> {
        let s = Selector::new(SELECTOR_TYPE, format!("{kind}:{value}"))?;
        if self.seen.insert(s.clone()) {
            self.list.push(s);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::pods::{Found, PodList};
    use super::*;

    /// A Deployment's pod with a sidecar and an init container, as the
    /// kubelet reports it.
    const POD: &str = r#"{"items":[{
      "metadata":{"name":"api-6f7c9d8b5-kx2lq","namespace":"payments",
        "uid":"5d3c1b2a-9e8f-4a7b-8c6d-0e1f2a3b4c5d",
        "labels":{"app":"api","pod-template-hash":"6f7c9d8b5"},
        "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"api-6f7c9d8b5",
          "uid":"0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d","controller":true,"blockOwnerDeletion":true}]},
      "spec":{"serviceAccountName":"api","nodeName":"ip-10-0-3-17.ec2.internal",
        "containers":[{"name":"api","image":"ghcr.io/acme/api:1.4.2"},{"name":"envoy","image":"envoyproxy/envoy:v1.31.0"}],
        "initContainers":[{"name":"migrate","image":"ghcr.io/acme/api:1.4.2"}]},
      "status":{"phase":"Running",
        "initContainerStatuses":[{"name":"migrate","image":"ghcr.io/acme/api:1.4.2",
          "imageID":"ghcr.io/acme/api@sha256:1111","containerID":"containerd://init1","ready":true}],
        "containerStatuses":[
          {"name":"api","image":"ghcr.io/acme/api:1.4.2","imageID":"ghcr.io/acme/api@sha256:1111",
           "containerID":"containerd://c-api","ready":true,"restartCount":0},
          {"name":"envoy","image":"docker.io/envoyproxy/envoy:v1.31.0",
           "imageID":"docker.io/envoyproxy/envoy@sha256:2222","containerID":"containerd://c-envoy"}]}}]}"#;

    fn strings(list: Vec<Selector>) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn realistic_pod() {
        let list = PodList::parse(POD.as_bytes()).unwrap();
        let pod = &list.items[0];
        assert_eq!(
            strings(pod_selectors(pod).unwrap()),
            [
                "k8s:sa:api",
                "k8s:ns:payments",
                "k8s:node-name:ip-10-0-3-17.ec2.internal",
                "k8s:pod-uid:5d3c1b2a-9e8f-4a7b-8c6d-0e1f2a3b4c5d",
                "k8s:pod-name:api-6f7c9d8b5-kx2lq",
                "k8s:pod-image-count:2",
                "k8s:pod-init-image-count:1",
                "k8s:pod-image:docker.io/envoyproxy/envoy:v1.31.0",
                "k8s:pod-image:docker.io/envoyproxy/envoy@sha256:2222",
                "k8s:pod-image:ghcr.io/acme/api:1.4.2",
                "k8s:pod-image:ghcr.io/acme/api@sha256:1111",
                "k8s:pod-init-image:ghcr.io/acme/api:1.4.2",
                "k8s:pod-init-image:ghcr.io/acme/api@sha256:1111",
                "k8s:pod-label:app:api",
                "k8s:pod-label:pod-template-hash:6f7c9d8b5",
                "k8s:pod-owner:ReplicaSet:api-6f7c9d8b5",
                "k8s:pod-owner-uid:ReplicaSet:0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d",
            ]
        );
        let Some(Found::Container(envoy)) = pod.find_container("c-envoy") else {
            panic!("envoy not found");
        };
        assert_eq!(
            strings(container_selectors(envoy).unwrap()),
            [
                "k8s:container-name:envoy",
                "k8s:container-image:docker.io/envoyproxy/envoy:v1.31.0",
                "k8s:container-image:docker.io/envoyproxy/envoy@sha256:2222",
            ]
        );
    }

    #[test]
    fn same_image_and_id_give_one_selector() {
        let status = ContainerStatus {
            name: "c".into(),
            image: "sha256:abcd".into(),
            image_id: "sha256:abcd".into(),
            container_id: String::new(),
        };
        assert_eq!(
            strings(container_selectors(&status).unwrap()),
            ["k8s:container-name:c", "k8s:container-image:sha256:abcd"]
        );
    }
}
