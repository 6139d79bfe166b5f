//! `k8s_psat` against a fake Kubernetes API server over real HTTPS: the
//! client (kubeconfig, TokenReview, pods, nodes, 401, 404, a wrong CA), and
//! a real in-process server attesting agents over its gRPC API, refusing
//! `RenewAgent` for them, and authorizing entries through a node alias.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use crate::support::fake_kube::FakeKube;
use crate::support::{client_config, csr, id, id_string, tls_channel};
use hyper_util::rt::TokioIo;
use spinel_config::hcl::ConfigFile;
use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, attest_agent_request, attest_agent_response, AgentX509svidParams,
    AttestAgentRequest, GetAgentRequest, RenewAgentRequest,
};
use spinel_proto::spire::api::server::entry::v1::{
    entry_client::EntryClient, BatchCreateEntryRequest, GetAuthorizedEntriesRequest,
};
use spinel_proto::spire::api::types;
use spinel_server::config::{self, Overrides};
use spinel_server::kube::{ClusterConnection, KubeApi, KubeClient, KubeError};
use spinel_server::run::{self, RunningServer};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

const ADMIN: &str = "spinel-server-sa-token";
const AUD: &str = "spire-server";

async fn fake_cluster() -> FakeKube {
    let kube = FakeKube::start(ADMIN).await;
    kube.add_node(
        "node-a",
        "6a1c7e3e-node-a",
        &[("topology.kubernetes.io/zone", "z1"), ("other", "x")],
    );
    kube.add_pod(
        "spire",
        "spire-agent-7x2k9",
        "0b6f5a26-pod",
        "node-a",
        &[("app", "spire-agent"), ("pod-template-hash", "abc")],
    );
    kube
}

fn client(kube: &FakeKube, dir: &Path, token: &str) -> KubeClient {
    let path = dir.join("kubeconfig");
    kube.write_kubeconfig(&path, token);
    KubeClient::new(ClusterConnection::from_kubeconfig(&path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_speaks_to_the_api_server() {
    let kube = fake_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client(&kube, dir.path(), ADMIN);
    let token = kube.mint(
        "spire",
        "spire-agent",
        "spire-agent-7x2k9",
        "0b6f5a26-pod",
        &[AUD],
    );
    let review = c.token_review(&token, &[AUD.to_owned()]).await.unwrap();
    assert!(review.authenticated, "{review:?}");
    assert_eq!(
        review.user.username,
        "system:serviceaccount:spire:spire-agent"
    );
    assert_eq!(review.audiences, [AUD]);
    assert_eq!(
        review.user.extra["authentication.kubernetes.io/pod-uid"],
        ["0b6f5a26-pod"]
    );
    let wrong_aud = c.token_review(&token, &["vault".to_owned()]).await.unwrap();
    assert!(!wrong_aud.authenticated);
    assert!(wrong_aud.error.contains("audiences"), "{}", wrong_aud.error);

    let pod = c.get_pod("spire", "spire-agent-7x2k9").await.unwrap();
    assert_eq!(pod.metadata.uid, "0b6f5a26-pod");
    assert_eq!(pod.spec.node_name, "node-a");
    assert_eq!(pod.status.host_ip, "10.0.0.7");
    assert_eq!(pod.metadata.labels["app"], "spire-agent");
    let node = c.get_node("node-a").await.unwrap();
    assert_eq!(node.metadata.uid, "6a1c7e3e-node-a");

    let missing = c.get_pod("spire", "gone").await.unwrap_err();
    assert_eq!(
        missing,
        KubeError::NotFound {
            kind: "pod",
            name: "spire/gone".into()
        }
    );
    assert!(matches!(
        c.get_node("nope").await.unwrap_err(),
        KubeError::NotFound { kind: "node", .. }
    ));

    // Wrong credentials: 401, in operator terms.
    let bad = client(&kube, dir.path(), "not-the-token");
    let e = bad
        .token_review(&token, &[AUD.to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            KubeError::Unauthorized {
                action: "create tokenreviews",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.to_string().contains(&token));

    // A CA that did not sign the server's certificate: a TLS error naming the CA.
    let other = FakeKube::start(ADMIN).await;
    let path = dir.path().join("wrong-ca");
    kube.write_kubeconfig(&path, ADMIN);
    let text = std::fs::read_to_string(&path).unwrap();
    use base64::Engine;
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    std::fs::write(&path, text.replace(&b64(&kube.ca_pem), &b64(&other.ca_pem))).unwrap();
    let wrong = KubeClient::new(ClusterConnection::from_kubeconfig(&path).unwrap()).unwrap();
    let e = wrong.get_node("node-a").await.unwrap_err();
    assert!(matches!(e, KubeError::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("certificate-authority"), "{e}");
}

#[test]
fn bad_kubeconfigs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, needle) in [
        ("not-yaml", "{{{", "not a kubeconfig"),
        ("no-context", "apiVersion: v1\nkind: Config\nclusters: []\n", "current-context"),
        (
            "no-ca",
            "current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    token: t\n",
            "certificate-authority",
        ),
        (
            "exec",
            "current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    exec:\n      command: aws\n",
            "exec",
        ),
        (
            "ca-file",
            "current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: missing-ca.crt\ncontexts:\n- name: c\n  context:\n    cluster: k\n",
            "missing-ca.crt",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let e = ClusterConnection::from_kubeconfig(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{name}: {e}");
        assert!(e.contains(needle), "{name}: {e}");
    }
    let e = ClusterConnection::from_kubeconfig(&dir.path().join("absent"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent") && e.contains("cannot read"), "{e}");
}

/// A real server whose config enables k8s_psat for cluster `demo`.
async fn start_server(dir: &Path, kubeconfig: &Path) -> RunningServer {
    try_start_server(dir, kubeconfig).await.unwrap()
}

async fn try_start_server(dir: &Path, kubeconfig: &Path) -> Result<RunningServer, run::RunError> {
    let text = format!(
        r#"server {{
    bind_address = "127.0.0.1"
    bind_port = 0
    socket_path = "{dir}/private/api.sock"
    trust_domain = "example.org"
    data_dir = "{dir}/data"
}}
plugins {{
    DataStore "sled" {{
        plugin_data {{}}
    }}
    KeyManager "memory" {{
        plugin_data {{}}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
    NodeAttestor "k8s_psat" {{
        plugin_data {{
            clusters = {{
                "demo" = {{
                    service_account_allow_list = ["spire:spire-agent"]
                    kube_config_file = "{kubeconfig}"
                    allowed_node_label_keys = ["topology.kubernetes.io/zone"]
                    allowed_pod_label_keys = ["app"]
                }}
            }}
        }}
    }}
}}
"#,
        dir = dir.display(),
        kubeconfig = kubeconfig.display()
    );
    let file = ConfigFile::parse(Path::new("server.conf"), &text).unwrap();
    let config = config::from_file(&file, &Overrides::default()).unwrap();
    run::start(config).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_kubeconfig_stops_the_server_at_start() {
    let dir = tempfile::Builder::new()
        .prefix("spinel-psat")
        .tempdir_in("/tmp")
        .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "current-context: x\n").unwrap();
    let e = try_start_server(dir.path(), &kubeconfig)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("k8s_psat") && e.contains("\"demo\""), "{e}");
    assert!(e.contains(&kubeconfig.display().to_string()), "{e}");
    assert!(e.contains("not among its contexts"), "{e}");
}

async fn admin_channel(server: &RunningServer) -> Channel {
    let path = server.socket_path().to_owned();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap()
}

struct PsatAgent {
    id: String,
    chain: Vec<Vec<u8>>,
    key_der: Vec<u8>,
    reattestable: bool,
}

async fn attest(
    server: &RunningServer,
    kind: &str,
    payload: Vec<u8>,
) -> Result<PsatAgent, tonic::Status> {
    let (key, csr) = csr(&[]);
    let request = AttestAgentRequest {
        step: Some(attest_agent_request::Step::Params(
            attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: kind.into(),
                    payload,
                }),
                params: Some(AgentX509svidParams { csr }),
            },
        )),
    };
    let roots = server.bundle().x509_authorities;
    let channel = tls_channel(server.local_addr(), client_config(&roots, None)).await;
    let mut stream = AgentClient::new(channel)
        .attest_agent(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let message = stream.message().await?.unwrap();
    let Some(attest_agent_response::Step::Result(result)) = message.step else {
        panic!("expected a result");
    };
    let svid = result.svid.unwrap();
    Ok(PsatAgent {
        id: id_string(svid.id.as_ref().unwrap()),
        chain: svid.cert_chain,
        key_der: key.serialize_der(),
        reattestable: result.reattestable,
    })
}

fn psat_payload(cluster: &str, token: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"cluster": cluster, "token": token})).unwrap()
}

async fn agent_channel(server: &RunningServer, agent: &PsatAgent) -> Channel {
    let roots = server.bundle().x509_authorities;
    tls_channel(
        server.local_addr(),
        client_config(&roots, Some((&agent.chain, &agent.key_der))),
    )
    .await
}

async fn create_entry(
    server: &RunningServer,
    parent: &str,
    spiffe_id: &str,
    selector: &str,
) -> String {
    let (kind, value) = selector.split_once(':').unwrap();
    let response = EntryClient::new(admin_channel(server).await)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![types::Entry {
                parent_id: Some(id(parent)),
                spiffe_id: Some(id(spiffe_id)),
                selectors: vec![types::Selector {
                    r#type: kind.into(),
                    value: value.into(),
                }],
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let result = &response.results[0];
    assert_eq!(result.status.as_ref().unwrap().code, 0);
    result.entry.as_ref().unwrap().id.clone()
}

async fn authorized(server: &RunningServer, agent: &PsatAgent) -> Vec<String> {
    let mut ids: Vec<String> = EntryClient::new(agent_channel(server, agent).await)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn server_attests_psat_agents_and_node_aliases_apply() {
    let kube = fake_cluster().await;
    kube.add_node("node-b", "9d0e-node-b", &[]);
    kube.add_pod("spire", "spire-agent-b", "pod-b", "node-b", &[]);
    let dir = tempfile::Builder::new()
        .prefix("spinel-psat")
        .tempdir_in("/tmp")
        .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, ADMIN);
    let server = start_server(dir.path(), &kubeconfig).await;

    let token = kube.mint(
        "spire",
        "spire-agent",
        "spire-agent-7x2k9",
        "0b6f5a26-pod",
        &[AUD],
    );
    let agent = attest(&server, "k8s_psat", psat_payload("demo", &token))
        .await
        .unwrap();
    assert_eq!(
        agent.id,
        "spiffe://example.org/spire/agent/k8s_psat/demo/6a1c7e3e-node-a"
    );
    assert!(agent.reattestable);

    // The stored agent carries the node selectors.
    let stored = AgentClient::new(admin_channel(&server).await)
        .get_agent(GetAgentRequest {
            id: Some(id(&agent.id)),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut selectors: Vec<String> = stored
        .selectors
        .iter()
        .map(|s| format!("{}:{}", s.r#type, s.value))
        .collect();
    selectors.sort();
    assert_eq!(
        selectors,
        [
            "k8s_psat:agent_node_ip:10.0.0.7",
            "k8s_psat:agent_node_label:topology.kubernetes.io/zone:z1",
            "k8s_psat:agent_node_name:node-a",
            "k8s_psat:agent_node_uid:6a1c7e3e-node-a",
            "k8s_psat:agent_ns:spire",
            "k8s_psat:agent_pod_label:app:spire-agent",
            "k8s_psat:agent_pod_name:spire-agent-7x2k9",
            "k8s_psat:agent_pod_uid:0b6f5a26-pod",
            "k8s_psat:agent_sa:spire-agent",
            "k8s_psat:cluster:demo",
        ]
    );

    // A reattestable agent may not renew.
    let e = AgentClient::new(agent_channel(&server, &agent).await)
        .renew_agent(RenewAgentRequest {
            params: Some(AgentX509svidParams { csr: csr(&[]).1 }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("reattest"), "{}", e.message());

    // A node alias for the cluster makes every psat agent of it a parent.
    let alias = "spiffe://example.org/k8s/demo/nodes";
    create_entry(
        &server,
        "spiffe://example.org/spire/server",
        alias,
        "k8s_psat:cluster:demo",
    )
    .await;
    let workload = create_entry(
        &server,
        alias,
        "spiffe://example.org/ns/default/sa/web",
        "k8s:ns:default",
    )
    .await;
    let zone_alias = create_entry(
        &server,
        "spiffe://example.org/spire/server",
        "spiffe://example.org/k8s/zone-z2",
        "k8s_psat:agent_node_label:topology.kubernetes.io/zone:z2",
    )
    .await;
    // Entries parented by the alias ID are the agent's (the alias entry
    // itself is not delivered: it names no workload).
    let want = vec![workload.clone()];
    assert_eq!(authorized(&server, &agent).await, want);

    let token_b = kube.mint("spire", "spire-agent", "spire-agent-b", "pod-b", &[AUD]);
    let agent_b = attest(&server, "k8s_psat", psat_payload("demo", &token_b))
        .await
        .unwrap();
    assert_eq!(
        agent_b.id,
        "spiffe://example.org/spire/agent/k8s_psat/demo/9d0e-node-b"
    );
    assert_eq!(authorized(&server, &agent_b).await, want);
    assert!(!authorized(&server, &agent_b).await.contains(&zone_alias));

    // A join_token agent is no member of the alias.
    let jt = AgentClient::new(admin_channel(&server).await)
        .create_join_token(
            spinel_proto::spire::api::server::agent::v1::CreateJoinTokenRequest {
                ttl: 600,
                token: String::new(),
                agent_id: None,
            },
        )
        .await
        .unwrap()
        .into_inner()
        .value;
    let jt_agent = attest(&server, "join_token", jt.into_bytes())
        .await
        .unwrap();
    assert!(!jt_agent.reattestable);
    assert!(authorized(&server, &jt_agent).await.is_empty());

    // Re-attestation with a fresh token: same ID, new SVID; the old one is superseded.
    let fresh = kube.mint(
        "spire",
        "spire-agent",
        "spire-agent-7x2k9",
        "0b6f5a26-pod",
        &[AUD],
    );
    let again = attest(&server, "k8s_psat", psat_payload("demo", &fresh))
        .await
        .unwrap();
    assert_eq!(again.id, agent.id);
    assert_ne!(again.chain[0], agent.chain[0]);
    assert_eq!(authorized(&server, &again).await, want);

    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn server_refuses_bad_psat_evidence() {
    let kube = fake_cluster().await;
    let dir = tempfile::Builder::new()
        .prefix("spinel-psat")
        .tempdir_in("/tmp")
        .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, ADMIN);
    let server = start_server(dir.path(), &kubeconfig).await;

    let good = kube.mint(
        "spire",
        "spire-agent",
        "spire-agent-7x2k9",
        "0b6f5a26-pod",
        &[AUD],
    );
    let wrong_sa = kube.mint(
        "default",
        "default",
        "spire-agent-7x2k9",
        "0b6f5a26-pod",
        &[AUD],
    );
    let wrong_aud = kube.mint(
        "spire",
        "spire-agent",
        "spire-agent-7x2k9",
        "0b6f5a26-pod",
        &["vault"],
    );
    let stale_pod = kube.mint(
        "spire",
        "spire-agent",
        "spire-agent-7x2k9",
        "old-pod-uid",
        &[AUD],
    );
    for (payload, code, needle) in [
        (
            psat_payload("other", &good),
            tonic::Code::PermissionDenied,
            "\"other\"",
        ),
        (
            psat_payload("demo", "forged.token.x"),
            tonic::Code::PermissionDenied,
            "token not authenticated",
        ),
        (
            psat_payload("demo", &wrong_sa),
            tonic::Code::PermissionDenied,
            "default:default",
        ),
        (
            psat_payload("demo", &wrong_aud),
            tonic::Code::PermissionDenied,
            "not authenticated",
        ),
        (
            psat_payload("demo", &stale_pod),
            tonic::Code::PermissionDenied,
            "bound to",
        ),
        (
            b"{}".to_vec(),
            tonic::Code::InvalidArgument,
            "missing cluster",
        ),
    ] {
        let e = attest(&server, "k8s_psat", payload).await.err().unwrap();
        assert_eq!(e.code(), code, "{}", e.message());
        assert!(e.message().contains(needle), "{needle}: {}", e.message());
        assert!(!e.message().contains(&good) && !e.message().contains(&wrong_sa));
    }
    kube.remove_pod("spire", "spire-agent-7x2k9");
    let e = attest(&server, "k8s_psat", psat_payload("demo", &good))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(e.message().contains("not found"), "{}", e.message());
    server.shutdown().await.unwrap();
}
