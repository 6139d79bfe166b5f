//! The HTTP health listener of `health_checks { listener_enabled = true }`,
//! as SPIRE offers it to orchestrators: `GET <live_path>` and
//! `GET <ready_path>` answer `200` with a small JSON body while the server
//! is live/ready, `500` otherwise; any other path is `404`.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use spinel_transport::tcp::{TcpAdmission, HTTP_CONNECTION_LIFETIME, HTTP_LIMITS};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::ApiState;

/// Paths of the health listener.
#[derive(Debug, Clone)]
pub struct HealthPaths {
    /// Liveness path (SPIRE's default `/live`).
    pub live: String,
    /// Readiness path (SPIRE's default `/ready`).
    pub ready: String,
}

/// Serves health requests on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    paths: HealthPaths,
    state: Arc<ApiState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let paths = Arc::new(paths);
    let mut admission = TcpAdmission::new(listener, HTTP_LIMITS, "health checks");
    loop {
        let accepted = tokio::select! {
            accepted = admission.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Ok((stream, _, permit)) = accepted else {
            return;
        };
        let paths = paths.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| answer(req, paths.clone(), state.clone()));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(HTTP_CONNECTION_LIFETIME, conn).await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    paths: Arc<HealthPaths>,
    state: Arc<ApiState>,
) -> Result<Response<String>, Infallible> {
    let path = req.uri().path();
    let (status, body) = if req.method() != Method::GET {
        (StatusCode::METHOD_NOT_ALLOWED, String::new())
    } else if path == paths.live {
        // Live: the process answers. Ready: it also serves.
        (StatusCode::OK, "{\"live\":true}\n".to_owned())
    } else if path == paths.ready {
        if state.healthy().await {
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
