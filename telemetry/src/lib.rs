//! Prometheus metrics, as both binaries serve them with
//! `telemetry { Prometheus { host, port } }`.
//!
//! - [`rpc`]: the tower layer that counts and times every gRPC call by
//!   service, method and status, and counts calls in flight (open
//!   streams).
//! - [`serve`] / [`start`]: the `GET /metrics` listener (Prometheus text
//!   format 0.0.4), on [`spinel_transport::plain_http`] with the health
//!   listener's limits and timeouts; other paths are `404`.
//!
//! Each binary keeps its own metrics (`server/src/metrics.rs`,
//! `agent/src/metrics.rs`) in a `prometheus_client` [`Registry`] built
//! when the listener starts; values that are cheap to read where they live
//! (counts, expiry times) are read at each scrape by the binary's
//! [`Render`]. No SPIFFE ID, entry ID or other per-workload value is ever
//! a label value: every label has a small, fixed set of values.

pub mod rpc;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::StatusCode;
pub use prometheus_client;
use prometheus_client::encoding::prometheus_text;
pub use prometheus_client::registry::Registry;
use spinel_config::telemetry::Prometheus;
use spinel_transport::plain_http::{self, Handler, Reply};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use rpc::{RpcLayer, RpcMetrics};

/// The path metrics are served on.
pub const METRICS_PATH: &str = "/metrics";

/// Produces the exposition text of one scrape.
pub type Render = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// `registry` in the Prometheus text format (version 0.0.4).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_text::encode(&mut text, registry) {
        // Writing to a String does not fail; a metric's own encoder might.
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    text
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, render: Render, shutdown: impl Future<Output = ()>) {
    let handler: Handler = Arc::new(move |path: &str| {
        let render = (path == METRICS_PATH).then(|| render.clone());
        Box::pin(async move {
            match render {
                Some(render) => Reply {
                    status: StatusCode::OK,
                    content_type: prometheus_text::CONTENT_TYPE,
                    body: render().await,
                },
                None => Reply::not_found(),
            }
        })
    });
    plain_http::serve(listener, "metrics", handler, shutdown).await;
}

/// Binds the listener `settings` name and serves on it in a task; returns
/// its address. Logs SPIRE's warning when it listens beyond localhost.
pub async fn start(
    settings: &Prometheus,
    render: Render,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind((settings.host.as_str(), settings.port)).await?;
    let addr = listener.local_addr()?;
    if settings.host != "localhost" && !addr.ip().is_loopback() {
        tracing::warn!(address = %addr, "the metrics listener accepts remote connections; make sure access to this port is tightly controlled");
    }
    tracing::info!(address = %addr, path = METRICS_PATH, "serving Prometheus metrics");
    Ok((addr, tokio::spawn(serve(listener, render, shutdown))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn metrics_on_their_path_and_nothing_else() {
        let counter = Counter::<u64>::default();
        let mut registry = Registry::with_prefix("spire_agent");
        registry.register("things", "Things done", counter.clone());
        let registry = Arc::new(registry);
        let render: Render = Arc::new(move || {
            let registry = registry.clone();
            Box::pin(async move { encode(&registry) })
        });
        let settings = Prometheus {
            host: "127.0.0.1".into(),
            port: 0,
        };
        let (addr, _task) = start(&settings, render, std::future::pending())
            .await
            .unwrap();
        counter.inc();
        let response = get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains("content-type: text/plain; version=0.0.4"),
            "{response}"
        );
        assert!(
            response.contains("\nspire_agent_things_total 1\n"),
            "{response}"
        );
        assert!(get(addr, "/").await.starts_with("HTTP/1.1 404"));
        assert!(get(addr, "/metrics/x").await.starts_with("HTTP/1.1 404"));
    }
}
