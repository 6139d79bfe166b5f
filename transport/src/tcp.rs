//! The accept loop of every TCP listener: caps in total and per source
//! address (a connection over a cap is closed as soon as it is accepted,
//! before any handshake), back-off on accept errors such as running out of
//! file descriptors, and a rate-limited log line while connections are
//! being turned away.
//!
//! The gRPC listener (agents, admins over mTLS) takes its caps from
//! `connection_limits {}`; the plain HTTP listeners (OIDC discovery, the
//! federation bundle endpoint, health checks) serve small documents and
//! use [`HTTP_LIMITS`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::limits::{
    is_transient_accept_error, AcceptBackoff, ConnectionLimits, Limiter, Permit, Refusal,
    RefusalLog,
};

/// Caps of the HTTP/1 listeners (OIDC discovery, bundle endpoint, health
/// checks): a document per request, so a client needs few connections.
/// `first_request_timeout` bounds the TLS handshake where there is one;
/// the listeners also close every connection after
/// [`HTTP_CONNECTION_LIFETIME`].
pub const HTTP_LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 1024,
    max_connections_per_peer: 64,
    first_request_timeout: Duration::from_secs(10),
};

/// How long an HTTP/1 connection of those listeners may stay open, however
/// busy: long enough for many requests, short enough that idle or slow
/// clients give their slot back.
pub const HTTP_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// A TCP listener under connection caps.
#[derive(Debug)]
pub struct TcpAdmission {
    listener: TcpListener,
    limiter: Limiter<IpAddr>,
    backoff: AcceptBackoff,
    refusal_log: RefusalLog,
    name: &'static str,
}

impl TcpAdmission {
    /// Admits connections of `listener` (called `name` in logs) under
    /// `limits`.
    pub fn new(listener: TcpListener, limits: ConnectionLimits, name: &'static str) -> Self {
        TcpAdmission {
            listener,
            limiter: Limiter::new(limits),
            backoff: AcceptBackoff::default(),
            refusal_log: RefusalLog::default(),
            name,
        }
    }

    /// The caps enforced.
    pub fn limits(&self) -> ConnectionLimits {
        self.limiter.limits()
    }

    /// The next connection within the caps, with the slot it holds until
    /// the permit is dropped. Connections over a cap are closed and
    /// skipped; transient accept errors are retried after a growing
    /// delay. An error means the listener failed for good.
    pub async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr, Permit<IpAddr>)> {
        loop {
            let (tcp, remote) = match self.listener.accept().await {
                Ok(conn) => {
                    self.backoff.reset();
                    conn
                }
                Err(e) if is_transient_accept_error(&e) => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(listener = self.name, error = %e, retry_in = ?delay, "TCP accept failed; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(listener = self.name, error = %e, "TCP listener failed");
                    return Err(e);
                }
            };
            match self.limiter.admit(remote.ip()) {
                Ok(permit) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok((tcp, remote, permit));
                }
                Err(refusal) => self.log_refusal(refusal, remote),
            }
        }
    }

    fn log_refusal(&mut self, refusal: Refusal, remote: SocketAddr) {
        if !self.refusal_log.due() {
            return;
        }
        match refusal {
            Refusal::Global(max) => tracing::warn!(
                listener = self.name,
                max_connections = max,
                "TCP connection limit reached; closing new connections (logged once a minute)"
            ),
            Refusal::Peer(max) => tracing::warn!(
                listener = self.name,
                %remote,
                max_connections_per_ip = max,
                "per-address connection limit reached; closing this address's new connections (logged once a minute)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn limits(total: usize, per_peer: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: total,
            max_connections_per_peer: per_peer,
            first_request_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn connections_over_the_per_address_cap_are_closed_at_accept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut admission = TcpAdmission::new(listener, limits(10, 2), "test");
        let accepting = tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..2 {
                held.push(admission.accept().await.unwrap());
            }
            // The third is refused and skipped; the loop waits for a fourth.
            let next = tokio::time::timeout(Duration::from_millis(300), admission.accept()).await;
            assert!(
                next.is_err(),
                "a third connection from one address was admitted"
            );
            drop(held);
            admission.accept().await.unwrap().1
        });
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        // The refused connection is closed by the server: end of stream.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _d = TcpStream::connect(addr).await.unwrap();
        let admitted = tokio::time::timeout(Duration::from_secs(5), accepting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(admitted.ip(), addr.ip());
    }
}
