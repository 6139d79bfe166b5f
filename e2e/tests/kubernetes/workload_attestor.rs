//! End to end on Kubernetes' terms: real `spinel-server` and `spinel-agent`
//! processes, the agent's `k8s` workload attestor asking a protocol-faithful
//! fake kubelet (real Kubernetes JSON over HTTPS, bearer token checked),
//! and this test process moved into a real pod-shaped cgroup so that the
//! agent reads a real `/proc/<pid>/cgroup`. The workload side is the
//! independent `spiffe` crate.
//!
//! Needs root and writable cgroups (CI runs as root); without them each
//! test says so and checks nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use spiffe::WorkloadApiClient;
use spinel_test_fixtures::cgroup::{Layout, PodCgroup};
use spinel_test_fixtures::k8s::{FakeKubelet, KubeletOptions, PodBuilder};
use spinel_test_fixtures::process::write_file;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

const AGENT_ALIAS: &str = "spiffe://example.org/myagent";
const KUBELET_TOKEN: &str = "agent-service-account-token";
const WORKLOAD_ID: &str = "spiffe://example.org/ns/payments/sa/api";

/// A pod as the kubelet lists it, and the IDs its cgroup path carries.
struct Pod {
    uid: String,
    container_id: String,
}

/// Server, fake kubelet holding one `payments/api` pod, and an agent with
/// the `k8s` workload attestor pointed at the kubelet's secure port.
fn cluster() -> (ServerHandle, AgentHandle, FakeKubelet, Pod) {
    cluster_with("")
}

/// [`cluster`], with `top_level` (such as a `telemetry` block) appended to
/// the agent's config.
fn cluster_with(top_level: &str) -> (ServerHandle, AgentHandle, FakeKubelet, Pod) {
    let kubelet = FakeKubelet::start(KubeletOptions {
        token: Some(KUBELET_TOKEN.into()),
        ..Default::default()
    })
    .unwrap();
    let builder = PodBuilder::new("payments", "api-7d9f8b6c5-x2kqj")
        .service_account("api")
        .node_name("node-1")
        .label("app", "api")
        .owner(
            "ReplicaSet",
            "api-7d9f8b6c5",
            "5f0c2b7e-1111-4a8e-9d3c-0a1b2c3d4e5f",
        )
        .container("api", "ghcr.io/acme/api:1.4");
    let pod = Pod {
        uid: builder.pod_uid().to_owned(),
        container_id: builder.container_id("api").unwrap().to_owned(),
    };
    kubelet.set_pods(vec![builder.build()]);

    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let files = tempfile::tempdir_in("/tmp").unwrap().keep();
    let ca = files.join("kubelet-ca.pem");
    kubelet.write_ca(&ca).unwrap();
    let token_path = files.join("token");
    write_file(&token_path, KUBELET_TOKEN).unwrap();
    let mut agent = AgentHandle::configure(
        &server,
        AgentOptions {
            join_token: Some(token),
            plugins_extra: format!(
                r#"    WorkloadAttestor "k8s" {{
        plugin_data {{
            node_name = "127.0.0.1"
            kubelet_secure_port = {port}
            kubelet_ca_path = "{ca}"
            token_path = "{token}"
            max_poll_attempts = 20
            poll_retry_interval = "100ms"
        }}
    }}"#,
                port = kubelet.secure_port(),
                ca = ca.display(),
                token = token_path.display(),
            ),
            ..Default::default()
        },
    )
    .unwrap();
    crate::telemetry::append(&agent.config_path, top_level);
    agent.start_process().unwrap();
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            WORKLOAD_ID,
            "-selector",
            "k8s:ns:payments",
            "-selector",
            "k8s:sa:api",
            "-selector",
            "k8s:pod-label:app:api",
            "-selector",
            "k8s:container-name:api",
        ])
        .unwrap();
    (server, agent, kubelet, pod)
}

async fn x509_id(client: &WorkloadApiClient) -> Result<String, String> {
    client
        .fetch_x509_svid()
        .await
        .map(|s| s.spiffe_id().to_string())
        .map_err(|e| e.to_string())
}

/// Fetches until the SVID is `WORKLOAD_ID`, for up to 30 s.
async fn wait_for_identity(client: &WorkloadApiClient, agent: &AgentHandle) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match x509_id(client).await {
            Ok(id) if id == WORKLOAD_ID => return,
            other => assert!(
                Instant::now() < deadline,
                "no {WORKLOAD_ID} within 30 s (last: {other:?}); agent log:\n{}",
                agent.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pod_gets_identity(layout: Layout) {
    if !PodCgroup::available(layout) {
        eprintln!("skipped: {layout:?} cgroups need root and a mounted hierarchy");
        return;
    }
    let (server, agent, kubelet, pod) = cluster();
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    {
        // In the pod: the entry's k8s selectors all match.
        let _in_pod = PodCgroup::enter(layout, &pod.uid, &pod.container_id).unwrap();
        wait_for_identity(&client, &agent).await;
        let jwt = client.fetch_jwt_svid(&["vault"], None).await.unwrap();
        assert_eq!(jwt.spiffe_id().to_string(), WORKLOAD_ID);
        assert!(kubelet.pods_requests() >= 1);
    }
    // Out of the pod again: the same process has no k8s selectors, and
    // the entry needs them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match x509_id(&client).await {
            Err(e) if e.contains("PermissionDenied") || e.contains("no identity") => break,
            other => assert!(
                Instant::now() < deadline,
                "still served outside the pod: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = agent.log();
    assert!(log.contains("no identity issued"), "{log}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_in_a_v1_cgroupfs_cgroup_gets_its_identity() {
    pod_gets_identity(Layout::V1Cgroupfs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_in_a_v2_systemd_cgroup_gets_its_identity() {
    pod_gets_identity(Layout::V2SystemdContainerd).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_attestations_share_kubelet_requests() {
    let layout = Layout::V1Cgroupfs;
    if !PodCgroup::available(layout) {
        eprintln!("skipped: cgroups need root and a mounted hierarchy");
        return;
    }
    let metrics_port = spinel_test_fixtures::process::free_port().unwrap();
    let (server, agent, kubelet, pod) =
        cluster_with(&crate::telemetry::telemetry_block(metrics_port));
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let _in_pod = PodCgroup::enter(layout, &pod.uid, &pod.container_id).unwrap();
    wait_for_identity(&client, &agent).await;
    // The agent's metrics count the kubelet requests the kubelet saw.
    if let Some(python) = crate::telemetry::parser() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let scrape = crate::telemetry::Scrape::take(&python, metrics_port);
            let counted = scrape.count(
                "spire_agent_k8s_kubelet_requests_total",
                &[("result", "success")],
            );
            if counted as usize == kubelet.pods_requests() && counted >= 1.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the kubelet saw {} requests; metrics:\n{}",
                kubelet.pods_requests(),
                scrape.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Slow kubelet: many calls arrive while one request is in flight.
    kubelet.set_latency(Duration::from_millis(500));
    tokio::time::sleep(Duration::from_secs(2)).await; // past any cached pod list
    let before = kubelet.pods_requests();
    let calls = (0..32).map(|_| {
        let client = client.clone();
        async move { x509_id(&client).await }
    });
    let results = futures::future::join_all(calls).await;
    assert!(
        results.iter().all(|r| r.as_deref() == Ok(WORKLOAD_ID)),
        "{results:?}"
    );
    let used = kubelet.pods_requests() - before;
    assert!(
        (1..=3).contains(&used),
        "32 concurrent attestations made {used} kubelet requests"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_just_scheduled_pod_is_attested_once_its_status_appears() {
    let layout = Layout::V1Cgroupfs;
    if !PodCgroup::available(layout) {
        eprintln!("skipped: cgroups need root and a mounted hierarchy");
        return;
    }
    let (server, agent, kubelet, pod) = cluster();
    // The pod as the kubelet first lists it: no container statuses yet.
    let pending = PodBuilder::new("payments", "api-7d9f8b6c5-x2kqj")
        .uid(&pod.uid)
        .service_account("api")
        .label("app", "api")
        .container_with_id("api", "ghcr.io/acme/api:1.4", &pod.container_id);
    kubelet.set_pods(vec![pending.clone().without_container_statuses().build()]);
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let _in_pod = PodCgroup::enter(layout, &pod.uid, &pod.container_id).unwrap();
    let fetch = tokio::spawn({
        let client = client.clone();
        async move { x509_id(&client).await }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    kubelet.set_pods(vec![pending.build()]);
    // The attestation that started before the status appeared succeeds
    // (or, if the agent had not synced the entry yet, a later one does).
    match fetch.await.unwrap() {
        Ok(id) => assert_eq!(id, WORKLOAD_ID),
        Err(_) => wait_for_identity(&client, &agent).await,
    }
    drop(server);
}

/// The whole Kubernetes picture: the agent attests its node with its
/// projected service account token (`k8s_psat`, TokenReview against a fake
/// kube-apiserver), a node alias for the cluster makes every such agent a
/// parent, and a pod on the node gets the identity of its namespace and
/// service account, with no per-node entry and no secret in the pod.
#[tokio::test(flavor = "multi_thread")]
async fn daemonset_agent_with_psat_serves_pods_through_a_node_alias() {
    use spinel_test_fixtures::k8s::{
        ApiServerOptions, FakeApiServer, NodeBuilder, ServiceAccountToken,
    };
    let layout = Layout::V2SystemdContainerd;
    if !PodCgroup::available(layout) {
        eprintln!("skipped: cgroups need root and a mounted hierarchy");
        return;
    }
    // The control plane: the agent's own pod and node, and its token.
    let api = FakeApiServer::start(ApiServerOptions {
        validate_bound_pods: true,
        ..ApiServerOptions::default()
    })
    .unwrap();
    let node = NodeBuilder::new("node-1").label("topology.kubernetes.io/zone", "z1");
    let agent_pod = PodBuilder::new("spinel", "spinel-agent-x2k9p")
        .service_account("spinel-agent")
        .node_name("node-1")
        .host_ip("10.0.0.7");
    api.add_node(node.build());
    api.add_pod(agent_pod.build());
    let files = tempfile::tempdir_in("/tmp").unwrap().keep();
    let kubeconfig = files.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let psat_token = files.join("spinel-agent-token");
    let sa_token = api
        .add_service_account_token(
            ServiceAccountToken::for_pod(&agent_pod.build()).node("node-1", node.node_uid()),
        )
        .unwrap();
    write_file(&psat_token, &sa_token).unwrap();

    // The node's kubelet, running the workload pod.
    let kubelet = FakeKubelet::start(KubeletOptions {
        token: Some(KUBELET_TOKEN.into()),
        ..Default::default()
    })
    .unwrap();
    let workload = PodBuilder::new("payments", "api-7d9f8b6c5-x2kqj")
        .service_account("api")
        .node_name("node-1")
        .container("api", "ghcr.io/acme/api:1.4");
    let (pod_uid, container_id) = (
        workload.pod_uid().to_owned(),
        workload.container_id("api").unwrap().to_owned(),
    );
    kubelet.set_pods(vec![workload.build()]);
    let kubelet_ca = files.join("kubelet-ca.pem");
    kubelet.write_ca(&kubelet_ca).unwrap();
    let kubelet_token = files.join("token");
    write_file(&kubelet_token, KUBELET_TOKEN).unwrap();

    let server = ServerHandle::start(ServerOptions {
        plugins_extra: format!(
            r#"    NodeAttestor "k8s_psat" {{
        plugin_data {{
            clusters = {{
                "demo" = {{
                    service_account_allow_list = ["spinel:spinel-agent"]
                    kube_config_file = "{}"
                }}
            }}
        }}
    }}"#,
            kubeconfig.display()
        ),
        ..Default::default()
    })
    .unwrap();
    // Registration as in conf/k8s/registration.sh: one node alias for the
    // cluster, one entry per namespace/service account under it.
    let alias = "spiffe://example.org/ns/spinel/sa/spinel-agent";
    server
        .create_entry(&[
            "-node",
            "-spiffeID",
            alias,
            "-selector",
            "k8s_psat:cluster:demo",
        ])
        .unwrap();
    server
        .create_entry(&[
            "-parentID",
            alias,
            "-spiffeID",
            WORKLOAD_ID,
            "-selector",
            "k8s:ns:payments",
            "-selector",
            "k8s:sa:api",
        ])
        .unwrap();

    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            node_attestor: Some(format!(
                "NodeAttestor \"k8s_psat\" {{\n        plugin_data {{\n            cluster = \"demo\"\n            token_path = \"{}\"\n        }}\n    }}",
                psat_token.display()
            )),
            plugins_extra: format!(
                r#"    WorkloadAttestor "k8s" {{
        plugin_data {{
            node_name = "127.0.0.1"
            kubelet_secure_port = {}
            kubelet_ca_path = "{}"
            token_path = "{}"
        }}
    }}"#,
                kubelet.secure_port(),
                kubelet_ca.display(),
                kubelet_token.display()
            ),
            ..Default::default()
        },
    )
    .unwrap();
    let agent_id = format!(
        "spiffe://example.org/spire/agent/k8s_psat/demo/{}",
        node.node_uid()
    );
    assert!(agent.log().contains(&agent_id), "{}", agent.log());
    let agents = server.cli(&["agent", "list"]).unwrap().ok().unwrap().stdout;
    assert!(agents.contains(&agent_id), "{agents}");

    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let _in_pod = PodCgroup::enter(layout, &pod_uid, &container_id).unwrap();
    wait_for_identity(&client, &agent).await;
    let log = agent.log() + &server.log();
    assert!(
        !log.contains(&sa_token),
        "a service account token was logged"
    );
    drop(server);
}
