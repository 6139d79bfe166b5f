//! End to end with k8s_psat: real `spinel-server` and `spinel-agent`
//! processes and the shared fake kube-apiserver
//! (`spinel_test_fixtures::k8s::FakeApiServer`, real HTTPS, real
//! TokenReview/pod/node JSON, ES256 projected tokens).
//!
//! The agent attests with its projected token, gets
//! `spiffe://example.org/spire/agent/k8s_psat/demo/<node-uid>`, a node
//! alias for the cluster makes it the parent of a workload entry, it
//! re-attests at half-life with the token file's new content (the old token
//! is revoked), and after a restart it attests again with a fresh token.
//! Restarted while the API server is down, it serves with its stored SVID
//! and attests again when the API server is back.
//!
//! Real processes run on the real clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::Duration;

use http::StatusCode;

use spinel_test_fixtures::k8s::{
    ApiServerOptions, FakeApiServer, NodeBuilder, PodBuilder, ServiceAccountToken,
    TOKEN_REVIEW_PATH,
};
use spinel_test_fixtures::process::my_uid;

use crate::support::psat::{start_agent, start_server, wait_for_svid};
use crate::support::wait_until;

fn reviews(api: &FakeApiServer) -> usize {
    let needle = format!("POST {TOKEN_REVIEW_PATH}");
    api.requests().iter().filter(|r| **r == needle).count()
}

#[test]
fn psat_agent_attests_is_aliased_reattests_and_restarts() {
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
    let mint = || {
        api.add_service_account_token(
            ServiceAccountToken::for_pod(&pod.build()).node("node-1", node.node_uid()),
        )
        .unwrap()
    };

    let work = tempfile::Builder::new()
        .prefix("spinel-psat-e2e")
        .tempdir_in("/tmp")
        .unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let mut server = start_server(&kubeconfig, "30s");

    let token_path = work.path().join("spire-agent-token");
    let first = mint();
    std::fs::write(&token_path, &first).unwrap();
    let agent_dir = tempfile::Builder::new()
        .prefix("spinel-agt")
        .tempdir_in("/tmp")
        .unwrap();
    let mut agent = start_agent(&server, &token_path, agent_dir);
    let agent_id = format!(
        "spiffe://example.org/spire/agent/k8s_psat/demo/{}",
        node.node_uid()
    );
    assert!(agent.log().contains(&agent_id), "{}", agent.log());
    assert!(!agent.log().contains(&first), "the agent logged its token");

    // A node alias for the cluster parents the workload entry.
    let alias = "spiffe://example.org/k8s/demo";
    server
        .create_entry(&[
            "-parentID",
            "spiffe://example.org/spire/server",
            "-spiffeID",
            alias,
            "-selector",
            "k8s_psat:cluster:demo",
        ])
        .unwrap();
    let uid = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            alias,
            "-spiffeID",
            "spiffe://example.org/workload",
            "-selector",
            &uid,
        ])
        .unwrap();
    wait_for_svid(&agent, "spiffe://example.org/workload");

    // Kubelet rotates the token; the old one stops working. At half of the
    // 30 s agent SVID life the agent must attest again with the new one.
    let second = mint();
    std::fs::write(&token_path, &second).unwrap();
    assert!(api.revoke_service_account_token(&first));
    let process = agent.process.as_mut().unwrap();
    process
        .wait_for_log("re-attested", Duration::from_secs(60))
        .unwrap();
    wait_for_svid(&agent, "spiffe://example.org/workload");

    // A restarted agent attests again with a fresh token, not its old SVID.
    agent.stop().unwrap();
    let before = reviews(&api);
    let third = mint();
    std::fs::write(&token_path, &third).unwrap();
    assert!(api.revoke_service_account_token(&second));
    agent.start_process().unwrap();
    assert!(reviews(&api) > before, "the restarted agent did not attest");
    wait_for_svid(&agent, "spiffe://example.org/workload");

    // The API server is down when the agent restarts: TokenReview fails,
    // so the agent cannot attest. It serves with its stored SVID, still
    // valid, and attests again once the API server answers.
    agent.stop().unwrap();
    api.set_failure(Some(StatusCode::SERVICE_UNAVAILABLE));
    let reattested_before = agent.log().matches("re-attested").count();
    agent.start_process().unwrap();
    assert!(
        agent
            .log()
            .contains("using the stored agent SVID until attestation succeeds"),
        "{}",
        agent.log()
    );
    wait_for_svid(&agent, "spiffe://example.org/workload");
    api.set_failure(None);
    wait_until(
        "attestation once the API server is back",
        Duration::from_secs(60),
        || agent.log(),
        || agent.log().matches("re-attested").count() > reattested_before,
    );
    wait_for_svid(&agent, "spiffe://example.org/workload");

    let log = agent.log() + &server.log();
    for token in [&first, &second, &third] {
        assert!(!log.contains(token.as_str()), "a token was logged");
    }

    agent.stop().unwrap();
    server.stop().unwrap();
}
