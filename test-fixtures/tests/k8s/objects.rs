//! The builders make objects that look like a real cluster's.

use k8s_openapi::api::core::v1::{Node, Pod};
use spinel_test_fixtures::k8s::{container_ids, pod_uid, NodeBuilder, PodBuilder};

#[test]
fn pod_json_has_the_real_shape_and_round_trips() {
    let builder = PodBuilder::new("payments", "api-7d9f-abcde")
        .uid("0b6f1f3e-8d2a-4e5b-9c1d-2f3e4a5b6c7d")
        .service_account("api")
        .node_name("node-2")
        .label("app", "api")
        .owner(
            "ReplicaSet",
            "api-7d9f",
            "11111111-2222-4333-8444-555555555555",
        )
        .container("api", "ghcr.io/acme/api:1.2.3")
        .container_with_id("sidecar", "envoyproxy/envoy:v1.31", "ab".repeat(32))
        .init_container("migrate", "ghcr.io/acme/migrate:1")
        .host_ip("10.0.0.12")
        .pod_ip("10.244.2.7");
    let pod = builder.build();
    assert_eq!(pod, builder.build(), "building is repeatable");
    let raw = serde_json::to_value(&pod).unwrap();
    assert_eq!(raw["kind"], "Pod");
    assert_eq!(raw["apiVersion"], "v1");
    assert_eq!(
        raw["metadata"]["uid"],
        "0b6f1f3e-8d2a-4e5b-9c1d-2f3e4a5b6c7d"
    );
    assert!(raw["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(raw["metadata"]["labels"]["app"], "api");
    let owner = &raw["metadata"]["ownerReferences"][0];
    assert_eq!(owner["apiVersion"], "apps/v1");
    assert_eq!(owner["kind"], "ReplicaSet");
    assert_eq!(owner["controller"], true);
    assert_eq!(raw["spec"]["serviceAccountName"], "api");
    assert_eq!(raw["spec"]["nodeName"], "node-2");
    assert_eq!(
        raw["spec"]["containers"][1]["image"],
        "envoyproxy/envoy:v1.31"
    );
    assert_eq!(raw["spec"]["initContainers"][0]["name"], "migrate");
    let status = &raw["status"];
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["hostIP"], "10.0.0.12");
    assert_eq!(status["podIP"], "10.244.2.7");
    assert_eq!(status["podIPs"][0]["ip"], "10.244.2.7");
    assert!(status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let sidecar = &status["containerStatuses"][1];
    assert_eq!(
        sidecar["containerID"],
        format!("containerd://{}", "ab".repeat(32))
    );
    assert_eq!(sidecar["image"], "docker.io/envoyproxy/envoy:v1.31");
    assert_eq!(sidecar["ready"], true);
    let init = &status["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");
    assert_eq!(
        init["imageID"].as_str().unwrap().split('@').next(),
        Some("ghcr.io/acme/migrate")
    );

    let back: Pod = serde_json::from_value(raw).unwrap();
    assert_eq!(back, pod);
    assert_eq!(pod_uid(&back), Some(builder.pod_uid()));
    let ids = container_ids(&back);
    assert_eq!(ids.len(), 3);
    for (name, id) in ids {
        assert_eq!(builder.container_id(&name), Some(id.as_str()));
    }
}

#[test]
fn just_scheduled_pods_have_no_container_statuses() {
    let pod = PodBuilder::new("ns", "p")
        .container("c", "nginx")
        .without_container_statuses()
        .build();
    let raw = serde_json::to_value(&pod).unwrap();
    assert_eq!(raw["status"]["phase"], "Pending");
    assert!(raw["status"].get("containerStatuses").is_none());
    assert!(raw["status"].get("podIP").is_none());
    assert!(container_ids(&pod).is_empty());
}

#[test]
fn node_json_has_the_real_shape_and_round_trips() {
    let builder = NodeBuilder::new("node-7")
        .uid("99999999-8888-4777-8666-555555555555")
        .label("topology.kubernetes.io/zone", "z1")
        .internal_ip("10.1.2.3");
    let node = builder.build();
    assert_eq!(node, builder.build());
    let raw = serde_json::to_value(&node).unwrap();
    assert_eq!(raw["kind"], "Node");
    assert_eq!(raw["metadata"]["uid"], builder.node_uid());
    assert_eq!(
        raw["metadata"]["labels"]["kubernetes.io/hostname"],
        "node-7"
    );
    assert_eq!(
        raw["metadata"]["labels"]["topology.kubernetes.io/zone"],
        "z1"
    );
    assert_eq!(raw["status"]["addresses"][0]["type"], "InternalIP");
    assert_eq!(raw["status"]["addresses"][0]["address"], "10.1.2.3");
    assert_eq!(raw["status"]["nodeInfo"]["kubeletVersion"], "v1.33.1");
    let back: Node = serde_json::from_value(raw).unwrap();
    assert_eq!(back, node);
}
