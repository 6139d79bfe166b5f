//! The small HTTP/1.1 server of the plain-text listeners both binaries
//! open for orchestrators and scrapers: the health listener
//! ([`crate::health_http`]) and the metrics listener (`spinel-telemetry`).
//!
//! `GET <path>` is answered by the listener's [`Handler`]; any other method
//! is `405`. Limits, the same for every such listener: the caps of
//! [`HTTP_LIMITS`] (in total and per source address), the request head
//! read within [`HTTP_LIMITS`]'s `first_request_timeout` (a client that
//! trickles its headers is closed then), a request head of at most
//! [`MAX_HEAD_BYTES`] (larger: `431` and the connection closed), and
//! every connection closed after [`HTTP_CONNECTION_LIFETIME`] however busy.
//! Request bodies are never read.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::tcp::{TcpAdmission, HTTP_CONNECTION_LIFETIME, HTTP_LIMITS};

/// Largest request head (request line and headers) read: a scraper's or a
/// probe's `GET` needs a few hundred bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// One answer of a [`Handler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Reply {
    /// `404` with an empty body.
    pub fn not_found() -> Self {
        Reply {
            status: StatusCode::NOT_FOUND,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
        }
    }
}

/// Answers `GET <path>`, given the path (without the query).
pub type Handler = Arc<dyn Fn(&str) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// Serves `handler` on `listener` (called `name` in logs) until `shutdown`
/// completes.
pub async fn serve(
    listener: TcpListener,
    name: &'static str,
    handler: Handler,
    shutdown: impl Future<Output = ()>,
) {
    let mut admission = TcpAdmission::new(listener, HTTP_LIMITS, name);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HTTP_LIMITS.first_request_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = admission.accept() => accepted,
            () = &mut shutdown => return,
        };
        let Ok((stream, _, permit)) = accepted else {
            return;
        };
        let handler = handler.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| answer(req, handler.clone()));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(HTTP_CONNECTION_LIFETIME, conn).await;
        });
    }
}

async fn answer(req: Request<Incoming>, handler: Handler) -> Result<Response<String>, Infallible> {
    let reply = if req.method() == Method::GET {
        handler(req.uri().path()).await
    } else {
        Reply {
            status: StatusCode::METHOD_NOT_ALLOWED,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
        }
    };
    let mut response = Response::new(reply.body);
    *response.status_mut() = reply.status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(reply.content_type),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn start() -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler: Handler = Arc::new(|path: &str| {
            let reply = if path == "/doc" {
                Reply {
                    status: StatusCode::OK,
                    content_type: "text/plain",
                    body: "hello\n".into(),
                }
            } else {
                Reply::not_found()
            };
            Box::pin(async move { reply })
        });
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(listener, "test", handler, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        (addr, stop)
    }

    async fn read_all(stream: &mut TcpStream) -> String {
        let mut response = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
            .await
            .expect("the server kept the connection open");
        String::from_utf8_lossy(&response).into_owned()
    }

    #[tokio::test]
    async fn a_head_larger_than_the_cap_is_refused() {
        let (addr, _stop) = start().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let big = "a".repeat(MAX_HEAD_BYTES * 2);
        let request = format!("GET /doc HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
        // The server may close before reading everything.
        let _ = stream.write_all(request.as_bytes()).await;
        let response = read_all(&mut stream).await;
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 431"),
            "{response}"
        );
        // A normal request still works.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /doc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let response = read_all(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("hello\n"), "{response}");
    }

    #[tokio::test]
    async fn a_head_trickled_byte_by_byte_is_cut_off() {
        let (addr, _stop) = start().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /doc HTTP/1.1\r\nX: ").await.unwrap();
        let started = Instant::now();
        // One byte a second, never finishing the head.
        let closed = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stream.write_all(b"a").await.is_err() {
                break true;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(10), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => break true,
                Err(_) => {}
            }
            if started.elapsed() > Duration::from_secs(25) {
                break false;
            }
        };
        assert!(closed, "a trickling client kept its connection");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= HTTP_LIMITS.first_request_timeout - Duration::from_secs(1)
                && elapsed < HTTP_CONNECTION_LIFETIME,
            "closed after {elapsed:?}"
        );
    }
}
