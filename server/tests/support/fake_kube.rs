//! A small fake Kubernetes API server for the k8s_psat tests: real HTTPS
//! (its own CA), real Kubernetes JSON for `TokenReview`, pods and nodes,
//! bearer-token authentication of the caller, and a kubeconfig writer.
//!
//! Tokens are minted as opaque random strings bound to a service account,
//! a pod and audiences; the review answers as the API server does
//! (`status.audiences` is the intersection, none means unauthenticated).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

struct Minted {
    username: String,
    pod_name: String,
    pod_uid: String,
    audiences: Vec<String>,
}

#[derive(Default)]
struct State {
    admin_token: String,
    tokens: BTreeMap<String, Minted>,
    pods: BTreeMap<(String, String), Value>,
    nodes: BTreeMap<String, Value>,
}

/// A running fake API server.
pub struct FakeKube {
    pub addr: SocketAddr,
    pub ca_pem: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKube {
    /// Starts on 127.0.0.1, accepting `admin_token` as the caller's bearer.
    pub async fn start(admin_token: &str) -> FakeKube {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fake-kube-ca");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        leaf_params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            admin_token: admin_token.to_owned(),
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = shared.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeKube {
            addr,
            ca_pem: ca_cert.pem(),
            state,
            task,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// Adds a node.
    pub fn add_node(&self, name: &str, uid: &str, labels: &[(&str, &str)]) {
        let labels: BTreeMap<_, _> = labels.iter().copied().collect();
        self.state.lock().unwrap().nodes.insert(
            name.to_owned(),
            json!({
                "kind": "Node",
                "apiVersion": "v1",
                "metadata": {"name": name, "uid": uid, "labels": labels, "resourceVersion": "1"},
                "spec": {"podCIDR": "10.244.0.0/24"},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.7"}]}
            }),
        );
    }

    /// Adds a running pod on `node`.
    pub fn add_pod(&self, ns: &str, name: &str, uid: &str, node: &str, labels: &[(&str, &str)]) {
        let labels: BTreeMap<_, _> = labels.iter().copied().collect();
        self.state.lock().unwrap().pods.insert(
            (ns.to_owned(), name.to_owned()),
            json!({
                "kind": "Pod",
                "apiVersion": "v1",
                "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": labels},
                "spec": {"nodeName": node, "serviceAccountName": "spire-agent", "containers": [{"name": "agent", "image": "spinel-agent"}]},
                "status": {"phase": "Running", "hostIP": "10.0.0.7", "podIP": "10.244.0.5"}
            }),
        );
    }

    /// Removes a pod.
    pub fn remove_pod(&self, ns: &str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .pods
            .remove(&(ns.to_owned(), name.to_owned()));
    }

    /// Mints a token for service account `ns:sa` bound to a pod.
    pub fn mint(&self, ns: &str, sa: &str, pod: &str, pod_uid: &str, audiences: &[&str]) -> String {
        let token = format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>()),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        );
        self.state.lock().unwrap().tokens.insert(
            token.clone(),
            Minted {
                username: format!("system:serviceaccount:{ns}:{sa}"),
                pod_name: pod.to_owned(),
                pod_uid: pod_uid.to_owned(),
                audiences: audiences.iter().map(|a| a.to_string()).collect(),
            },
        );
        token
    }

    /// Writes a kubeconfig for this server, authenticating with `token`.
    pub fn write_kubeconfig(&self, path: &Path, token: &str) {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: spinel\nusers:\n- name: spinel\n  user:\n    token: {token}\n",
            self.url()
        );
        std::fs::write(path, text).unwrap();
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let state = state.lock().unwrap();
    if bearer.as_deref() != Some(state.admin_token.as_str()) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["apis", "authentication.k8s.io", "v1", "tokenreviews"]) => {
            let review: Value = serde_json::from_slice(&body).unwrap();
            let token = review["spec"]["token"].as_str().unwrap_or_default();
            let asked: Vec<String> = review["spec"]["audiences"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let status = match state.tokens.get(token) {
                None => {
                    json!({"authenticated": false, "error": "[invalid bearer token, square/go-jose: error in cryptographic primitive]"})
                }
                Some(m) => {
                    let common: Vec<&String> =
                        asked.iter().filter(|a| m.audiences.contains(a)).collect();
                    if common.is_empty() {
                        json!({"authenticated": false, "error": "[invalid bearer token, token audiences [\"other\"] is invalid for the target audiences]"})
                    } else {
                        json!({
                            "authenticated": true,
                            "user": {
                                "username": m.username,
                                "uid": "3e1c0a94-sa",
                                "groups": ["system:serviceaccounts", "system:authenticated"],
                                "extra": {
                                    "authentication.kubernetes.io/pod-name": [m.pod_name],
                                    "authentication.kubernetes.io/pod-uid": [m.pod_uid],
                                    "authentication.kubernetes.io/credential-id": ["JTI=abc"]
                                }
                            },
                            "audiences": common
                        })
                    }
                }
            };
            reply(
                StatusCode::CREATED,
                json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": null}, "spec": review["spec"], "status": status}),
            )
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
            match state.pods.get(&(ns.to_string(), name.to_string())) {
                Some(pod) => reply(StatusCode::OK, pod.clone()),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("pods \"{name}\" not found"),
                ),
            }
        }
        ("GET", ["api", "v1", "nodes", name]) => match state.nodes.get(*name) {
            Some(node) => reply(StatusCode::OK, node.clone()),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("nodes \"{name}\" not found"),
            ),
        },
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}
