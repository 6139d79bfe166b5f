//! Connections as the gRPC server sees them: who is on the other end.
//!
//! Both listeners hand tonic connections that implement
//! [`Connected`] with the same [`PeerInfo`], so every handler finds the
//! caller's transport in the request extensions: the admin Unix socket
//! ([`PeerInfo::Local`]) or TCP with the client's certificate chain, if it
//! sent one ([`PeerInfo::Tcp`]). TLS handshakes run on their own tasks,
//! with a deadline, so a slow client never holds up the accept loop. A TLS
//! connection with a client certificate is closed when the bundle no
//! longer trusts it (`revocable.rs`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::client_trust::{ClientTrust, PeerChain};
use super::revocable::{self, Revocable};

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub enum PeerInfo {
    /// The admin Unix socket: a local process, trusted as admin.
    Local {
        /// The peer's user ID, when the OS reports it.
        uid: Option<u32>,
    },
    /// The TCP listener.
    Tcp {
        /// The client's address.
        remote: Option<SocketAddr>,
        /// The client's certificate chain (leaf first), verified against
        /// the trust bundle during the handshake, if it sent one; whether
        /// it still is: [`PeerChain::trusted`].
        chain: Option<Arc<PeerChain>>,
    },
}

/// A TLS connection from the TCP listener, with its client's chain.
#[derive(Debug)]
pub struct TlsConnection(Revocable<TlsStream<TcpStream>>, Option<Arc<PeerChain>>);

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        let (tcp, _) = self.0.get_ref().get_ref();
        PeerInfo::Tcp {
            remote: tcp.peer_addr().ok(),
            chain: self.1.clone(),
        }
    }
}

/// A connection on the admin Unix socket.
#[derive(Debug)]
pub struct LocalConnection(UnixStream);

impl Connected for LocalConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        PeerInfo::Local {
            uid: self.0.peer_cred().ok().map(|c| c.uid()),
        }
    }
}

macro_rules! delegate_io {
    ($ty:ty) => {
        impl AsyncRead for $ty {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_read(cx, buf)
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.0).poll_write(cx, buf)
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.0).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.0.is_write_vectored()
            }
        }
    };
}

delegate_io!(TlsConnection);
delegate_io!(LocalConnection);

/// Accepts TCP connections and completes their TLS handshakes, yielding
/// the established connections, their client chains judged by `trust`.
/// Failed handshakes are logged at debug and dropped; the stream ends when
/// the listener fails for good or the returned stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    trust: Arc<ClientTrust>,
) -> impl Stream<Item = io::Result<TlsConnection>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(conn) => conn,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "TCP accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => {
                    // Dropping the sender after this ends the stream.
                    tracing::error!(error = %e, "TCP listener failed");
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let trust = trust.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let chain = revocable::peer_chain(tls.get_ref().1, &trust);
                        let tls = revocable::wrap(tls, chain.as_ref(), Some(remote));
                        let _ = tx.send(Ok(TlsConnection(tls, chain))).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Accepts connections on the admin Unix socket. After a listener failure
/// that is not about one connection, the error is yielded once and the
/// stream ends.
pub fn local_incoming(listener: UnixListener) -> impl Stream<Item = io::Result<LocalConnection>> {
    futures::stream::unfold(Some(listener), |listener| async move {
        let listener = listener?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => return Some((Ok(LocalConnection(stream)), Some(listener))),
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "admin socket accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "admin socket listener failed");
                    return Some((Err(e), None));
                }
            }
        }
    })
}

/// Accept errors that concern one connection (or a momentary shortage of
/// file descriptors), not the listener.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}
