//! The agent configuration shipped in `conf/k8s/21-agent-config.yaml`
//! loads with the real config loader, and every `WorkloadAttestor` block in
//! it resolves (plugin keys and values, without touching the files it
//! names), so the manifests cannot drift from the code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use spinel_agent::attestor::node::NodeAttestorConfig;
use spinel_agent::attestor::workload::k8s::{Environment, K8sConfig};
use spinel_agent::config::{AgentConfig, Overrides};
use spinel_config::hcl::ConfigFile;
use spinel_test_fixtures::manifests::{configmap_value, k8s_dir};

#[test]
fn the_kubernetes_manifest_agent_conf_loads() {
    let text = configmap_value(&k8s_dir().join("21-agent-config.yaml"), "agent.conf").unwrap();
    let file = ConfigFile::parse(Path::new("21-agent-config.yaml:agent.conf"), &text).unwrap();
    let c = AgentConfig::from_file(&file, &Overrides::default())
        .unwrap_or_else(|e| panic!("conf/k8s agent.conf: {e}"));
    assert!(
        matches!(c.node_attestor, NodeAttestorConfig::K8sPsat(_)),
        "the DaemonSet agent attests with k8s_psat"
    );
    let names: Vec<&str> = c
        .workload_attestors
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert!(names.contains(&"k8s"), "{names:?}");
    let daemonset = std::fs::read_to_string(k8s_dir().join("22-agent-daemonset.yaml")).unwrap();
    let health = &c.health_checks;
    assert!(
        health.listener_enabled,
        "the DaemonSet probes the health listener"
    );
    for needle in [
        format!("containerPort: {}", health.bind_port),
        format!("path: {}", health.live_path),
        format!("path: {}", health.ready_path),
    ] {
        assert!(
            daemonset.contains(&needle),
            "the DaemonSet lacks {needle:?}"
        );
    }
    let var = |name: &str| (name == "MY_NODE_NAME").then(|| "node-1".to_owned());
    let env = Environment {
        var: &var,
        hostname: Some("node-1".into()),
    };
    for decl in c.workload_attestors.iter().filter(|d| d.name == "k8s") {
        let k8s: K8sConfig = decl.data().unwrap();
        k8s.resolve(decl, &env)
            .unwrap_or_else(|e| panic!("WorkloadAttestor \"k8s\" in the manifest: {e}"));
    }
}
