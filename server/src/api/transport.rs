//! Connections as the gRPC server sees them: who is on the other end.
//!
//! Both listeners hand tonic connections that implement
//! [`Connected`] with the same [`PeerInfo`], so every handler finds the
//! caller's transport in the request extensions: the admin Unix socket
//! ([`PeerInfo::Local`]) or TCP with the client's certificate chain, if it
//! sent one ([`PeerInfo::Tcp`]).
//!
//! Limits on the TCP listener (SECURITY.md): connections are capped in
//! total and per source address before the TLS handshake starts; the
//! handshake must end within `first_request_timeout`, and a connection
//! that sends no request within that time after it is closed too (an
//! [`Http2Guard`] without `:authority` repair: TCP keeps HTTP/2's own
//! validation); accept errors back off instead of spinning. Handshakes run
//! on their own tasks, so a slow client never holds up the accept loop.
//! The admin socket uses [`spinel_transport::unix::incoming`].
//!
//! A TLS connection with a client certificate is closed when the bundle no
//! longer trusts its chain (`revocable.rs`, invariant 9).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use spinel_transport::tcp::TcpAdmission;
use spinel_transport::{ConnectionLimits, GuardOptions, Http2Guard, Permit, UnixConnection};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::client_trust::{ClientTrust, PeerChain};
use super::revocable::{self, Revocable};

/// The TCP listener's limits when the config sets none
/// (`server.connection_limits`).
pub const DEFAULT_TCP_LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 8192,
    max_connections_per_peer: 256,
    first_request_timeout: Duration::from_secs(10),
};

/// The admin socket's limits: local callers only (mode 0770).
pub const ADMIN_SOCKET_LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 256,
    max_connections_per_peer: 256,
    first_request_timeout: Duration::from_secs(10),
};

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

/// A TLS connection from the TCP listener, holding its slot.
#[derive(Debug)]
pub struct TlsConnection {
    io: Revocable<Http2Guard<TlsStream<TcpStream>>>,
    /// The client's chain, judged for the connection's lifetime.
    chain: Option<Arc<PeerChain>>,
    /// The connection's place under the TCP limits, freed when it closes.
    _permit: Permit<IpAddr>,
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        let (tcp, _) = self.io.get_ref().get_ref().get_ref();
        PeerInfo::Tcp {
            remote: tcp.peer_addr().ok(),
            chain: self.chain.clone(),
        }
    }
}

/// A connection on the admin Unix socket.
#[derive(Debug)]
pub struct LocalConnection(UnixConnection);

impl Connected for LocalConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        PeerInfo::Local {
            uid: Some(self.0.peer().uid),
        }
    }
}

spinel_transport::delegate_io!(TlsConnection, io);
spinel_transport::delegate_io!(LocalConnection, 0);

/// Accepts TCP connections under `limits` and completes their TLS
/// handshakes, yielding the established connections, their client chains
/// judged by `trust`. Refused, failed and timed-out handshakes are logged
/// at debug and dropped; the stream ends when the listener fails for good
/// or the returned stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: ConnectionLimits,
    trust: Arc<ClientTrust>,
) -> impl Stream<Item = io::Result<TlsConnection>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut admission = TcpAdmission::new(listener, limits, "server API");
        loop {
            let accepted = tokio::select! {
                accepted = admission.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, remote, permit) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Dropping the sender after this ends the stream.
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let trust = trust.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(limits.first_request_timeout, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => {
                        let chain = revocable::peer_chain(tls.get_ref().1, &trust);
                        let guarded = Http2Guard::new(
                            tls,
                            GuardOptions {
                                repair_authority: false,
                                first_request_deadline: Some(limits.first_request_timeout),
                            },
                        );
                        let _ = tx
                            .send(Ok(TlsConnection {
                                io: revocable::wrap(guarded, chain.as_ref(), Some(remote)),
                                chain,
                                _permit: permit,
                            }))
                            .await;
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

/// Accepts connections on the admin Unix socket (see
/// [`spinel_transport::unix::incoming`]).
pub fn local_incoming(listener: UnixListener) -> impl Stream<Item = io::Result<LocalConnection>> {
    use futures::StreamExt;
    spinel_transport::unix::incoming(listener, ADMIN_SOCKET_LIMITS, "the admin socket")
        .map(|conn| conn.map(LocalConnection))
}
