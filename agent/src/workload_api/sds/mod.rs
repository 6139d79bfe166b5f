//! Envoy's Secret Discovery Service (SDS v3) on the Workload API socket,
//! as SPIRE's agent serves it.
//!
//! `envoy.service.secret.v3.SecretDiscoveryService`: `StreamSecrets` (the
//! state-of-the-world xDS stream) and `FetchSecrets`; `DeltaSecrets` is
//! answered `Unimplemented`, as by SPIRE. No `workload.spiffe.io` header is
//! needed (Envoy sends none; SPIRE asks it only of Workload API methods).
//! The caller is who connected: its pid, bound at accept, attested as for
//! every Workload API call (`state.rs`), again on every cache change.
//! Unlike the Workload API, a caller without identities is not refused: it
//! may still have bundles (`"ROOTCA"`, its trust domain ID), and a name it
//! may not have fails the call with `InvalidArgument`, as in SPIRE.
//!
//! Resource names are SPIRE's (`config.rs`, `select.rs`): SPIFFE IDs and
//! `default_svid_name` for TLS certificates, trust domain IDs,
//! `default_bundle_name` and `default_all_bundles_name` for validation
//! contexts, with Envoy's SPIFFE validator unless
//! `disable_spiffe_cert_validation`.
//!
//! Files: `session.rs` (versions, nonces, ACK/NACK), `resources.rs`
//! (encoding, shared between streams), `wire.rs` (gRPC framing without
//! per-stream buffers), `stream.rs` (the calls). Imports go one way:
//! `mod` → `stream`, `wire`, `resources`; `stream` → `session`,
//! `resources`, `wire`, `select`, `config`; `wire` → `resources`,
//! `session`; `session` → `resources`, `select`, `config`; `resources` →
//! `select`; `select` → `config`; out of the folder, `mod` → `caller`,
//! `service`, `stream` → `state`, `resources` → `shared`.

pub(crate) mod config;
mod resources;
mod select;
mod session;
mod stream;
mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::Frame;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

use super::caller::caller_of;
use super::service::WorkloadApi;
use stream::{Out, Sds, SecretStream};
use wire::Requests;

pub use config::SdsConfig;

const STREAM_SECRETS: &str = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets";
const FETCH_SECRETS: &str = "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets";

/// The SDS service, mounted next to the Workload API.
#[derive(Debug, Clone)]
pub struct SecretDiscovery {
    sds: Arc<Sds>,
}

impl SecretDiscovery {
    /// SDS over `api`'s cache and attestor, with its `sds` settings.
    pub fn new(api: &WorkloadApi) -> Self {
        let (shared, config) = api.sds_parts();
        SecretDiscovery {
            sds: Arc::new(Sds {
                shared,
                config,
                table: resources::ResourceTable::default(),
            }),
        }
    }
}

impl NamedService for SecretDiscovery {
    const NAME: &'static str = "envoy.service.secret.v3.SecretDiscoveryService";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl tower::Service<http::Request<Body>> for SecretDiscovery {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let sds = self.sds.clone();
        Box::pin(async move {
            Ok(match request.uri().path() {
                STREAM_SECRETS => stream_secrets(sds, request).await,
                FETCH_SECRETS => fetch_secrets(sds, request).await,
                _ => Status::unimplemented("Method is not implemented").into_http(),
            })
        })
    }
}

async fn stream_secrets(sds: Arc<Sds>, request: http::Request<Body>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let request = tonic::Request::from_http(http::Request::from_parts(parts, ()));
    let caller = match caller_of(&request) {
        Ok(caller) => caller,
        Err(status) => return status.into_http(),
    };
    let stream = match SecretStream::open(sds, caller, Requests::new(body)).await {
        Ok(stream) => stream,
        Err(status) => return status.into_http(),
    };
    let frames = futures::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        if let Some(rest) = stream.pending.take() {
            return Some((Ok::<_, Status>(Frame::data(rest)), Some(stream)));
        }
        match stream.next().await {
            Out::Send(head, rest) => {
                stream.pending = Some(rest);
                Some((Ok(Frame::data(head)), Some(stream)))
            }
            Out::End(status) => Some((Ok(Frame::trailers(wire::trailers(&status))), None)),
        }
    });
    grpc_response(Body::new(http_body_util::StreamBody::new(frames)))
}

async fn fetch_secrets(sds: Arc<Sds>, request: http::Request<Body>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let request = tonic::Request::from_http(http::Request::from_parts(parts, ()));
    let caller = match caller_of(&request) {
        Ok(caller) => caller,
        Err(status) => return status.into_http(),
    };
    let message = match Requests::new(body).next().await {
        Some(Ok(message)) => message,
        Some(Err(status)) => return status.into_http(),
        None => return Status::invalid_argument("the request has no message").into_http(),
    };
    let (head, rest) = match sds.fetch(&caller, &message).await {
        Ok(parts) => parts,
        Err(status) => return status.into_http(),
    };
    let frames = futures::stream::iter([
        Ok::<_, Status>(Frame::data(head)),
        Ok(Frame::data(rest)),
        Ok(Frame::trailers(wire::trailers(&Status::ok("")))),
    ]);
    grpc_response(Body::new(http_body_util::StreamBody::new(frames)))
}

fn grpc_response(body: Body) -> http::Response<Body> {
    let mut response = http::Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}
