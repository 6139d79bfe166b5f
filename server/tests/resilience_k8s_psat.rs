//! Resilience of a reattestable (`k8s_psat`) agent, with real server and
//! agent processes and the shared fake kube-apiserver: evicted, it attests
//! again by itself without a restart and keeps serving its workloads;
//! restarted while the server is down, it serves from its stored state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use spinel_test_fixtures::k8s::{
    ApiServerOptions, FakeApiServer, NodeBuilder, PodBuilder, ServiceAccountToken,
};
use spinel_test_fixtures::process::{free_port, write_file};
use spinel_test_fixtures::{AgentHandle, ServerHandle};

fn my_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .expect("effective uid from /proc/self/status")
}

fn start_server(kubeconfig: &Path) -> ServerHandle {
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
    agent_ttl = "10m"
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

fn start_agent(server: &ServerHandle, token_path: &Path, dir: tempfile::TempDir) -> AgentHandle {
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

/// Waits (bounded) until the agent serves an X509-SVID for `spiffe_id`.
fn wait_for_svid(agent: &AgentHandle, spiffe_id: &str) {
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
    let server = start_server(&kubeconfig);
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
            "spiffe://example.org/workload",
            "-selector",
            &format!("unix:uid:{}", my_uid()),
        ])
        .unwrap();
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
