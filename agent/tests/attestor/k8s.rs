//! The `k8s` workload attestor against `spinel_test_fixtures`'
//! [`FakeKubelet`]: real HTTPS (and plain HTTP), real `v1.PodList` JSON
//! built from k8s-openapi types, the kubelet's own 401/403 answers. The
//! attestor is configured only through `plugin_data`, and reads a fake
//! `/proc/<pid>` whose cgroup puts the caller in the pod.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::time::Duration;

use spinel_agent::attestor::workload::k8s::{Environment, K8sAttestor};
use spinel_agent::attestor::workload::{AttestError, Caller, Root, WorkloadAttestor};
use spinel_config::hcl::ConfigFile;
use spinel_test_fixtures::k8s::{FakeKubelet, KubeletOptions, PodBuilder};

const PID: i32 = 777;
const TOKEN: &str = "kubelet-token";

const CALLER: Caller = Caller {
    pid: PID,
    uid: 1000,
    gid: 1000,
    process: None,
};

fn pod() -> PodBuilder {
    PodBuilder::new("payments", "api-0")
        .service_account("api")
        .label("app", "api")
        .owner("StatefulSet", "api", "0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d")
        .container("api", "ghcr.io/acme/api:1.2.3")
        .container("envoy", "docker.io/envoyproxy/envoy:v1.31.0")
        .init_container("migrate", "ghcr.io/acme/api:1.2.3")
}

fn kubelet(options: KubeletOptions, pod: &PodBuilder) -> FakeKubelet {
    let kubelet = FakeKubelet::start(options).unwrap();
    kubelet.upsert_pod(pod.build());
    kubelet
}

fn with_token() -> KubeletOptions {
    KubeletOptions {
        token: Some(TOKEN.into()),
        forbidden_token: Some("no-rbac-token".into()),
        ..Default::default()
    }
}

/// A temp dir holding a fake `/proc/<PID>` in `pod`'s container `api`
/// (systemd driver, containerd, cgroup v2), and credential files.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new(pod: &PodBuilder) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pid_dir = dir.path().join("proc").join(PID.to_string());
        std::fs::create_dir_all(&pid_dir).unwrap();
        let stat = format!("{PID} (api) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5555 1000 10 0\n");
        std::fs::write(pid_dir.join("stat"), stat).unwrap();
        let cgroup = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope\n",
            pod.pod_uid().replace('-', "_"),
            pod.container_id("api").unwrap(),
        );
        std::fs::write(pid_dir.join("cgroup"), cgroup).unwrap();
        Node { dir }
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn attestor(&self, plugin_data: &str) -> Result<K8sAttestor, AttestError> {
        let text = format!(
            "plugins {{\n WorkloadAttestor \"k8s\" {{\n plugin_data {{\n{plugin_data}\n }}\n }}\n}}\n"
        );
        let decls = ConfigFile::parse(Path::new("agent.conf"), &text)
            .unwrap()
            .plugins()
            .unwrap();
        let no_env = |_: &str| None;
        let env = Environment {
            var: &no_env,
            hostname: None,
        };
        let proc = self.dir.path().join("proc");
        K8sAttestor::from_decl_in(&decls[0], &env, Root::new(proc, self.dir.path()))
    }

    /// plugin_data for the secure port with the kubelet's CA and a token file.
    fn secure(&self, kubelet: &FakeKubelet, token: &str) -> (String, PathBuf) {
        let ca = self.file("ca.crt", &kubelet.ca_pem());
        let token_path = self.file("token", token);
        let data = format!(
            "node_name = \"127.0.0.1\"\nkubelet_secure_port = {}\nkubelet_ca_path = \"{}\"\ntoken_path = \"{}\"\nmax_poll_attempts = 2\npoll_retry_interval = \"10ms\"",
            kubelet.secure_port(),
            ca.display(),
            token_path.display()
        );
        (data, token_path)
    }
}

fn strings(selectors: &[spinel_spiffe::Selector]) -> Vec<String> {
    selectors.iter().map(ToString::to_string).collect()
}

fn assert_selectors(pod: &PodBuilder, selectors: &[spinel_spiffe::Selector]) {
    let got = strings(selectors);
    let uid = format!("k8s:pod-uid:{}", pod.pod_uid());
    for want in [
        "k8s:ns:payments",
        "k8s:sa:api",
        "k8s:node-name:node-1",
        uid.as_str(),
        "k8s:pod-name:api-0",
        "k8s:pod-label:app:api",
        "k8s:pod-owner:StatefulSet:api",
        "k8s:pod-owner-uid:StatefulSet:0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d",
        "k8s:pod-image-count:2",
        "k8s:pod-init-image-count:1",
        "k8s:pod-image:docker.io/envoyproxy/envoy:v1.31.0",
        "k8s:pod-image:ghcr.io/acme/api:1.2.3",
        "k8s:pod-init-image:ghcr.io/acme/api:1.2.3",
        "k8s:container-name:api",
        "k8s:container-image:ghcr.io/acme/api:1.2.3",
    ] {
        assert!(got.iter().any(|g| g == want), "{want} missing from {got:?}");
    }
    // Digests (imageID) are selectors too.
    assert!(got
        .iter()
        .any(|g| g.starts_with("k8s:container-image:ghcr.io/acme/api@sha256:")));
    assert!(!got.iter().any(|g| g == "k8s:container-name:envoy"));
}

#[tokio::test]
async fn bearer_token_over_https() {
    let pod = pod();
    let kubelet = kubelet(with_token(), &pod);
    let node = Node::new(&pod);
    let (data, _) = node.secure(&kubelet, &format!("{TOKEN}\n"));
    let got = node.attestor(&data).unwrap().attest(&CALLER).await.unwrap();
    assert_selectors(&pod, &got);
}

#[tokio::test]
async fn unauthorized_names_the_token_path_and_the_token_is_read_again() {
    let pod = pod();
    let kubelet = kubelet(with_token(), &pod);
    let node = Node::new(&pod);
    let (data, token_path) = node.secure(&kubelet, "stale-token");
    let attestor = node.attestor(&data).unwrap();
    let err = attestor.attest(&CALLER).await.unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");
    assert!(err.contains(&token_path.display().to_string()), "{err}");
    assert!(err.contains("token_path"), "{err}");

    // The projected token rotates on disk: the same attestor picks it up.
    std::fs::write(&token_path, TOKEN).unwrap();
    assert_selectors(&pod, &attestor.attest(&CALLER).await.unwrap());
}

#[tokio::test]
async fn forbidden_names_the_rbac_need() {
    let pod = pod();
    let kubelet = kubelet(with_token(), &pod);
    let node = Node::new(&pod);
    let (data, _) = node.secure(&kubelet, "no-rbac-token");
    let err = node
        .attestor(&data)
        .unwrap()
        .attest(&CALLER)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") && err.contains("nodes/proxy"), "{err}");
    assert!(
        err.contains("system:serviceaccount:spire:spire-agent"),
        "{err}"
    );
}

#[tokio::test]
async fn ca_mismatch_names_the_ca_and_the_way_out() {
    let pod = pod();
    let kubelet = kubelet(with_token(), &pod);
    let other = FakeKubelet::start(KubeletOptions::default()).unwrap();
    let node = Node::new(&pod);
    let (data, token_path) = node.secure(&kubelet, TOKEN);
    let wrong_ca = node.file("ca.crt", &other.ca_pem());
    let err = node
        .attestor(&data)
        .unwrap()
        .attest(&CALLER)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TLS") && err.contains(&wrong_ca.display().to_string()),
        "{err}"
    );
    assert!(
        err.contains("kubelet_ca_path") && err.contains("skip_kubelet_verification"),
        "{err}"
    );

    // skip_kubelet_verification accepts the unknown CA.
    let data = format!(
        "node_name = \"127.0.0.1\"\nkubelet_secure_port = {}\nskip_kubelet_verification = true\ntoken_path = \"{}\"",
        kubelet.secure_port(),
        token_path.display()
    );
    let got = node.attestor(&data).unwrap().attest(&CALLER).await.unwrap();
    assert_selectors(&pod, &got);
}

#[tokio::test]
async fn localhost_as_node_name() {
    let pod = pod();
    let kubelet = kubelet(with_token(), &pod);
    let node = Node::new(&pod);
    let (data, _) = node.secure(&kubelet, TOKEN);
    let data = data.replace("node_name = \"127.0.0.1\"", "node_name = \"localhost\"");
    // The certificate names localhost; the connection tries every address
    // localhost resolves to (the fake listens on 127.0.0.1).
    let got = node.attestor(&data).unwrap().attest(&CALLER).await.unwrap();
    assert_selectors(&pod, &got);
}

#[tokio::test]
async fn client_certificate_authentication() {
    let pod = pod();
    let kubelet = kubelet(
        KubeletOptions {
            token: Some(TOKEN.into()),
            client_ca: true,
            ..Default::default()
        },
        &pod,
    );
    let node = Node::new(&pod);
    let ca = node.file("ca.crt", &kubelet.ca_pem());
    let (cert_pem, key_pem) = kubelet.issue_client_cert().unwrap();
    let cert = node.file("client.crt", &cert_pem);
    let key = node.file("client.key", &key_pem);
    let data = format!(
        "node_name = \"127.0.0.1\"\nkubelet_secure_port = {}\nkubelet_ca_path = \"{}\"\ncertificate_path = \"{}\"\nprivate_key_path = \"{}\"",
        kubelet.secure_port(),
        ca.display(),
        cert.display(),
        key.display()
    );
    let got = node.attestor(&data).unwrap().attest(&CALLER).await.unwrap();
    assert_selectors(&pod, &got);
}

#[tokio::test]
async fn read_only_port_over_plain_http() {
    let pod = pod();
    let kubelet = kubelet(
        KubeletOptions {
            token: Some(TOKEN.into()),
            read_only_port: true,
            ..Default::default()
        },
        &pod,
    );
    let node = Node::new(&pod);
    let data = format!(
        "node_name = \"127.0.0.1\"\nkubelet_read_only_port = {}",
        kubelet.read_only_port().unwrap()
    );
    let got = node.attestor(&data).unwrap().attest(&CALLER).await.unwrap();
    assert_selectors(&pod, &got);
}

#[tokio::test]
async fn concurrent_attestations_share_one_kubelet_request() {
    let pod = pod();
    let kubelet = kubelet(
        KubeletOptions {
            latency: Duration::from_millis(200),
            ..with_token()
        },
        &pod,
    );
    let node = Node::new(&pod);
    let (data, _) = node.secure(&kubelet, TOKEN);
    let data = data.replace("\"10ms\"", "\"5s\"");
    let attestor = node.attestor(&data).unwrap();
    let all = futures::future::join_all((0..32).map(|_| attestor.attest(&CALLER))).await;
    for result in all {
        assert_selectors(&pod, &result.unwrap());
    }
    assert_eq!(kubelet.pods_requests(), 1);
}

#[tokio::test]
async fn pod_listed_before_its_container_status() {
    let pod = pod();
    let kubelet = kubelet(with_token(), &pod.clone().without_container_statuses());
    let node = Node::new(&pod);
    let (data, _) = node.secure(&kubelet, TOKEN);
    let err = node
        .attestor(&data)
        .unwrap()
        .attest(&CALLER)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(pod.pod_uid()) && err.contains("no status for container"),
        "{err}"
    );
    assert_eq!(kubelet.pods_requests(), 2);

    // With disable_container_selectors the pod alone is enough.
    let data = format!("{data}\ndisable_container_selectors = true");
    let got = strings(&node.attestor(&data).unwrap().attest(&CALLER).await.unwrap());
    assert!(got.contains(&"k8s:ns:payments".to_owned()), "{got:?}");
    assert!(
        !got.iter().any(|s| s.starts_with("k8s:container-")),
        "{got:?}"
    );
}

#[tokio::test]
async fn connection_refused_names_host_and_port() {
    let pod = pod();
    let node = Node::new(&pod);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let data = format!(
        "node_name = \"127.0.0.1\"\nkubelet_read_only_port = {port}\nmax_poll_attempts = 1"
    );
    let err = node
        .attestor(&data)
        .unwrap()
        .attest(&CALLER)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("cannot connect"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_ca_file_fails_at_build() {
    let node = Node::new(&pod());
    let err = node
        .attestor("kubelet_ca_path = \"/nonexistent/ca.crt\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/ca.crt") && err.contains("kubelet_ca_path"),
        "{err}"
    );
}

#[tokio::test]
async fn retries_through_kubelet_failures() {
    let pod = pod();
    let kubelet = kubelet(with_token(), &pod);
    kubelet.set_failure(Some(http::StatusCode::SERVICE_UNAVAILABLE));
    let node = Node::new(&pod);
    let (data, _) = node.secure(&kubelet, TOKEN);
    let data = data.replace("max_poll_attempts = 2", "max_poll_attempts = 1000");
    let attestor = node.attestor(&data).unwrap();
    let attempt = tokio::spawn(async move { attestor.attest(&CALLER).await });
    while kubelet.pods_requests() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kubelet.set_failure(None);
    assert_selectors(&pod, &attempt.await.unwrap().unwrap());

    // Failing to the end: the last error is told.
    kubelet.set_failure(Some(http::StatusCode::SERVICE_UNAVAILABLE));
    let (data, _) = node.secure(&kubelet, TOKEN);
    let err = node
        .attestor(&data)
        .unwrap()
        .attest(&CALLER)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("503"), "{err}");
}

#[tokio::test]
async fn the_ca_file_is_reloaded() {
    let pod = pod();
    let kubelet = kubelet(with_token(), &pod);
    let other = FakeKubelet::start(KubeletOptions::default()).unwrap();
    let node = Node::new(&pod);
    let (data, _) = node.secure(&kubelet, TOKEN);
    let ca = node.file("ca.crt", &other.ca_pem());
    let attestor = node
        .attestor(&format!("{data}\nreload_interval = \"1ms\""))
        .unwrap();
    assert!(attestor.attest(&CALLER).await.is_err());
    // The kubelet CA is replaced on disk (e.g. a ConfigMap update).
    std::fs::write(&ca, kubelet.ca_pem()).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_selectors(&pod, &attestor.attest(&CALLER).await.unwrap());
}
