//! The fake kubelet, called over real HTTPS and plain HTTP.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::List;
use spinel_test_fixtures::k8s::{
    container_ids, FakeKubelet, KubeletOptions, PodBuilder, TestCa, FORBIDDEN_TOKEN_USER,
};

use crate::client::{get, Target};

fn with_token() -> KubeletOptions {
    KubeletOptions {
        token: Some("kubelet-token".into()),
        forbidden_token: Some("no-rbac-token".into()),
        ..Default::default()
    }
}

fn secure(kubelet: &FakeKubelet, token: Option<&str>) -> Target {
    Target {
        port: kubelet.secure_port(),
        ca_pem: Some(kubelet.ca_pem()),
        token: token.map(str::to_owned),
        ..Default::default()
    }
}

#[tokio::test]
async fn serves_a_real_pod_list_with_the_token() {
    let kubelet = FakeKubelet::start(with_token()).unwrap();
    let pod = PodBuilder::new("payments", "api-0")
        .service_account("api")
        .container("api", "nginx:1.27")
        .init_container("init", "busybox");
    kubelet.set_pods(vec![pod.build()]);

    let reply = get(&secure(&kubelet, Some("kubelet-token")), "/pods")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.content_type, "application/json");
    let raw = reply.json();
    assert_eq!(raw["kind"], "PodList");
    assert_eq!(raw["apiVersion"], "v1");
    assert_eq!(raw["metadata"], serde_json::json!({}));
    let status = &raw["items"][0]["status"]["containerStatuses"][0];
    let id = status["containerID"].as_str().unwrap();
    let hex = id.strip_prefix("containerd://").unwrap();
    assert_eq!(hex.len(), 64);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(Some(hex), pod.container_id("api"));
    assert_eq!(status["image"], "docker.io/library/nginx:1.27");
    assert!(status["imageID"]
        .as_str()
        .unwrap()
        .starts_with("docker.io/library/nginx@sha256:"));
    assert!(status["state"]["running"]["startedAt"].is_string());

    // It round-trips through k8s-openapi's own types.
    let list: List<Pod> = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0], pod.build());
    assert_eq!(container_ids(&list.items[0]).len(), 2);
    assert_eq!(kubelet.pods_requests(), 1);
}

#[tokio::test]
async fn refuses_like_a_kubelet() {
    let kubelet = FakeKubelet::start(with_token()).unwrap();

    let none = get(&secure(&kubelet, None), "/pods").await.unwrap();
    assert_eq!((none.status, none.body.as_str()), (401, "Unauthorized"));

    let wrong = get(&secure(&kubelet, Some("nope")), "/pods").await.unwrap();
    assert_eq!(wrong.status, 401);

    let forbidden = get(&secure(&kubelet, Some("no-rbac-token")), "/pods")
        .await
        .unwrap();
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        forbidden.body,
        format!(
            "Forbidden (user={FORBIDDEN_TOKEN_USER}, verb=get, resource=nodes, subresource=proxy)"
        )
    );

    let other = get(&secure(&kubelet, Some("kubelet-token")), "/stats/summary")
        .await
        .unwrap();
    assert_eq!(other.status, 404);
    assert_eq!(kubelet.pods_requests(), 3, "every GET /pods is counted");
}

#[tokio::test]
async fn anonymous_when_no_token_is_configured() {
    let kubelet = FakeKubelet::start(KubeletOptions::default()).unwrap();
    let reply = get(&secure(&kubelet, None), "/pods").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["items"], serde_json::json!([]));
    // The serving certificate is also valid for "localhost".
    let mut by_name = secure(&kubelet, None);
    by_name.server_name = Some("localhost".into());
    assert_eq!(get(&by_name, "/pods").await.unwrap().status, 200);
}

#[tokio::test]
async fn accepts_client_certificates_from_its_ca() {
    let kubelet = FakeKubelet::start(KubeletOptions {
        token: Some("kubelet-token".into()),
        client_ca: true,
        ..Default::default()
    })
    .unwrap();
    let mut target = secure(&kubelet, None);
    target.client_cert = Some(kubelet.issue_client_cert().unwrap());
    assert_eq!(get(&target, "/pods").await.unwrap().status, 200);

    // No certificate and no token: 401, the connection itself is fine.
    assert_eq!(
        get(&secure(&kubelet, None), "/pods").await.unwrap().status,
        401
    );

    // A certificate from another CA fails the handshake.
    let stranger = TestCa::new("stranger").unwrap();
    let cert = stranger.issue_client_cert("intruder", None).unwrap();
    target.client_cert = Some((cert.cert_pem, cert.key_pem));
    assert!(get(&target, "/pods").await.is_err());
}

#[tokio::test]
async fn read_only_port_is_plain_http_without_auth() {
    let mut options = with_token();
    options.read_only_port = true;
    let kubelet = FakeKubelet::start(options).unwrap();
    let port = kubelet.read_only_port().unwrap();
    assert_ne!(port, kubelet.secure_port());
    let plain = Target {
        port,
        ..Default::default()
    };
    let reply = get(&plain, "/pods").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["kind"], "PodList");
    assert!(FakeKubelet::start(with_token())
        .unwrap()
        .read_only_port()
        .is_none());
}

#[tokio::test]
async fn state_changes_while_running() {
    let kubelet = FakeKubelet::start(KubeletOptions::default()).unwrap();
    let target = secure(&kubelet, None);
    let pending = PodBuilder::new("ns", "web")
        .container("web", "nginx")
        .without_container_statuses();
    kubelet.upsert_pod(pending.build());
    let raw = get(&target, "/pods").await.unwrap().json();
    assert_eq!(raw["items"][0]["status"]["phase"], "Pending");
    assert!(raw["items"][0]["status"].get("containerStatuses").is_none());

    // The same pod (same UID) once its containers started.
    let running = PodBuilder::new("ns", "web")
        .uid(pending.pod_uid())
        .container("web", "nginx");
    kubelet.upsert_pod(running.build());
    let raw = get(&target, "/pods").await.unwrap().json();
    assert_eq!(raw["items"].as_array().unwrap().len(), 1);
    assert_eq!(raw["items"][0]["status"]["phase"], "Running");

    assert!(kubelet.remove_pod(pending.pod_uid()));
    assert!(!kubelet.remove_pod(pending.pod_uid()));
    let raw = get(&target, "/pods").await.unwrap().json();
    assert_eq!(raw["items"], serde_json::json!([]));
}

#[tokio::test]
async fn concurrent_requests_pile_up_behind_the_latency() {
    let kubelet = FakeKubelet::start(KubeletOptions::default()).unwrap();
    kubelet.set_latency(Duration::from_millis(200));
    let target = secure(&kubelet, None);
    let calls = (0..3).map(|_| {
        let target = target.clone();
        tokio::spawn(async move { get(&target, "/pods").await.unwrap().status })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(kubelet.pods_requests(), 3);
}

#[test]
fn works_from_a_plain_test_and_stops_when_dropped() {
    let kubelet = FakeKubelet::start(KubeletOptions::default()).unwrap();
    let target = secure(&kubelet, None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(get(&target, "/pods")).unwrap().status, 200);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("kubelet-ca.pem");
    kubelet.write_ca(&ca).unwrap();
    assert_eq!(std::fs::read_to_string(&ca).unwrap(), kubelet.ca_pem());
    drop(kubelet);
    assert!(rt.block_on(get(&target, "/pods")).is_err());
}

#[tokio::test]
async fn injected_failures_follow_authentication() {
    let kubelet = FakeKubelet::start(with_token()).unwrap();
    assert_eq!(
        kubelet.url(),
        format!("https://127.0.0.1:{}", kubelet.secure_port())
    );
    kubelet.set_failure(Some(http::StatusCode::SERVICE_UNAVAILABLE));
    let reply = get(&secure(&kubelet, Some("kubelet-token")), "/pods")
        .await
        .unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "Service Unavailable")
    );
    assert_eq!(
        get(&secure(&kubelet, None), "/pods").await.unwrap().status,
        401
    );
    kubelet.set_failure(None);
    let reply = get(&secure(&kubelet, Some("kubelet-token")), "/pods")
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
}
