//! One tower layer that counts and times every gRPC call of a server, by
//! service, method and final gRPC status, and counts the calls in flight
//! (for streaming methods: the open streams).
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `rpc_calls` (`_total`) | counter | `service`, `method`, `status` |
//! | `rpc_duration_seconds` | histogram | `service`, `method`, `status` |
//! | `rpc_in_flight` | gauge | `service`, `method` |
//!
//! `service` and `method` come from the request path
//! (`/spire.api.server.agent.v1.Agent/AttestAgent`), but only for the paths
//! the server says it serves ([`KnownMethods`]): any other path is counted
//! as `unknown`/`unknown`, so that a client cannot add series by calling
//! made-up methods. `status` is the gRPC code's name as grpc-go spells it
//! (`OK`, `PermissionDenied`, ...: SPIRE's `status` label), taken from the
//! trailers (or the head, for trailers-only answers, whose empty body is
//! dropped unread); a call whose response is dropped before any status (a
//! client that cancels a stream) is `Canceled`. The duration runs from the request to the final status: for
//! streams, the stream's lifetime.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tonic::body::Body as TonicBody;
use tower::{Layer, Service};

/// The full gRPC path of a served method (`/package.Service/Method`) as a
/// `'static` string, or `None` for a path the server does not serve.
pub type KnownMethods = fn(&str) -> Option<&'static str>;

/// Bucket bounds of `rpc_duration_seconds`, from 0.5 ms to 10 s.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Labels of one method and outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The gRPC service (`spire.api.server.agent.v1.Agent`).
    pub service: &'static str,
    /// The method (`AttestAgent`).
    pub method: &'static str,
    /// The final gRPC code's name (`OK`).
    pub status: &'static str,
}

/// Labels of one method.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// The gRPC service.
    pub service: &'static str,
    /// The method.
    pub method: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The RPC metrics of one server; clones share the values.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    calls: Family<CallLabels, Counter>,
    duration: Family<CallLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<MethodLabels, Gauge>,
    known: KnownMethods,
}

impl RpcMetrics {
    /// Metrics for a server that serves the methods `known` accepts.
    pub fn new(known: KnownMethods) -> Self {
        RpcMetrics {
            inner: Arc::new(Inner {
                calls: Family::default(),
                duration: Family::new_with_constructor(duration_histogram),
                in_flight: Family::default(),
                known,
            }),
        }
    }

    /// Adds the metrics to `registry` (under its prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rpc_calls",
            "gRPC calls answered, by service, method and gRPC status",
            self.inner.calls.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "Time from a gRPC request to its final status (for streams, their lifetime)",
            self.inner.duration.clone(),
        );
        registry.register(
            "rpc_in_flight",
            "gRPC calls in progress (for streaming methods: open streams)",
            self.inner.in_flight.clone(),
        );
    }

    /// The layer that records into these metrics.
    pub fn layer(&self) -> RpcLayer {
        RpcLayer {
            metrics: self.clone(),
        }
    }

    fn method_of(&self, path: &str) -> MethodLabels {
        let (service, method) = (self.inner.known)(path)
            .and_then(|p| p.strip_prefix('/'))
            .and_then(|p| p.split_once('/'))
            .unwrap_or(("unknown", "unknown"));
        MethodLabels { service, method }
    }
}

/// The layer: wrap a tonic server with it (`Server::builder().layer(..)`).
#[derive(Debug, Clone)]
pub struct RpcLayer {
    metrics: RpcMetrics,
}

impl<S> Layer<S> for RpcLayer {
    type Service = Recorded<S>;

    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service wrapped by [`RpcLayer`].
#[derive(Debug, Clone)]
pub struct Recorded<S> {
    inner: S,
    metrics: RpcMetrics,
}

/// One call being recorded; records once, when the status is known or
/// when dropped.
#[derive(Debug)]
struct Call {
    metrics: RpcMetrics,
    method: MethodLabels,
    started: Instant,
    head_code: Option<i32>,
    done: bool,
}

impl Call {
    fn start(metrics: RpcMetrics, path: &str) -> Self {
        let method = metrics.method_of(path);
        metrics.inner.in_flight.get_or_create(&method).inc();
        Call {
            metrics,
            method,
            started: Instant::now(),
            head_code: None,
            done: false,
        }
    }

    fn finish(&mut self, code: i32) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let inner = &self.metrics.inner;
        inner.in_flight.get_or_create(&self.method).dec();
        let labels = CallLabels {
            service: self.method.service,
            method: self.method.method,
            status: code_name(code),
        };
        inner.calls.get_or_create(&labels).inc();
        inner
            .duration
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // A trailers-only answer (an error) carries its status in the head
        // and its empty body is dropped unread. Otherwise, dropped before a
        // status: the client went away.
        let code = self.head_code.unwrap_or(1);
        self.finish(code);
    }
}

/// The `grpc-status` a response's headers or trailers carry, if any (a
/// status in the headers is a trailers-only response: the call failed
/// before any message). Also read by the server's audit layer.
pub fn header_code(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The name grpc-go gives a status code (SPIRE's `status` label values).
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

impl<S, B> Service<http::Request<B>> for Recorded<S>
where
    S: Service<http::Request<B>, Response = http::Response<TonicBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<TonicBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone is ready-less; keep the one that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut call = Call::start(self.metrics.clone(), request.uri().path());
        let future = inner.call(request);
        Box::pin(async move {
            let response = match future.await {
                Ok(response) => response,
                Err(e) => {
                    call.finish(13);
                    return Err(e);
                }
            };
            call.head_code = header_code(response.headers());
            let (parts, body) = response.into_parts();
            let body = RecordedBody { inner: body, call };
            Ok(http::Response::from_parts(parts, TonicBody::new(body)))
        })
    }
}

/// A response body that records the call once its final status is known.
struct RecordedBody {
    inner: TonicBody,
    call: Call,
}

impl Body for RecordedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = header_code(trailers).or(self.call.head_code).unwrap_or(0);
                    self.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                let code = i32::from(status.code());
                self.call.finish(code);
            }
            Poll::Ready(None) => {
                let code = self.call.head_code.unwrap_or(0);
                self.call.finish(code);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn known(path: &str) -> Option<&'static str> {
        ["/pkg.Svc/Known"].into_iter().find(|p| *p == path)
    }

    fn render(metrics: &RpcMetrics) -> String {
        let mut registry = Registry::with_prefix("test");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    #[tokio::test]
    async fn made_up_methods_share_one_series_and_drops_are_canceled() {
        let metrics = RpcMetrics::new(known);
        for path in ["/pkg.Svc/Known", "/pkg.Svc/Other", "/x/y"] {
            let mut call = Call::start(metrics.clone(), path);
            call.finish(0);
        }
        drop(Call::start(metrics.clone(), "/pkg.Svc/Known"));
        let mut refused = Call::start(metrics.clone(), "/pkg.Svc/Known");
        refused.head_code = Some(7);
        drop(refused);
        let text = render(&metrics);
        assert!(
            text.contains(
                "test_rpc_calls_total{service=\"pkg.Svc\",method=\"Known\",status=\"OK\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "test_rpc_calls_total{service=\"unknown\",method=\"unknown\",status=\"OK\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "test_rpc_calls_total{service=\"pkg.Svc\",method=\"Known\",status=\"Canceled\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "test_rpc_calls_total{service=\"pkg.Svc\",method=\"Known\",status=\"PermissionDenied\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("test_rpc_in_flight{service=\"pkg.Svc\",method=\"Known\"} 0\n"),
            "{text}"
        );
    }
}
