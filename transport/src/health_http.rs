//! The HTTP health listener of `health_checks { listener_enabled = true }`,
//! as SPIRE offers it to orchestrators, for both binaries: `GET
//! <live_path>` answers `200` with a small JSON body while the process
//! runs, `GET <ready_path>` `200` while the binary says it is ready and
//! `500` otherwise; any other path is `404`, any other method `405`.
//! HTTP/1.1 only, served by [`crate::plain_http`] with its limits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::StatusCode;
use tokio::net::TcpListener;

use crate::plain_http::{self, Handler, Reply};

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
    let handler: Handler = Arc::new(move |path: &str| {
        let (paths, ready, path) = (paths.clone(), ready.clone(), path.to_owned());
        Box::pin(async move { answer(&path, &paths, ready).await })
    });
    plain_http::serve(listener, "health checks", handler, shutdown).await;
}

async fn answer(path: &str, paths: &HealthPaths, ready: Readiness) -> Reply {
    let json = |status, body: &str| Reply {
        status,
        content_type: "application/json",
        body: body.to_owned(),
    };
    if path == paths.live {
        // Live: the process answers. Ready: it also serves.
        json(StatusCode::OK, "{\"live\":true}\n")
    } else if path == paths.ready {
        if ready().await {
            json(StatusCode::OK, "{\"ready\":true}\n")
        } else {
            json(StatusCode::INTERNAL_SERVER_ERROR, "{\"ready\":false}\n")
        }
    } else {
        Reply::not_found()
    }
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
