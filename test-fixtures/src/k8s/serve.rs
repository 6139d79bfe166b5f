//! The plumbing every fake shares: a background thread with its own tokio
//! runtime, HTTP/1.1 listeners on `127.0.0.1:0` (TLS or plain), request
//! bodies collected before the handler sees them, and shutdown on drop.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Who is calling, as far as the transport can tell.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peer {
    /// The connection is TLS (the secure port), not plain HTTP.
    pub tls: bool,
    /// Subject common name of a verified client certificate, if one was
    /// presented (rustls already checked it chains to the fake's CA).
    pub client_cn: Option<String>,
}

/// A fake's request handler.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers one request whose body has been read in full.
    fn handle(
        &self,
        req: Request<Bytes>,
        peer: Peer,
    ) -> impl Future<Output = Response<String>> + Send;
}

/// One listening socket and whether it speaks TLS.
pub(crate) struct Listen {
    /// Bound, not yet accepting.
    pub listener: std::net::TcpListener,
    /// `Some` for HTTPS.
    pub tls: Option<Arc<ServerConfig>>,
}

impl Listen {
    /// Binds `127.0.0.1:0`.
    pub fn bind(tls: Option<Arc<ServerConfig>>) -> Result<Listen> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        listener
            .set_nonblocking(true)
            .context("making listener non-blocking")?;
        Ok(Listen { listener, tls })
    }

    /// The bound port.
    pub fn port(&self) -> Result<u16> {
        Ok(self.listener.local_addr().context("local address")?.port())
    }
}

/// A server running on its own thread; stops and joins when dropped.
pub(crate) struct Background {
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background").finish_non_exhaustive()
    }
}

impl Background {
    /// Starts serving `handler` on every listener, on a new thread named
    /// `name` with a current-thread tokio runtime.
    pub fn start<H: Handler>(name: &str, handler: Arc<H>, listens: Vec<Listen>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the fake's tokio runtime")?;
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut loops = Vec::new();
                    for listen in listens {
                        let listener = match TcpListener::from_std(listen.listener) {
                            Ok(l) => l,
                            Err(e) => {
                                tracing::error!(error = %e, "fake cannot register its listener");
                                continue;
                            }
                        };
                        let acceptor = listen.tls.map(TlsAcceptor::from);
                        loops.push(tokio::spawn(accept_loop(
                            listener,
                            acceptor,
                            handler.clone(),
                            stopped.clone(),
                        )));
                    }
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|s| *s).await;
                });
            })
            .context("spawning the fake's thread")?;
        Ok(Background {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    handler: Arc<H>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let (stream, remote) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "fake accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_conn(stream, Peer::default(), handler).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let peer = Peer {
                            tls: true,
                            client_cn: tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|certs| certs.first())
                                .and_then(|cert| common_name(cert.as_ref())),
                        };
                        serve_conn(tls, peer, handler).await;
                    }
                    Err(e) => log_handshake_failure(remote, &e),
                },
            }
        });
    }
}

fn log_handshake_failure(remote: SocketAddr, e: &std::io::Error) {
    tracing::debug!(%remote, error = %e, "fake TLS handshake failed");
}

async fn serve_conn<S, H>(stream: S, peer: Peer, handler: Arc<H>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        let peer = peer.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let msg = format!("reading request body: {e}");
                    return Ok::<_, Infallible>(text(StatusCode::BAD_REQUEST, &msg));
                }
            };
            Ok(handler.handle(Request::from_parts(parts, body), peer).await)
        }
    });
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "fake connection ended with an error");
    }
}

/// The subject CN of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// A `application/json` response.
pub(crate) fn json(status: StatusCode, body: String) -> Response<String> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A `text/plain` response, as Go's `http.Error` and go-restful write them.
pub(crate) fn text(status: StatusCode, body: &str) -> Response<String> {
    let mut resp = Response::new(body.to_owned());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The bearer token of `Authorization: Bearer <t>`, if any.
pub(crate) fn bearer(req: &Request<Bytes>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Locks `m`, ignoring poisoning (a panicking test must not cascade).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
