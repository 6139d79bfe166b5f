//! The HTTP health listener of `health_checks { listener_enabled = true }`,
//! as SPIRE offers it to orchestrators, for both binaries: `GET
//! <live_path>` answers `200` with a small JSON body while the process
//! runs, `GET <ready_path>` `200` while the binary says it is ready and
//! `500` otherwise; any other path is `404`, any other method `405`.
//! HTTP/1.1 only, with the limits of every TCP listener ([`crate::tcp`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::tcp::{TcpAdmission, HTTP_CONNECTION_LIFETIME, HTTP_LIMITS};

/// Paths of the health listener.
#[derive(Debug, Clone)]
pub struct HealthPaths {
    /// Liveness path (SPIRE's default `/live`).
    pub live: String,
    /// Readiness path (SPIRE's default `/ready`).
    pub ready: String,
}

/// Whether the binary is ready, asked once per readiness request.
pub type Readiness = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Serves health requests on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    paths: HealthPaths,
    ready: Readiness,
    shutdown: impl Future<Output = ()>,
) {
    let paths = Arc::new(paths);
    let mut admission = TcpAdmission::new(listener, HTTP_LIMITS, "health checks");
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = admission.accept() => accepted,
            () = &mut shutdown => return,
        };
        let Ok((stream, _, permit)) = accepted else {
            return;
        };
        let paths = paths.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| answer(req, paths.clone(), ready.clone()));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(HTTP_CONNECTION_LIFETIME, conn).await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    paths: Arc<HealthPaths>,
    ready: Readiness,
) -> Result<Response<String>, Infallible> {
    let path = req.uri().path();
    let (status, body) = if req.method() != Method::GET {
        (StatusCode::METHOD_NOT_ALLOWED, String::new())
    } else if path == paths.live {
        // Live: the process answers. Ready: it also serves.
        (StatusCode::OK, "{\"live\":true}\n".to_owned())
    } else if path == paths.ready {
        if ready().await {
            (StatusCode::OK, "{\"ready\":true}\n".to_owned())
        } else {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "{\"ready\":false}\n".to_owned(),
            )
        }
    } else {
        (StatusCode::NOT_FOUND, String::new())
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn status(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn ready_follows_the_binary_live_does_not() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let ready: Readiness = {
            let flag = flag.clone();
            Arc::new(move || {
                let ready = flag.load(Ordering::SeqCst);
                Box::pin(async move { ready })
            })
        };
        let paths = HealthPaths {
            live: "/live".into(),
            ready: "/ready".into(),
        };
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(listener, paths, ready, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));

        assert_eq!(status(addr, "GET", "/live").await, "HTTP/1.1 200 OK");
        assert_eq!(
            status(addr, "GET", "/ready").await,
            "HTTP/1.1 500 Internal Server Error"
        );
        flag.store(true, Ordering::SeqCst);
        assert_eq!(status(addr, "GET", "/ready").await, "HTTP/1.1 200 OK");
        assert_eq!(
            status(addr, "GET", "/other").await,
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(addr, "DELETE", "/live").await,
            "HTTP/1.1 405 Method Not Allowed"
        );

        stop.send(true).unwrap();
        server.await.unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }
}
