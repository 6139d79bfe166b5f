//! Resilience of a reattestable (`k8s_psat`) agent, with real server and
//! agent processes and the shared fake kube-apiserver: evicted, it attests
//! again by itself without a restart and keeps serving its workloads;
//! restarted while the server is down, it serves from its stored state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use spinel_test_fixtures::k8s::{
    ApiServerOptions, FakeApiServer, NodeBuilder, PodBuilder, ServiceAccountToken,
};
use spinel_test_fixtures::AgentHandle;

use crate::support::psat::{register_cluster_workload, start_agent, start_server, wait_for_svid};

#[test]
fn evicted_psat_agent_attests_again_and_restarts_while_the_server_is_down() {
    let api = FakeApiServer::start(ApiServerOptions {
        validate_bound_pods: true,
        ..ApiServerOptions::default()
    })
    .unwrap();
    let node = NodeBuilder::new("node-1").label("topology.kubernetes.io/zone", "z1");
    let pod = PodBuilder::new("spire", "spire-agent-x2k9p")
        .service_account("spire-agent")
        .node_name("node-1")
        .host_ip("10.0.0.7");
    api.add_node(node.build());
    api.add_pod(pod.build());
    let work = tempfile::Builder::new()
        .prefix("spinel-psat-res")
        .tempdir_in("/tmp")
        .unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let server = start_server(&kubeconfig, "10m");
    let token_path = work.path().join("spire-agent-token");
    let token = api
        .add_service_account_token(
            ServiceAccountToken::for_pod(&pod.build()).node("node-1", node.node_uid()),
        )
        .unwrap();
    std::fs::write(&token_path, &token).unwrap();
    let agent_dir = tempfile::Builder::new()
        .prefix("spinel-agt")
        .tempdir_in("/tmp")
        .unwrap();
    let mut agent = start_agent(&server, &token_path, agent_dir);
    let agent_id = format!(
        "spiffe://example.org/spire/agent/k8s_psat/demo/{}",
        node.node_uid()
    );
    register_cluster_workload(&server, "spiffe://example.org/workload");
    wait_for_svid(&agent, "spiffe://example.org/workload");

    server
        .cli(&["agent", "evict", "-spiffeID", &agent_id])
        .unwrap()
        .ok()
        .unwrap();
    let process = agent.process.as_mut().unwrap();
    process
        .wait_for_log("re-attested", Duration::from_secs(60))
        .unwrap();
    let shown = server
        .cli(&["agent", "show", "-spiffeID", &agent_id])
        .unwrap();
    assert!(shown.success(), "{}{}", shown.stdout, shown.stderr);
    wait_for_svid(&agent, "spiffe://example.org/workload");
    assert!(!agent.log().contains("needs a new join token"));

    // Restarted while the server is down, it cannot attest: it serves the
    // stored SVIDs on its stored agent SVID and recovers when the server is back.
    let mut server = server;
    wait_for_saved_cache(&agent);
    server.stop().unwrap();
    agent.stop().unwrap();
    agent.start_process().unwrap();
    wait_for_svid(&agent, "spiffe://example.org/workload");
    assert!(
        agent.log().contains("using the stored agent SVID"),
        "{}",
        agent.log()
    );
    let recovered = |agent: &AgentHandle| {
        agent
            .log()
            .matches("sync with the server recovered")
            .count()
    };
    let before = recovered(&agent);
    server.start_process().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while recovered(&agent) == before {
        assert!(Instant::now() < deadline, "no recovery:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_svid(&agent, "spiffe://example.org/workload");
}

fn wait_for_saved_cache(agent: &AgentHandle) {
    let path = agent.dir.path().join("data/workload_cache.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no workload cache saved:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
