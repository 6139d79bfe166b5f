//! [`FakeKubelet`]: the kubelet's `GET /pods`, on a secure port (HTTPS,
//! bearer token or client certificate) and optionally a read-only port
//! (plain HTTP, no authentication, like kubelet's 10255).
//!
//! Authentication and authorization answer as the real kubelet does: its
//! filter writes plain-text bodies (`Unauthorized`, `Forbidden (user=...,
//! verb=get, resource=nodes, subresource=proxy)`), not `v1.Status`; an
//! unknown path is go-restful's `404 page not found`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use k8s_openapi::List;

use super::ca::TestCa;
use super::serve::{bearer, json, lock, text, Background, Handler, Listen, Peer};

/// The user name the fake kubelet reports for its `forbidden_token`.
pub const FORBIDDEN_TOKEN_USER: &str = "system:serviceaccount:spire:spire-agent";

/// How a [`FakeKubelet`] authenticates callers of its secure port.
#[derive(Debug, Clone, Default)]
pub struct KubeletOptions {
    /// Bearer token required on the secure port. `None`: anonymous
    /// requests are allowed (any other token is still rejected with 401,
    /// as a kubelet with webhook authentication does).
    pub token: Option<String>,
    /// A token that authenticates but is not authorized: 403 with the
    /// kubelet's `Forbidden (user=..., ...)` message, user
    /// [`FORBIDDEN_TOKEN_USER`].
    pub forbidden_token: Option<String>,
    /// Accept client certificates issued by the fake's CA
    /// ([`FakeKubelet::issue_client_cert`]) as an alternative to the token.
    pub client_ca: bool,
    /// Also serve plain HTTP without authentication on a second port.
    pub read_only_port: bool,
    /// Delay before answering each request (changeable with
    /// [`FakeKubelet::set_latency`]).
    pub latency: Duration,
}

#[derive(Debug)]
struct State {
    pods: Vec<Pod>,
    latency: Duration,
    failure: Option<StatusCode>,
}

#[derive(Debug)]
struct Kubelet {
    options: KubeletOptions,
    state: Mutex<State>,
    pods_requests: AtomicUsize,
}

/// A fake kubelet serving `GET /pods` as a `v1.PodList`. Stops when
/// dropped.
#[derive(Debug)]
pub struct FakeKubelet {
    kubelet: Arc<Kubelet>,
    ca: TestCa,
    secure_port: u16,
    read_only_port: Option<u16>,
    _server: Background,
}

impl FakeKubelet {
    /// Starts the kubelet on `127.0.0.1:0` (and a second port for the
    /// read-only endpoint when asked), with no pods.
    pub fn start(options: KubeletOptions) -> Result<FakeKubelet> {
        let ca = TestCa::new("fake-kubelet-ca").context("kubelet CA")?;
        let secure = Listen::bind(Some(ca.server_config(options.client_ca)?))?;
        let secure_port = secure.port()?;
        let mut listens = vec![secure];
        let mut read_only_port = None;
        if options.read_only_port {
            let plain = Listen::bind(None)?;
            read_only_port = Some(plain.port()?);
            listens.push(plain);
        }
        let kubelet = Arc::new(Kubelet {
            state: Mutex::new(State {
                pods: Vec::new(),
                latency: options.latency,
                failure: None,
            }),
            options,
            pods_requests: AtomicUsize::new(0),
        });
        let server = Background::start("fake-kubelet", kubelet.clone(), listens)?;
        tracing::debug!(secure_port, ?read_only_port, "fake kubelet listening");
        Ok(FakeKubelet {
            kubelet,
            ca,
            secure_port,
            read_only_port,
            _server: server,
        })
    }

    /// The HTTPS port.
    pub fn secure_port(&self) -> u16 {
        self.secure_port
    }

    /// `https://127.0.0.1:<secure port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.secure_port)
    }

    /// The plain-HTTP read-only port, when enabled.
    pub fn read_only_port(&self) -> Option<u16> {
        self.read_only_port
    }

    /// The CA that signed the serving certificate (and client
    /// certificates), PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.ca_pem()
    }

    /// Writes [`Self::ca_pem`] to `path`.
    pub fn write_ca(&self, path: &Path) -> Result<()> {
        self.ca.write_ca(path)
    }

    /// A client certificate the secure port accepts when `client_ca` is
    /// set: `(cert_pem, key_pem)`, subject `CN=system:node:spinel-agent`.
    pub fn issue_client_cert(&self) -> Result<(String, String)> {
        let cert = self
            .ca
            .issue_client_cert("system:node:spinel-agent", Some("system:nodes"))?;
        Ok((cert.cert_pem, cert.key_pem))
    }

    /// Replaces all pods.
    pub fn set_pods(&self, pods: Vec<Pod>) {
        lock(&self.kubelet.state).pods = pods;
    }

    /// Adds `pod`, or replaces the pod with the same UID.
    pub fn upsert_pod(&self, pod: Pod) {
        let mut state = lock(&self.kubelet.state);
        match state
            .pods
            .iter_mut()
            .find(|p| p.metadata.uid.is_some() && p.metadata.uid == pod.metadata.uid)
        {
            Some(existing) => *existing = pod,
            None => state.pods.push(pod),
        }
    }

    /// Removes the pod with UID `uid`; true if there was one.
    pub fn remove_pod(&self, uid: &str) -> bool {
        let mut state = lock(&self.kubelet.state);
        let before = state.pods.len();
        state
            .pods
            .retain(|p| p.metadata.uid.as_deref() != Some(uid));
        state.pods.len() != before
    }

    /// The pods currently served.
    pub fn pods(&self) -> Vec<Pod> {
        lock(&self.kubelet.state).pods.clone()
    }

    /// Sets the delay before each answer (`Duration::ZERO` for none).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.kubelet.state).latency = latency;
    }

    /// While `Some(code)`, every request that passes authentication
    /// answers `code` with a plain-text body (e.g. 500, 503), to test
    /// retries.
    pub fn set_failure(&self, code: Option<StatusCode>) {
        lock(&self.kubelet.state).failure = code;
    }

    /// How many `GET /pods` requests arrived so far, on either port,
    /// whatever their answer (counted on arrival, before the latency).
    pub fn pods_requests(&self) -> usize {
        self.kubelet.pods_requests.load(Ordering::SeqCst)
    }
}

impl Kubelet {
    /// `None` when the caller may proceed; otherwise the refusal.
    fn authorize(&self, req: &Request<Bytes>, peer: &Peer) -> Option<Response<String>> {
        if !peer.tls {
            return None; // the read-only port
        }
        let token = bearer(req);
        let forbidden = |user: &str| {
            let msg =
                format!("Forbidden (user={user}, verb=get, resource=nodes, subresource=proxy)");
            Some(text(StatusCode::FORBIDDEN, &msg))
        };
        // Like kubelet's union authenticator: a verified client certificate
        // first, then the bearer token.
        if let Some(cn) = &peer.client_cn {
            if self.options.client_ca {
                tracing::debug!(user = %cn, "fake kubelet: client certificate accepted");
                return None;
            }
        }
        match (token, &self.options.forbidden_token) {
            (Some(t), Some(f)) if t == f => return forbidden(FORBIDDEN_TOKEN_USER),
            _ => {}
        }
        match (token, &self.options.token) {
            (Some(t), Some(expected)) if t == expected => None,
            (None, None) => None,
            _ => Some(text(StatusCode::UNAUTHORIZED, "Unauthorized")),
        }
    }

    fn pod_list(&self) -> Response<String> {
        let list = List::<Pod> {
            items: lock(&self.state).pods.clone(),
            metadata: ListMeta::default(),
        };
        match serde_json::to_string(&list) {
            Ok(body) => json(StatusCode::OK, body),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }
}

impl Handler for Kubelet {
    async fn handle(&self, req: Request<Bytes>, peer: Peer) -> Response<String> {
        let is_pods = req.uri().path() == "/pods" || req.uri().path() == "/pods/";
        if is_pods && req.method() == Method::GET {
            self.pods_requests.fetch_add(1, Ordering::SeqCst);
        }
        let (latency, failure) = {
            let state = lock(&self.state);
            (state.latency, state.failure)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(refusal) = self.authorize(&req, &peer) {
            return refusal;
        }
        if let Some(code) = failure {
            let reason = code.canonical_reason().unwrap_or("injected failure");
            return text(code, reason);
        }
        match (is_pods, req.method()) {
            (true, &Method::GET) => self.pod_list(),
            (true, _) => text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
            (false, _) => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        }
    }
}
