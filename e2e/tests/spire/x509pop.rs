//! `x509pop` across implementations: SPIRE's agent attests to
//! `spinel-server` with node certificates (ECDSA and RSA: Go signs RSA-PSS
//! with the longest salt), and `spinel-agent` attests to SPIRE's server
//! (which checks Spinel's RSA-PSS and ECDSA answers with Go's crypto).
//! Both get SPIRE's agent ID, `spiffe://example.org/spire/agent/x509pop/<SHA-1>`,
//! and serve a workload registered under it.

use spinel_test_fixtures::x509pop::{
    agent_id, agent_plugin, convert_key, server_plugin, KeyFormat, NodeCert, NodeKey, NodeSpec,
    PopCa,
};

use crate::support::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

use super::{assert_svid, my_uid_selector, pem_certs, spire, SpireAgent, SpireServer, WorkloadCli};

/// Node certificates: P-256 through an intermediate, RSA from the root.
struct Pki {
    dir: tempfile::TempDir,
    inter: PopCa,
    nodes: Vec<(&'static str, NodeCert, String)>,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = PopCa::root("node-root").unwrap();
        root.write_pem(&dir.path().join("root.pem")).unwrap();
        let inter = root.intermediate("node-intermediate").unwrap();
        let ecdsa = inter
            .issue(&NodeSpec::new(NodeKey::P256, "ecdsa-node"))
            .unwrap();
        let rsa = root
            .issue(&NodeSpec::new(NodeKey::Rsa(2048), "rsa-node"))
            .unwrap();
        let rsa_key = convert_key(&rsa.key_pem, KeyFormat::Pkcs1).unwrap();
        let ecdsa_key = ecdsa.key_pem.clone();
        Pki {
            dir,
            inter,
            nodes: vec![("ecdsa", ecdsa, ecdsa_key), ("rsa", rsa, rsa_key)],
        }
    }

    fn server_plugin(&self) -> String {
        server_plugin(&self.dir.path().join("root.pem"), "")
    }

    /// The `NodeAttestor "x509pop"` block of node `index`, files in a new
    /// directory kept in `dirs`.
    fn agent_plugin(&self, index: usize, dirs: &mut Vec<tempfile::TempDir>) -> String {
        let (kind, node, key) = &self.nodes[index];
        let dir = tempfile::tempdir().unwrap();
        let intermediates = (*kind == "ecdsa").then_some(self.inter.cert_pem.as_str());
        let block = agent_plugin(dir.path(), node, key, intermediates).unwrap();
        dirs.push(dir);
        block
    }
}

fn workload(kind: &str) -> String {
    format!("spiffe://example.org/x509pop-{kind}-workload")
}

#[test]
fn spire_agents_attest_to_spinel_with_x509pop() {
    let Some(spire) = spire() else { return };
    let pki = Pki::new();
    let server = ServerHandle::start(ServerOptions {
        plugins_extra: pki.server_plugin(),
        ..Default::default()
    })
    .unwrap();
    let endpoint = server.endpoint().unwrap();
    let roots = pem_certs(&server.bundle_pem().unwrap());
    let mut dirs = Vec::new();
    let mut agents = Vec::new();
    for (index, (kind, node, _)) in pki.nodes.iter().enumerate() {
        let id = agent_id("example.org", &node.cert_der);
        server
            .create_entry(&[
                "-parentID",
                &id,
                "-spiffeID",
                &workload(kind),
                "-selector",
                &my_uid_selector(),
            ])
            .unwrap();
        let mut agent = SpireAgent::configure_with_node_attestor(
            &spire,
            &endpoint,
            &pki.agent_plugin(index, &mut dirs),
            "",
        )
        .unwrap();
        agent.start_process().unwrap();
        agents.push((kind, id, agent));
    }
    for (kind, id, agent) in &agents {
        let fetched = spire
            .wait_x509(&agent.socket_path, &workload(kind))
            .unwrap();
        assert_svid(&fetched, &workload(kind), &roots);
        let shown = server
            .cli(&["agent", "show", "-spiffeID", id])
            .unwrap()
            .ok()
            .unwrap()
            .stdout;
        assert!(shown.contains("Attestation type  : x509pop"), "{shown}");
        assert!(
            shown.contains(&format!("x509pop:subject:cn:{kind}-node")),
            "{shown}"
        );
        assert!(!agent.log().contains("level=error"), "{}", agent.log());
    }
}

#[test]
fn spinel_agents_attest_to_spire_with_x509pop() {
    let Some(spire) = spire() else { return };
    let pki = Pki::new();
    let server = SpireServer::start_with_plugins(&spire, "", &pki.server_plugin()).unwrap();
    let endpoint = server.endpoint().unwrap();
    let roots = pem_certs(&endpoint.bundle_pem);
    let mut dirs = Vec::new();
    let mut agents = Vec::new();
    for (index, (kind, node, _)) in pki.nodes.iter().enumerate() {
        let id = agent_id("example.org", &node.cert_der);
        server
            .create_entry(&[
                "-parentID",
                &id,
                "-spiffeID",
                &workload(kind),
                "-selector",
                &my_uid_selector(),
            ])
            .unwrap();
        let agent = AgentHandle::start_for(
            &endpoint,
            AgentOptions {
                node_attestor: Some(pki.agent_plugin(index, &mut dirs)),
                ..Default::default()
            },
        )
        .unwrap();
        agents.push((kind, id, agent));
    }
    for (kind, id, agent) in &agents {
        let fetched = spire
            .wait_x509(&agent.socket_path, &workload(kind))
            .unwrap();
        assert_svid(&fetched, &workload(kind), &roots);
        let shown = server
            .cli(&["agent", "show", "-spiffeID", id])
            .unwrap()
            .ok()
            .unwrap()
            .stdout;
        assert!(shown.contains("x509pop"), "{shown}");
    }
}
