//! The k8s_psat harness of the `kubernetes/`, `resilience/` and `agent/`
//! tests: a real
//! `spinel-server` with `NodeAttestor "k8s_psat"` pointed at a fake
//! kube-apiserver's kubeconfig, and a real `spinel-agent` attesting with a
//! projected token file.

use std::path::Path;
use std::time::{Duration, Instant};

use spinel_test_fixtures::process::{free_port, write_file};
use spinel_test_fixtures::{AgentHandle, ServerHandle};

/// A server attesting `k8s_psat` agents of cluster `demo` (allow list
/// `spire:spire-agent`) through `kubeconfig`, agent SVIDs living `agent_ttl`.
pub fn start_server(kubeconfig: &Path, agent_ttl: &str) -> ServerHandle {
    let dir = tempfile::Builder::new()
        .prefix("spinel-srv")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path().to_owned();
    let port = free_port().unwrap();
    let socket_path = root.join("private/api.sock");
    let config_path = root.join("server.conf");
    let config = format!(
        r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = "{socket}"
    trust_domain = "example.org"
    data_dir = "{root}/data"
    log_level = "DEBUG"
    agent_ttl = "{agent_ttl}"
}}

plugins {{
    DataStore "sled" {{
        plugin_data {{}}
    }}
    KeyManager "disk" {{
        plugin_data {{
            keys_path = "{root}/data/keys.json"
        }}
    }}
    NodeAttestor "k8s_psat" {{
        plugin_data {{
            clusters = {{
                "demo" = {{
                    service_account_allow_list = ["spire:spire-agent"]
                    kube_config_file = "{kubeconfig}"
                    allowed_node_label_keys = ["topology.kubernetes.io/zone"]
                }}
            }}
        }}
    }}
}}
"#,
        socket = socket_path.display(),
        root = root.display(),
        kubeconfig = kubeconfig.display(),
    );
    write_file(&config_path, &config).unwrap();
    let mut server = ServerHandle {
        dir,
        config_path,
        socket_path,
        port,
        trust_domain: "example.org".into(),
        process: None,
    };
    server.start_process().unwrap();
    server
}

/// An agent attesting with the projected token at `token_path`.
pub fn start_agent(
    server: &ServerHandle,
    token_path: &Path,
    dir: tempfile::TempDir,
) -> AgentHandle {
    start_agent_with(server, token_path, dir, "")
}

/// [`start_agent`] with `agent_extra` lines inside `agent { ... }`.
pub fn start_agent_with(
    server: &ServerHandle,
    token_path: &Path,
    dir: tempfile::TempDir,
    agent_extra: &str,
) -> AgentHandle {
    let root = dir.path().to_owned();
    let bundle_path = root.join("bootstrap.pem");
    write_file(&bundle_path, &server.bundle_pem().unwrap()).unwrap();
    let socket_path = root.join("public/api.sock");
    let config_path = root.join("agent.conf");
    let config = format!(
        r#"agent {{
    data_dir = "{root}/data"
    log_level = "DEBUG"
    server_address = "127.0.0.1"
    server_port = "{port}"
    socket_path = "{socket}"
    trust_bundle_path = "{bundle}"
    trust_domain = "example.org"
{agent_extra}
}}

plugins {{
    KeyManager "disk" {{
        plugin_data {{
            directory = "{root}/data"
        }}
    }}
    NodeAttestor "k8s_psat" {{
        plugin_data {{
            cluster = "demo"
            token_path = "{token}"
        }}
    }}
    WorkloadAttestor "unix" {{
        plugin_data {{}}
    }}
}}
"#,
        root = root.display(),
        port = server.port,
        socket = socket_path.display(),
        bundle = bundle_path.display(),
        token = token_path.display(),
    );
    write_file(&config_path, &config).unwrap();
    let mut agent = AgentHandle {
        dir,
        config_path,
        socket_path,
        process: None,
    };
    agent.start_process().unwrap();
    agent
}

/// Registers a node alias for every agent of cluster `demo` and, under it,
/// `workload` for this process's uid.
pub fn register_cluster_workload(server: &ServerHandle, workload: &str) {
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
    server
        .create_entry(&[
            "-parentID",
            alias,
            "-spiffeID",
            workload,
            "-selector",
            &format!("unix:uid:{}", spinel_test_fixtures::process::my_uid()),
        ])
        .unwrap();
}

/// Waits (bounded) until the agent serves an X509-SVID for `spiffe_id`.
pub fn wait_for_svid(agent: &AgentHandle, spiffe_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = agent.cli(&["api", "fetch", "x509"]).unwrap();
        if out.success() && out.stdout.contains(spiffe_id) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no SVID for {spiffe_id}: {}\n{}\nagent log:\n{}",
            out.stdout,
            out.stderr,
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
