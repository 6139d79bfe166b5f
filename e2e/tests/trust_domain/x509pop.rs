//! `x509pop` node attestation between real processes: agents holding
//! node certificates from an outside PKI (ECDSA through an intermediate,
//! RSA straight from the root) attest to a `spinel-server` trusting that
//! PKI's root, get SPIRE's agent IDs and node selectors, and serve
//! workloads registered under the agent ID or under a node alias matched
//! by an `x509pop` selector; at half of their agent SVID's life they attest
//! again (a fresh challenge) instead of renewing. An agent with a
//! certificate of another CA is refused.

use std::time::{Duration, Instant};

use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::{my_uid, poll};
use spinel_test_fixtures::x509pop::{
    agent_id, agent_plugin, convert_key, fingerprint, server_plugin, KeyFormat, NodeKey, NodeSpec,
    PopCa,
};
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

const ECDSA_WORKLOAD: &str = "spiffe://example.org/x509pop/ecdsa-workload";
const RSA_WORKLOAD: &str = "spiffe://example.org/x509pop/rsa-workload";
const RSA_NODES: &str = "spiffe://example.org/x509pop/rsa-nodes";

async fn wait_for_svid(agent: &AgentHandle, id: &str) -> spiffe::X509Svid {
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(svids) = client.fetch_all_x509_svids().await {
            if let Some(svid) = svids.into_iter().find(|s| s.spiffe_id().to_string() == id) {
                return svid;
            }
        }
        assert!(Instant::now() < deadline, "no SVID for {id} within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ecdsa_and_rsa_nodes_attest_and_serve_workloads() {
    let pki = tempfile::tempdir().unwrap();
    let root = PopCa::root("node-root").unwrap();
    let inter = root.intermediate("node-intermediate").unwrap();
    let root_path = pki.path().join("root.pem");
    root.write_pem(&root_path).unwrap();
    let server = ServerHandle::start(ServerOptions {
        plugins_extra: server_plugin(&root_path, ""),
        // Short enough that the agents attest again during the test.
        server_extra: "    agent_ttl = \"30s\"\n".into(),
        ..Default::default()
    })
    .unwrap();

    // ECDSA P-256 through the intermediate, key as SEC1.
    let mut spec = NodeSpec::new(NodeKey::P256, "ecdsa-node");
    spec.uri_sans = vec!["x509pop://example.org/datacenter/dc-1".into()];
    let ecdsa = inter.issue(&spec).unwrap();
    let ecdsa_id = agent_id("example.org", &ecdsa.cert_der);
    // RSA from the root, key as PKCS#1.
    let rsa = root
        .issue(&NodeSpec::new(NodeKey::Rsa(2048), "rsa-node"))
        .unwrap();
    let rsa_id = agent_id("example.org", &rsa.cert_der);

    let uid = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            &ecdsa_id,
            "-spiffeID",
            ECDSA_WORKLOAD,
            "-selector",
            &uid,
        ])
        .unwrap();
    // A node alias for every node whose certificate says CN=rsa-node.
    server
        .create_entry(&[
            "-node",
            "-spiffeID",
            RSA_NODES,
            "-selector",
            "x509pop:subject:cn:rsa-node",
        ])
        .unwrap();
    server
        .create_entry(&[
            "-parentID",
            RSA_NODES,
            "-spiffeID",
            RSA_WORKLOAD,
            "-selector",
            &uid,
        ])
        .unwrap();

    let ecdsa_key = convert_key(&ecdsa.key_pem, KeyFormat::Sec1).unwrap();
    let rsa_key = convert_key(&rsa.key_pem, KeyFormat::Pkcs1).unwrap();
    let ecdsa_dir = tempfile::tempdir().unwrap();
    let mut ecdsa_agent = AgentHandle::start(
        &server,
        AgentOptions {
            node_attestor: Some(
                agent_plugin(ecdsa_dir.path(), &ecdsa, &ecdsa_key, Some(&inter.cert_pem)).unwrap(),
            ),
            ..Default::default()
        },
    )
    .unwrap();
    let rsa_dir = tempfile::tempdir().unwrap();
    let rsa_agent = AgentHandle::start(
        &server,
        AgentOptions {
            node_attestor: Some(agent_plugin(rsa_dir.path(), &rsa, &rsa_key, None).unwrap()),
            ..Default::default()
        },
    )
    .unwrap();

    let svid = wait_for_svid(&ecdsa_agent, ECDSA_WORKLOAD).await;
    assert_eq!(svid.spiffe_id().to_string(), ECDSA_WORKLOAD);
    let svid = wait_for_svid(&rsa_agent, RSA_WORKLOAD).await;
    assert_eq!(svid.spiffe_id().to_string(), RSA_WORKLOAD);

    // The server lists both agents SPIRE's way, with SPIRE's selectors.
    let shown = server
        .cli(&["agent", "show", "-spiffeID", &ecdsa_id])
        .unwrap()
        .ok()
        .unwrap()
        .stdout;
    assert!(shown.contains("Attestation type  : x509pop"), "{shown}");
    for selector in [
        "x509pop:subject:cn:ecdsa-node".to_owned(),
        format!("x509pop:ca:fingerprint:{}", fingerprint(&inter.cert_der)),
        format!("x509pop:ca:fingerprint:{}", fingerprint(&root.cert_der)),
        "x509pop:san:datacenter:dc-1".to_owned(),
    ] {
        assert!(shown.contains(&selector), "{selector}: {shown}");
    }
    let shown = server
        .cli(&["agent", "show", "-spiffeID", &rsa_id])
        .unwrap()
        .ok()
        .unwrap()
        .stdout;
    assert!(shown.contains("x509pop:subject:cn:rsa-node"), "{shown}");
    assert!(ecdsa_agent.log().contains("node attestation succeeded"));

    // Reattestable: at half-life the agent proves its key again.
    ecdsa_agent
        .process
        .as_mut()
        .unwrap()
        .wait_for_log("re-attested", Duration::from_secs(60))
        .unwrap();
    wait_for_svid(&ecdsa_agent, ECDSA_WORKLOAD).await;
    // No key material in any log.
    let logs = ecdsa_agent.log() + &rsa_agent.log() + &server.log();
    for key in [&ecdsa_key, &rsa_key] {
        let body = key.lines().nth(1).unwrap();
        assert!(!logs.contains(body), "a node key was logged");
    }
}

#[test]
fn a_node_certificate_of_another_ca_is_refused() {
    let pki = tempfile::tempdir().unwrap();
    let root = PopCa::root("node-root").unwrap();
    let root_path = pki.path().join("root.pem");
    root.write_pem(&root_path).unwrap();
    let server = ServerHandle::start(ServerOptions {
        plugins_extra: server_plugin(&root_path, ""),
        ..Default::default()
    })
    .unwrap();
    let stranger = PopCa::root("stranger")
        .unwrap()
        .issue(&NodeSpec::new(NodeKey::P256, "node"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentHandle::configure(
        &server,
        AgentOptions {
            node_attestor: Some(
                agent_plugin(dir.path(), &stranger, &stranger.key_pem, None).unwrap(),
            ),
            ..Default::default()
        },
    )
    .unwrap();
    agent.spawn_process().unwrap();
    poll(
        Duration::from_secs(30),
        "the refusal in the agent log",
        || {
            Ok(agent
                .log()
                .contains("certificate verification failed")
                .then_some(()))
        },
    )
    .unwrap();
    let listed = server.cli(&["agent", "list"]).unwrap().ok().unwrap().stdout;
    assert!(!listed.contains("x509pop"), "{listed}");
}
