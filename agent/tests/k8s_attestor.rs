//! The `k8s` workload attestor against a real HTTPS (and plain HTTP)
//! kubelet stand-in on 127.0.0.1: real TLS, real k8s JSON, bearer token and
//! client certificate checks, configured only through `plugin_data`.
//!
//! The kubelet here is a minimal HTTP/1.1 responder written for this test
//! (`spinel_test_fixtures::k8s::FakeKubelet` was not available yet).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spinel_agent::attestor::workload::k8s::{Environment, K8sAttestor};
use spinel_agent::attestor::workload::{AttestError, Caller, Root, WorkloadAttestor};
use spinel_config::hcl::ConfigFile;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const PID: i32 = 777;
const POD_UID: &str = "8a1f7c3e-52d4-4b9e-a6c1-3f0e9d2b7a65";
const CID: &str = "b8e4f2a6c0d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1";

fn pod_list() -> String {
    format!(
        r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{}},"items":[{{
      "metadata":{{"name":"api-0","namespace":"payments","uid":"{POD_UID}","labels":{{"app":"api"}},
        "ownerReferences":[{{"apiVersion":"apps/v1","kind":"StatefulSet","name":"api","uid":"ss-1","controller":true}}]}},
      "spec":{{"serviceAccountName":"api","nodeName":"node-1","containers":[{{"name":"api","image":"ghcr.io/acme/api:1"}}]}},
      "status":{{"phase":"Running","containerStatuses":[{{"name":"api","image":"ghcr.io/acme/api:1",
        "imageID":"ghcr.io/acme/api@sha256:aa","containerID":"containerd://{CID}","ready":true}}]}}}}]}}"#
    )
}

/// A CA and a leaf it signed for 127.0.0.1.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = params.self_signed(&key).unwrap().pem();
        Pki {
            ca_pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, DER, key PKCS#8 DER, key PEM)
    fn leaf(&self, name: &str) -> (String, Vec<u8>, Vec<u8>, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            cert.pem(),
            cert.der().to_vec(),
            key.serialize_der(),
            key.serialize_pem(),
        )
    }
}

/// What the stand-in kubelet checks.
#[derive(Clone)]
enum Expect {
    /// `Authorization: Bearer <token>`, else 401.
    Token(Arc<Mutex<String>>),
    /// Any request: answer this status.
    Status(u16),
    /// Anything (client certificate checked by TLS).
    Nothing,
}

/// Serves `GET /pods` on 127.0.0.1; TLS when `tls` is given.
async fn kubelet(tls: Option<Arc<rustls::ServerConfig>>, expect: Expect) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (tls, expect) = (tls.clone(), expect.clone());
            tokio::spawn(async move {
                match tls {
                    Some(config) => {
                        if let Ok(stream) =
                            tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                        {
                            serve(stream, expect).await;
                        }
                    }
                    None => serve(tcp, expect).await,
                }
            });
        }
    });
    port
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, expect: Expect) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("GET /pods HTTP/1.1\r\n"), "{head}");
    let auth = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("authorization: ")
                .or_else(|| l.strip_prefix("Authorization: "))
        })
        .map(str::to_owned);
    let (status, body) = match expect {
        Expect::Token(want) => {
            if auth == Some(format!("Bearer {}", want.lock().unwrap())) {
                (200, pod_list())
            } else {
                (401, "Unauthorized".to_owned())
            }
        }
        Expect::Status(200) | Expect::Nothing => (200, pod_list()),
        Expect::Status(code) => (
            code,
            "Forbidden (user=system:serviceaccount:spire:spire-agent, verb=get, resource=nodes, subresource(s)=[proxy])".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn server_config(pki: &Pki, client_ca: Option<&Pki>) -> Arc<rustls::ServerConfig> {
    let (_, der, key, _) = pki.leaf("127.0.0.1");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let ca_der =
                rustls::pki_types::pem::PemObject::from_pem_slice(ca.ca_pem.as_bytes()).unwrap();
            roots.add(ca_der).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(
        builder
            .with_single_cert(
                vec![CertificateDer::from(der)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .unwrap(),
    )
}

/// A temp dir holding a fake `/proc/<PID>` in a pod, and files.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pid_dir = dir.path().join("proc").join(PID.to_string());
        std::fs::create_dir_all(&pid_dir).unwrap();
        let stat = format!("{PID} (api) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5555 1000 10 0\n");
        std::fs::write(pid_dir.join("stat"), stat).unwrap();
        let cgroup = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope\n",
            POD_UID.replace('-', "_")
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
        let text = format!("plugins {{\n WorkloadAttestor \"k8s\" {{\n plugin_data {{\n{plugin_data}\n }}\n }}\n}}\n");
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
}

const CALLER: Caller = Caller {
    pid: PID,
    uid: 1000,
    gid: 1000,
};

fn assert_selectors(selectors: &[spinel_spiffe::Selector]) {
    let got: Vec<String> = selectors.iter().map(ToString::to_string).collect();
    for want in [
        "k8s:ns:payments",
        "k8s:sa:api",
        "k8s:pod-uid:8a1f7c3e-52d4-4b9e-a6c1-3f0e9d2b7a65",
        "k8s:pod-owner:StatefulSet:api",
        "k8s:container-name:api",
        "k8s:container-image:ghcr.io/acme/api@sha256:aa",
    ] {
        assert!(got.iter().any(|g| g == want), "{want} missing from {got:?}");
    }
}

fn secure_data(port: u16, ca: &Path, token: &Path) -> String {
    format!(
        "node_name = \"127.0.0.1\"\nkubelet_secure_port = {port}\nkubelet_ca_path = \"{}\"\ntoken_path = \"{}\"\nmax_poll_attempts = 2\npoll_retry_interval = \"10ms\"",
        ca.display(),
        token.display()
    )
}

#[tokio::test]
async fn bearer_token_over_https_and_token_rotation() {
    let pki = Pki::new();
    let node = Node::new();
    let token = Arc::new(Mutex::new("token-one".to_owned()));
    let port = kubelet(
        Some(server_config(&pki, None)),
        Expect::Token(token.clone()),
    )
    .await;
    let ca = node.file("ca.crt", &pki.ca_pem);
    let token_path = node.file("token", "token-one\n");
    let attestor = node.attestor(&secure_data(port, &ca, &token_path)).unwrap();
    assert_selectors(&attestor.attest(&CALLER).await.unwrap());

    // The projected token rotates: the kubelet now wants the new one and the
    // attestor reads it again.
    *token.lock().unwrap() = "token-two".to_owned();
    std::fs::write(&token_path, "token-two").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert_selectors(&attestor.attest(&CALLER).await.unwrap());
}

#[tokio::test]
async fn unauthorized_names_the_token_path() {
    let pki = Pki::new();
    let node = Node::new();
    let token = Arc::new(Mutex::new("right".to_owned()));
    let port = kubelet(Some(server_config(&pki, None)), Expect::Token(token)).await;
    let ca = node.file("ca.crt", &pki.ca_pem);
    let token_path = node.file("token", "wrong");
    let err = node
        .attestor(&secure_data(port, &ca, &token_path))
        .unwrap()
        .attest(&CALLER)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") && err.contains(&token_path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn forbidden_names_the_rbac_need() {
    let pki = Pki::new();
    let node = Node::new();
    let port = kubelet(Some(server_config(&pki, None)), Expect::Status(403)).await;
    let ca = node.file("ca.crt", &pki.ca_pem);
    let token_path = node.file("token", "t");
    let err = node
        .attestor(&secure_data(port, &ca, &token_path))
        .unwrap()
        .attest(&CALLER)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403") && err.contains("nodes/proxy"), "{err}");
}

#[tokio::test]
async fn ca_mismatch_names_the_ca_and_the_way_out() {
    let (pki, other) = (Pki::new(), Pki::new());
    let node = Node::new();
    let port = kubelet(Some(server_config(&pki, None)), Expect::Status(200)).await;
    let wrong_ca = node.file("other-ca.crt", &other.ca_pem);
    let token_path = node.file("token", "t");
    let err = node
        .attestor(&secure_data(port, &wrong_ca, &token_path))
        .unwrap()
        .attest(&CALLER)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&wrong_ca.display().to_string()), "{err}");
    assert!(
        err.contains("kubelet_ca_path") && err.contains("skip_kubelet_verification"),
        "{err}"
    );

    // skip_kubelet_verification accepts the unknown CA.
    let data = format!(
        "node_name = \"127.0.0.1\"\nkubelet_secure_port = {port}\nskip_kubelet_verification = true\ntoken_path = \"{}\"",
        token_path.display()
    );
    assert_selectors(&node.attestor(&data).unwrap().attest(&CALLER).await.unwrap());
}

#[tokio::test]
async fn client_certificate_authentication() {
    let (pki, clients) = (Pki::new(), Pki::new());
    let node = Node::new();
    let port = kubelet(Some(server_config(&pki, Some(&clients))), Expect::Nothing).await;
    let ca = node.file("ca.crt", &pki.ca_pem);
    let (cert_pem, _, _, key_pem) = clients.leaf("spinel-agent");
    let cert = node.file("client.crt", &cert_pem);
    let key = node.file("client.key", &key_pem);
    let data = format!(
        "node_name = \"127.0.0.1\"\nkubelet_secure_port = {port}\nkubelet_ca_path = \"{}\"\ncertificate_path = \"{}\"\nprivate_key_path = \"{}\"",
        ca.display(),
        cert.display(),
        key.display()
    );
    assert_selectors(&node.attestor(&data).unwrap().attest(&CALLER).await.unwrap());
}

#[tokio::test]
async fn read_only_port_over_plain_http() {
    let node = Node::new();
    let port = kubelet(None, Expect::Status(200)).await;
    let data = format!("node_name = \"127.0.0.1\"\nkubelet_read_only_port = {port}");
    assert_selectors(&node.attestor(&data).unwrap().attest(&CALLER).await.unwrap());
}

#[tokio::test]
async fn connection_refused_names_host_and_port() {
    let node = Node::new();
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
    let node = Node::new();
    let err = node
        .attestor("kubelet_ca_path = \"/nonexistent/ca.crt\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/ca.crt") && err.contains("kubelet_ca_path"),
        "{err}"
    );
}
