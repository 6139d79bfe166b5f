//! [`FakeApiServer`]: the slice of kube-apiserver that `k8s_psat` uses, over
//! HTTPS with a bearer token: TokenReview, get pod, get node (and the
//! issuer's JWKS), and what the `k8sbundle` notifier uses: get and patch
//! ConfigMap ([`super::configmap`]), answering errors with `v1.Status`
//! bodies.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use serde::Serialize;

use super::ca::TestCa;
use super::configmap;
use super::kubeconfig::{self, CaSource};
use super::objects::{random_hex, unix_now};
use super::serve::{bearer, json, lock, Background, Handler, Listen, Peer};
use super::status;
use super::token::{self, Issued, ServiceAccountToken, TokenIssuer};

/// The TokenReview endpoint's path.
pub const TOKEN_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// How a [`FakeApiServer`] is set up.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// The bearer token the server requires from its client (the Spinel
    /// server's own credential); random by default, see
    /// [`FakeApiServer::token`].
    pub token: String,
    /// The service account issuer (`iss` claim).
    pub issuer: String,
    /// The API server's own audiences, used by a TokenReview whose
    /// `spec.audiences` is empty.
    pub api_audiences: Vec<String>,
    /// Reject, as a real API server does, a token whose bound pod is not
    /// among the fake's pods ([`FakeApiServer::add_pod`]) with the same
    /// UID ("service account token has been invalidated"). Off by default,
    /// so a TokenReview test need not add the pod.
    pub validate_bound_pods: bool,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        let issuer = "https://kubernetes.default.svc.cluster.local".to_owned();
        ApiServerOptions {
            token: format!("fake-apiserver-{}", random_hex(16)),
            api_audiences: vec![issuer.clone()],
            issuer,
            validate_bound_pods: false,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    pods: BTreeMap<(String, String), Pod>,
    nodes: BTreeMap<String, Node>,
    config_maps: BTreeMap<(String, String), ConfigMap>,
    tokens: HashMap<String, Issued>,
    requests: Vec<String>,
    failure: Option<StatusCode>,
}

#[derive(Debug)]
struct ApiServer {
    options: ApiServerOptions,
    issuer: TokenIssuer,
    state: Mutex<State>,
}

/// A fake kube-apiserver. Stops when dropped.
#[derive(Debug)]
pub struct FakeApiServer {
    api: Arc<ApiServer>,
    ca: TestCa,
    port: u16,
    _server: Background,
}

impl FakeApiServer {
    /// Starts the server on `127.0.0.1:0`, with no objects and no tokens.
    pub fn start(options: ApiServerOptions) -> Result<FakeApiServer> {
        let ca = TestCa::new("fake-kube-apiserver-ca").context("API server CA")?;
        let listen = Listen::bind(Some(ca.server_config(false)?))?;
        let port = listen.port()?;
        let api = Arc::new(ApiServer {
            issuer: TokenIssuer::new(&options.issuer)?,
            options,
            state: Mutex::new(State::default()),
        });
        let server = Background::start("fake-kube-apiserver", api.clone(), vec![listen])?;
        tracing::debug!(port, "fake kube-apiserver listening");
        Ok(FakeApiServer {
            api,
            ca,
            port,
            _server: server,
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bearer token clients must present.
    pub fn token(&self) -> &str {
        &self.api.options.token
    }

    /// The CA of the serving certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.ca_pem()
    }

    /// Writes [`Self::ca_pem`] to `path`.
    pub fn write_ca(&self, path: &Path) -> Result<()> {
        self.ca.write_ca(path)
    }

    /// Writes a kubeconfig for this server to `path`, CA inline
    /// (`certificate-authority-data`), user with `token`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<()> {
        let ca = self.ca_pem();
        let yaml = kubeconfig::render(&self.url(), CaSource::Inline(&ca), self.token());
        write(path, &yaml)
    }

    /// Writes a kubeconfig to `path` whose cluster names the CA file
    /// `ca_path` (`certificate-authority`), and writes the CA there.
    pub fn write_kubeconfig_with_ca_file(&self, path: &Path, ca_path: &Path) -> Result<()> {
        self.write_ca(ca_path)?;
        let ca = ca_path.to_string_lossy();
        let yaml = kubeconfig::render(&self.url(), CaSource::File(&ca), self.token());
        write(path, &yaml)
    }

    /// Issues and registers a projected service account token; returns the
    /// JWT.
    pub fn add_service_account_token(&self, spec: ServiceAccountToken) -> Result<String> {
        let (jwt, issued) = self.api.issuer.issue(&spec, unix_now())?;
        lock(&self.api.state).tokens.insert(jwt.clone(), issued);
        Ok(jwt)
    }

    /// Makes a registered token fail review from now on ("has been
    /// invalidated"), as when its pod is deleted; true if it was known.
    pub fn revoke_service_account_token(&self, jwt: &str) -> bool {
        match lock(&self.api.state).tokens.get_mut(jwt) {
            Some(issued) => {
                issued.revoked = true;
                true
            }
            None => false,
        }
    }

    /// The issuer's public keys (JWKS JSON), also served at
    /// `/openid/v1/jwks`.
    pub fn issuer_jwks(&self) -> serde_json::Value {
        self.api.issuer.jwks()
    }

    /// Adds or replaces a pod (keyed by namespace and name).
    pub fn add_pod(&self, pod: Pod) {
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        lock(&self.api.state).pods.insert(key, pod);
    }

    /// Removes pod `namespace/name`; true if there was one.
    pub fn remove_pod(&self, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        lock(&self.api.state).pods.remove(&key).is_some()
    }

    /// Adds or replaces a node (keyed by name).
    pub fn add_node(&self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        lock(&self.api.state).nodes.insert(name, node);
    }

    /// Removes node `name`; true if there was one.
    pub fn remove_node(&self, name: &str) -> bool {
        lock(&self.api.state).nodes.remove(name).is_some()
    }

    /// Adds or replaces ConfigMap `namespace/name` holding `data` (the
    /// notifier patches it; a patch never creates one).
    pub fn add_config_map(&self, namespace: &str, name: &str, data: BTreeMap<String, String>) {
        let mut cm = ConfigMap {
            data: Some(data),
            ..ConfigMap::default()
        };
        cm.metadata.name = Some(name.to_owned());
        cm.metadata.namespace = Some(namespace.to_owned());
        cm.metadata.uid = Some(random_hex(16));
        cm.metadata.resource_version = Some("1".to_owned());
        let key = (namespace.to_owned(), name.to_owned());
        lock(&self.api.state).config_maps.insert(key, cm);
    }

    /// ConfigMap `namespace/name` as stored now.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        let key = (namespace.to_owned(), name.to_owned());
        lock(&self.api.state).config_maps.get(&key).cloned()
    }

    /// `data.<key>` of ConfigMap `namespace/name`, if both exist.
    pub fn config_map_value(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        self.config_map(namespace, name)
            .and_then(|cm| cm.data)
            .and_then(|mut data| data.remove(key))
    }

    /// While `Some(code)`, every authenticated request answers `code` with
    /// a `v1.Status` body (e.g. 403, 500, 503), to test error paths.
    pub fn set_failure(&self, code: Option<StatusCode>) {
        lock(&self.api.state).failure = code;
    }

    /// Every request so far, as `"<METHOD> <path>"`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.api.state).requests.clone()
    }
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

fn object<T: Serialize>(code: StatusCode, value: &T) -> Response<String> {
    match serde_json::to_string(value) {
        Ok(body) => json(code, body),
        Err(e) => status::failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &e.to_string(),
            None,
        ),
    }
}

impl ApiServer {
    fn token_review(&self, body: &[u8]) -> Response<String> {
        let request: TokenReview = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("the body of the request was in an unknown format: {e}");
                return status::failure(StatusCode::BAD_REQUEST, "BadRequest", &msg, None);
            }
        };
        let token = request.spec.token.clone().unwrap_or_default();
        if token.is_empty() {
            let msg = "token is required for TokenReview in authentication";
            return status::failure(StatusCode::BAD_REQUEST, "BadRequest", msg, None);
        }
        let target = match request.spec.audiences.as_deref() {
            Some(list) if !list.is_empty() => list.to_vec(),
            _ => self.options.api_audiences.clone(),
        };
        let state = lock(&self.state);
        let issued = state.tokens.get(&token).map(|issued| {
            let mut issued = issued.clone();
            if self.options.validate_bound_pods {
                let spec = &issued.spec;
                let key = (spec.namespace.clone(), spec.pod_name.clone());
                let bound = state.pods.get(&key).and_then(|p| p.metadata.uid.as_deref());
                issued.revoked |= bound != Some(spec.pod_uid.as_str());
            }
            issued
        });
        drop(state);
        let review = token::review(issued.as_ref(), &token, &target, unix_now());
        tracing::debug!(
            authenticated = review.authenticated.unwrap_or(false),
            "fake kube-apiserver reviewed a token"
        );
        object(StatusCode::CREATED, &token::respond(request, review))
    }

    fn get(&self, path: &str) -> Response<String> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let state = lock(&self.state);
        match segments.as_slice() {
            ["api", "v1", "namespaces", ns, "pods", name] => {
                match state.pods.get(&((*ns).to_owned(), (*name).to_owned())) {
                    Some(pod) => object(StatusCode::OK, pod),
                    None => status::not_found("pods", name),
                }
            }
            ["api", "v1", "nodes", name] => match state.nodes.get(*name) {
                Some(node) => object(StatusCode::OK, node),
                None => status::not_found("nodes", name),
            },
            ["api", "v1", "namespaces", ns, "configmaps", name] => {
                match state
                    .config_maps
                    .get(&((*ns).to_owned(), (*name).to_owned()))
                {
                    Some(cm) => object(StatusCode::OK, cm),
                    None => status::not_found("configmaps", name),
                }
            }
            ["openid", "v1", "jwks"] => object(StatusCode::OK, &self.issuer.jwks()),
            _ => status::no_such_path(),
        }
    }
}

impl ApiServer {
    fn patch(&self, path: &str, content_type: &str, body: &[u8]) -> Response<String> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let ["api", "v1", "namespaces", ns, "configmaps", name] = segments.as_slice() else {
            return status::no_such_path();
        };
        let key = ((*ns).to_owned(), (*name).to_owned());
        let mut state = lock(&self.state);
        let Some(current) = state.config_maps.get(&key) else {
            return status::not_found("configmaps", name);
        };
        match configmap::patch(current, name, content_type, body) {
            Ok(updated) => {
                let response = object(StatusCode::OK, &updated);
                state.config_maps.insert(key, updated);
                response
            }
            Err(response) => *response,
        }
    }
}

impl Handler for ApiServer {
    async fn handle(&self, req: Request<Bytes>, _peer: Peer) -> Response<String> {
        let path = req.uri().path().to_owned();
        let failure = {
            let mut state = lock(&self.state);
            state.requests.push(format!("{} {}", req.method(), path));
            state.failure
        };
        if bearer(&req) != Some(self.options.token.as_str()) {
            return status::unauthorized();
        }
        if let Some(code) = failure {
            return status::injected(code);
        }
        match (req.method(), path.as_str()) {
            (&Method::POST, TOKEN_REVIEW_PATH) => self.token_review(req.body()),
            (&Method::GET, _) => self.get(&path),
            (&Method::PATCH, _) => {
                let content_type = req
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                self.patch(&path, content_type, req.body())
            }
            _ => status::failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            ),
        }
    }
}
