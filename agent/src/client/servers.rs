//! The servers the agent may use ([`ServerPool`]): which one it talks to
//! now, how it moves to another, and whether any can be reached at all.
//!
//! Every configured [`ServerTarget`] is resolved at each connect (a host
//! name may stand for several servers). A connect walks the addresses in
//! order, starting at the one in use (or, for a fresh agent, at a random
//! position, so that agents spread over the servers), and moves to the
//! next when one refuses the connection, times out, or fails the TLS
//! handshake. Every address is verified the same way: the TLS config (and
//! its check of the server's SPIFFE ID) is the caller's, one for all.
//!
//! The outcome of the last connect ([`Reach`]) tells the sync loop whether
//! servers are down (then cheap [`ServerPool::probe`]s notice their
//! return) or answered and failed (then it backs off in full). Probes skip
//! the addresses whose TLS handshake failed in that connect: they are up,
//! and a TCP connect to them says nothing about whether they can serve.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::ServerTarget;

/// How long one address may take to accept a TCP connection and finish
/// the TLS handshake before the next is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a probe waits for one address to accept a TCP connection.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the last connect attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// No connect was tried yet.
    Unknown,
    /// A server accepted the connection and passed the TLS handshake.
    Connected,
    /// No server could be used, and some did not accept a TCP connection
    /// (refused, timed out) or no address resolved: servers are down or
    /// out of reach, and may come back.
    Unreachable,
    /// Every server accepted the TCP connection but failed the TLS
    /// handshake: they are up, so reconnecting at once would only load
    /// them.
    HandshakeFailed,
}

#[derive(Debug)]
struct PoolState {
    current: Option<SocketAddr>,
    reach: Reach,
    /// The addresses whose TLS handshake failed in the last connect.
    handshake_failed: Vec<SocketAddr>,
}

/// The configured servers and the connection state shared by every
/// channel the agent builds (the channel is rebuilt when the agent SVID
/// or the roots change; the server in use stays).
#[derive(Debug)]
pub struct ServerPool {
    targets: Vec<ServerTarget>,
    start: usize,
    state: Mutex<PoolState>,
}

impl ServerPool {
    /// A pool over `targets` starting at a random position.
    pub fn new(targets: Vec<ServerTarget>) -> Arc<Self> {
        Self::starting_at(targets, rand::random::<u32>() as usize)
    }

    /// A pool over `targets` whose first connect starts at position
    /// `start` (modulo the number of addresses).
    pub fn starting_at(targets: Vec<ServerTarget>, start: usize) -> Arc<Self> {
        Arc::new(ServerPool {
            targets,
            start,
            state: Mutex::new(PoolState {
                current: None,
                reach: Reach::Unknown,
                handshake_failed: Vec::new(),
            }),
        })
    }

    /// The configured servers.
    pub fn targets(&self) -> &[ServerTarget] {
        &self.targets
    }

    /// What the last connect attempt found.
    pub fn reach(&self) -> Reach {
        self.lock().reach
    }

    /// The address of the server in use (the last one connected to).
    pub fn current(&self) -> Option<SocketAddr> {
        self.lock().current
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    /// Every address of every target, in configured order; a target that
    /// does not resolve now is left out (and logged).
    async fn resolve(&self) -> Vec<(SocketAddr, &ServerTarget)> {
        let mut out = Vec::new();
        for target in &self.targets {
            match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
                Ok(addrs) => {
                    for addr in addrs {
                        if !out.iter().any(|(a, _)| *a == addr) {
                            out.push((addr, target));
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(server = %target, error = %e, "cannot resolve the server address")
                }
            }
        }
        out
    }

    /// The resolved addresses in the order a connect tries them.
    async fn in_order(&self) -> Vec<(SocketAddr, &ServerTarget)> {
        let addrs = self.resolve().await;
        let current = self.current();
        let at = current
            .and_then(|c| addrs.iter().position(|(a, _)| *a == c))
            .unwrap_or(self.start);
        rotate(addrs, at)
    }

    /// Connects to the first server that accepts a TCP connection and
    /// passes the TLS handshake `tls` makes, trying them in order.
    pub async fn connect(&self, tls: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
        let addrs = self.in_order().await;
        let mut handshake_failed = Vec::new();
        let mut tcp_failed = addrs.is_empty();
        let mut failures = Vec::new();
        for (addr, target) in addrs {
            let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    failures.push(format!("{addr}: {e}"));
                    tcp_failed = true;
                    continue;
                }
                Err(_) => {
                    failures.push(format!("{addr}: no answer in {CONNECT_TIMEOUT:?}"));
                    tcp_failed = true;
                    continue;
                }
            };
            // gRPC writes small frames; Nagle would hold them for the
            // peer's delayed ACK (~40 ms per exchange).
            tcp.set_nodelay(true)?;
            let Ok(name) = ServerName::try_from(target.host.clone()) else {
                failures.push(format!(
                    "{addr}: {:?} is not a TLS server name",
                    target.host
                ));
                continue;
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp)).await {
                Ok(Ok(stream)) => {
                    if !failures.is_empty() {
                        tracing::warn!(server = %target, address = %addr, passed_over = %failures.join("; "), "connected after passing over servers that could not be used");
                    }
                    self.connected(addr, target);
                    return Ok(stream);
                }
                Ok(Err(e)) => failures.push(format!("{addr}: TLS handshake failed: {e}")),
                Err(_) => failures.push(format!(
                    "{addr}: TLS handshake not done in {CONNECT_TIMEOUT:?}"
                )),
            }
            handshake_failed.push(addr);
        }
        let mut state = self.lock();
        state.reach = if tcp_failed {
            Reach::Unreachable
        } else {
            Reach::HandshakeFailed
        };
        state.handshake_failed = handshake_failed;
        drop(state);
        let message = if failures.is_empty() {
            let names: Vec<String> = self.targets.iter().map(ToString::to_string).collect();
            format!("no address resolved for {}", names.join(", "))
        } else {
            failures.join("; ")
        };
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            message,
        ))
    }

    fn connected(&self, addr: SocketAddr, target: &ServerTarget) {
        let mut state = self.lock();
        let previous = state.current.replace(addr);
        state.reach = Reach::Connected;
        state.handshake_failed.clear();
        drop(state);
        match previous {
            Some(p) if p == addr => {}
            Some(p) => {
                tracing::info!(server = %target, address = %addr, previous = %p, "moved to another server")
            }
            None => tracing::debug!(server = %target, address = %addr, "connected to the server"),
        }
    }

    /// Whether any server accepts a TCP connection now (closed at once:
    /// no TLS, no request), leaving out those whose TLS handshake failed
    /// in the last connect. Cheap enough to ask every second while the
    /// servers are down.
    pub async fn probe(&self) -> bool {
        let skip = self.lock().handshake_failed.clone();
        for (addr, _) in self.in_order().await {
            if skip.contains(&addr) {
                continue;
            }
            if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await {
                return true;
            }
        }
        false
    }
}

/// `items` rotated to begin at position `at` (modulo their number).
fn rotate<T>(mut items: Vec<T>, at: usize) -> Vec<T> {
    if !items.is_empty() {
        let at = at % items.len();
        items.rotate_left(at);
    }
    items
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::net::TcpListener;

    use super::*;

    fn target(port: u16) -> ServerTarget {
        ServerTarget {
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// A port nothing listens on (bound, then released).
    async fn dead_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    }

    #[test]
    fn rotation_starts_where_asked() {
        assert_eq!(rotate(vec![1, 2, 3], 0), [1, 2, 3]);
        assert_eq!(rotate(vec![1, 2, 3], 1), [2, 3, 1]);
        assert_eq!(rotate(vec![1, 2, 3], 5), [3, 1, 2]);
        assert!(rotate(Vec::<u8>::new(), 7).is_empty());
    }

    #[tokio::test]
    async fn agents_spread_and_stick_to_the_server_in_use() {
        let (a, b) = (dead_port().await, dead_port().await);
        let ports = |pool: Arc<ServerPool>| async move {
            pool.in_order()
                .await
                .iter()
                .map(|(addr, _)| addr.port())
                .collect::<Vec<_>>()
        };
        let first = ServerPool::starting_at(vec![target(a), target(b)], 0);
        assert_eq!(ports(first).await, [a, b]);
        let second = ServerPool::starting_at(vec![target(a), target(b)], 1);
        assert_eq!(ports(second.clone()).await, [b, a]);
        // Once connected to `a`, a reconnect tries `a` first.
        second.lock().current = Some(SocketAddr::from(([127, 0, 0, 1], a)));
        assert_eq!(ports(second).await, [a, b]);
    }

    #[tokio::test]
    async fn a_host_name_stands_for_every_address_it_resolves_to() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = live.local_addr().unwrap().port();
        let pool = ServerPool::starting_at(
            vec![ServerTarget {
                host: "localhost".into(),
                port,
            }],
            0,
        );
        let addrs = pool.in_order().await;
        assert!(
            addrs
                .iter()
                .any(|(a, _)| *a == SocketAddr::from(([127, 0, 0, 1], port))),
            "{addrs:?}"
        );
        assert!(addrs.iter().all(|(a, _)| a.port() == port));
        // Whichever address comes first (::1 may have none listening), the
        // listening one is found.
        for start in 0..addrs.len() {
            let pool = ServerPool::starting_at(pool.targets().to_vec(), start);
            assert!(pool.probe().await);
        }
    }

    #[tokio::test]
    async fn probes_find_a_listening_server_behind_a_dead_one() {
        let dead = dead_port().await;
        let pool = ServerPool::starting_at(vec![target(dead)], 0);
        assert!(!pool.probe().await);
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = live.local_addr().unwrap().port();
        let pool = ServerPool::starting_at(vec![target(dead), target(port)], 0);
        assert!(pool.probe().await);
    }

    #[tokio::test]
    async fn a_failed_connect_tells_down_from_handshake_failure() {
        let tls = TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        ));
        let dead = ServerPool::starting_at(vec![target(dead_port().await)], 0);
        assert_eq!(dead.reach(), Reach::Unknown);
        assert!(dead.connect(&tls).await.is_err());
        assert_eq!(dead.reach(), Reach::Unreachable);

        // A listener that accepts and hangs up: TCP works, TLS does not.
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = live.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = live.accept().await {
                drop(s);
            }
        });
        let up = ServerPool::starting_at(vec![target(port)], 0);
        let err = up.connect(&tls).await.unwrap_err();
        assert_eq!(up.reach(), Reach::HandshakeFailed);
        assert!(err.to_string().contains("TLS handshake failed"), "{err}");
        assert_eq!(up.current(), None);

        // One down, one failing TLS: the down one may come back, and only
        // it is probed (the other accepts TCP, but cannot serve).
        let both = ServerPool::starting_at(vec![target(dead_port().await), target(port)], 0);
        assert!(both.connect(&tls).await.is_err());
        assert_eq!(both.reach(), Reach::Unreachable);
        assert!(!both.probe().await);
        // Before any connect, every address is probed.
        let fresh = ServerPool::starting_at(both.targets().to_vec(), 0);
        assert!(fresh.probe().await);
    }
}
