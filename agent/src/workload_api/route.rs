//! `FetchX509SVID` answered with shared, already encoded messages.
//!
//! A generated tonic service encodes every message it streams into a
//! buffer of the stream's own and keeps that buffer for the life of the
//! stream: 500 streams of a 1,000-SVID response hold 500 encoded copies
//! (about 1 MiB each) even when the message itself is shared. [`Routes`]
//! sits in front of the generated service and answers
//! `/SpiffeWorkloadAPI/FetchX509SVID` itself: each response is encoded once
//! per snapshot and identity set, as one gRPC frame (`shared.rs` keeps it),
//! and every stream that gets it sends the same `Bytes`. Every other path
//! goes to the generated service.
//!
//! On the wire nothing changes: HTTP/2 status 200, `content-type:
//! application/grpc`, length-prefixed uncompressed messages, trailers with
//! `grpc-status` (0 when the stream ends, the refusal otherwise); a call
//! refused before its first message is answered trailers-only, as tonic
//! does. The request message (`X509SVIDRequest`, empty) is read to its end
//! (at most 64 KiB) and ignored.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt;
use http_body::Frame;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

use spinel_transport::UnixPeer;

use super::service::WorkloadApi;
use super::shared::Encoded;

/// The path of `FetchX509SVID`.
const FETCH_X509_SVID: &str = "/SpiffeWorkloadAPI/FetchX509SVID";

/// The most a `FetchX509SVID` request body may hold (it carries one empty
/// message).
const MAX_REQUEST: usize = 64 * 1024;

/// The Workload API service `S` with `FetchX509SVID` answered from shared
/// encoded responses.
#[derive(Debug, Clone)]
pub struct Routes<S> {
    api: WorkloadApi,
    inner: S,
}

impl<S> Routes<S> {
    /// `inner` (the generated service over `api`) with `FetchX509SVID`
    /// taken over.
    pub fn new(api: WorkloadApi, inner: S) -> Self {
        Routes { api, inner }
    }
}

impl<S: NamedService> NamedService for Routes<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> tower::Service<http::Request<Body>> for Routes<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != FETCH_X509_SVID {
            return Box::pin(self.inner.call(request));
        }
        let api = self.api.clone();
        Box::pin(async move { Ok(fetch_x509svid(api, request).await) })
    }
}

async fn fetch_x509svid(api: WorkloadApi, request: http::Request<Body>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    // The request message (`X509SVIDRequest`) is empty; read it to its end
    // (as the generated service would), bounded, and drop it.
    if http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX_REQUEST))
        .await
        .is_err()
    {
        return Status::invalid_argument("the request could not be read").into_http();
    }
    let peer = parts.extensions.get::<UnixPeer>().cloned();
    let request = tonic::Request::from_http(http::Request::from_parts(parts, ()));
    let updates = match api.open_x509_frames(&request).await {
        Ok(updates) => updates,
        Err(status) => return status.into_http(),
    };
    // Each message as it comes; then the trailers: the refusal that ended
    // the stream, or OK.
    let frames = futures::stream::unfold(Some(updates), move |state| {
        let peer = peer.clone();
        async move {
            let mut updates = state?;
            let frame = match updates.next().await {
                Some(Ok(encoded)) => {
                    warn_if_over_client_limit(peer.as_ref(), &encoded);
                    return Some((Ok(Frame::data(encoded.into_bytes())), Some(updates)));
                }
                Some(Err(status)) => Frame::trailers(trailers(&status)),
                None => Frame::trailers(trailers(&Status::ok(""))),
            };
            Some((Ok::<_, Status>(frame), None))
        }
    });
    let body = http_body_util::StreamBody::new(frames);
    let mut response = http::Response::new(Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The largest message gRPC clients accept by default (grpc-go, which
/// go-spiffe and SPIRE use, grpc-java, C-core and tonic all default to
/// 4 MiB).
pub(crate) const CLIENT_DEFAULT_MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Says so, naming the caller, when an X509-SVID response is larger than
/// what gRPC clients accept by default. The Workload API has no paging
/// and SPIRE's agent sends such a response as it is; so does Spinel's
/// (a client with a raised limit gets it), but a client keeping the
/// default fails with a "message too large" error of its own, and only
/// this log tells the operator why.
fn warn_if_over_client_limit(peer: Option<&UnixPeer>, encoded: &Encoded) {
    let bytes = encoded.message_len();
    if bytes <= CLIENT_DEFAULT_MAX_MESSAGE {
        return;
    }
    tracing::warn!(
        pid = peer.and_then(|p| p.pid),
        uid = peer.map(|p| p.uid),
        gid = peer.map(|p| p.gid),
        bytes,
        limit = CLIENT_DEFAULT_MAX_MESSAGE,
        "FetchX509SVID response larger than gRPC clients accept by default (4 MiB): \
         a client keeping its default receive limit will refuse it; \
         give the workload fewer entries or raise its client's limit"
    );
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        map.insert("grpc-status", http::HeaderValue::from_static("13"));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use spinel_proto::workload::{X509svid, X509svidResponse};

    #[test]
    fn frames_decode_back() {
        let message = X509svidResponse {
            svids: vec![X509svid {
                spiffe_id: "spiffe://example.org/w".into(),
                x509_svid: vec![1; 300],
                ..Default::default()
            }],
            ..Default::default()
        };
        let encoded = Encoded::of(&message);
        let bytes = encoded.clone().into_bytes();
        assert_eq!(bytes[0], 0, "not compressed");
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len, bytes.len() - 5);
        assert_eq!(encoded.decode::<X509svidResponse>().unwrap(), message);
    }
}
