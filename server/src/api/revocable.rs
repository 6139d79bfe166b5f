//! [`Revocable`]: a connection that fails every read and write once its
//! revocation future resolves, so the HTTP/2 server closes it, with every
//! stream on it, even while idle.
//!
//! The TCP listener wraps each TLS connection that presented a client
//! certificate, with [`PeerChain::until_untrusted`] as the future ([`wrap`]):
//! when a bundle change leaves the client's chain untrusted, the connection
//! is closed, whether or not a request is under way. Requests that arrive
//! before that are refused by `auth.rs`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::client_trust::{ClientTrust, PeerChain};

type Revocation = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// A connection that is cut once `revoked` resolves.
pub struct Revocable<S> {
    inner: S,
    revoked: Option<Revocation>,
    cut: bool,
}

impl<S> std::fmt::Debug for Revocable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocable")
            .field("revocable", &self.revoked.is_some())
            .field("cut", &self.cut)
            .finish_non_exhaustive()
    }
}

impl<S> Revocable<S> {
    /// `inner`, cut when `revoked` resolves (never, if `None`).
    pub fn new(inner: S, revoked: Option<Revocation>) -> Self {
        Revocable {
            inner,
            revoked,
            cut: false,
        }
    }

    /// The connection underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Fails once the revocation has resolved; registers the task's waker
    /// with it otherwise.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(revoked) = &mut self.revoked {
            if revoked.as_mut().poll(cx).is_ready() {
                self.revoked = None;
                self.cut = true;
            }
        }
        if self.cut {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client certificate no longer chains to the trust bundle",
            ));
        }
        Ok(())
    }
}

/// Wraps an accepted TLS connection whose client sent `chain` (if any):
/// the connection is cut when the chain stops verifying against the
/// current bundle.
pub fn wrap<S>(
    inner: S,
    chain: Option<&Arc<PeerChain>>,
    remote: Option<SocketAddr>,
) -> Revocable<S> {
    let revoked = chain.map(|c| Box::pin(c.clone().until_untrusted(remote)) as Revocation);
    Revocable::new(inner, revoked)
}

/// The chain a TLS session's client presented, if any, to be judged by
/// `trust` for the connection's lifetime.
pub fn peer_chain(
    session: &rustls::ServerConnection,
    trust: &Arc<ClientTrust>,
) -> Option<Arc<PeerChain>> {
    session
        .peer_certificates()
        .filter(|c| !c.is_empty())
        .map(|c| {
            PeerChain::new(
                c.iter().map(|d| d.clone().into_owned()).collect(),
                trust.clone(),
            )
        })
}

impl<S: AsyncRead + Unpin> AsyncRead for Revocable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Revocable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_idle_connection_is_cut_when_the_revocation_resolves() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let revoked: Revocation = Box::pin(async move {
            let _ = rx.await;
        });
        let mut conn = Revocable::new(ours, Some(revoked));
        theirs.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        // Nothing to read: the read waits, and fails when revoked.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4];
            let read = conn.read(&mut buf).await;
            (read.map_err(|e| e.kind()), conn)
        });
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        let (read, mut conn) = reader.await.unwrap();
        assert_eq!(read, Err(io::ErrorKind::ConnectionAborted));
        // And everything after it.
        let write = conn.write_all(b"pong").await.map_err(|e| e.kind());
        assert_eq!(write, Err(io::ErrorKind::ConnectionAborted));
    }

    #[tokio::test]
    async fn without_a_revocation_it_is_the_connection() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut conn = Revocable::new(ours, None);
        conn.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        theirs.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }
}
