//! Connection caps: a global maximum and a maximum per peer (a uid on a
//! Unix socket, an IP address on TCP), and the back-off that keeps an
//! accept loop from spinning when the process is out of file descriptors.
//!
//! A [`Permit`] is held by each accepted connection for as long as it
//! lives; dropping it frees the slot.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, from everyone.
    pub max_connections: usize,
    /// Connections open at once from one peer (uid or IP address).
    pub max_connections_per_peer: usize,
    /// How long a new connection may take to send its first request.
    pub first_request_timeout: Duration,
}

impl ConnectionLimits {
    /// Descriptors kept for everything but this listener's connections
    /// (files, the server connection, other listeners).
    pub const FD_RESERVE: u64 = 256;

    /// These limits with `max_connections` lowered, if need be, to what
    /// the process's open-file limit `fd_limit` leaves after
    /// [`Self::FD_RESERVE`]; so that the caps, not the kernel, turn
    /// connections away.
    pub fn within_fd_limit(self, fd_limit: Option<u64>) -> Self {
        let Some(fd_limit) = fd_limit else {
            return self;
        };
        let room = usize::try_from(fd_limit.saturating_sub(Self::FD_RESERVE))
            .unwrap_or(usize::MAX)
            .max(1);
        ConnectionLimits {
            max_connections: self.max_connections.min(room),
            ..self
        }
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener is at `max_connections`.
    Global(usize),
    /// The peer is at `max_connections_per_peer`.
    Peer(usize),
}

/// Counts open connections by peer.
#[derive(Debug)]
pub struct Limiter<K> {
    limits: ConnectionLimits,
    state: Arc<Mutex<Counts<K>>>,
}

#[derive(Debug)]
struct Counts<K> {
    total: usize,
    by_peer: HashMap<K, usize>,
}

/// A clone shares the counts (to read [`Limiter::open`] elsewhere, such as
/// for metrics).
impl<K> Clone for Limiter<K> {
    fn clone(&self) -> Self {
        Limiter {
            limits: self.limits,
            state: self.state.clone(),
        }
    }
}

/// One open connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit<K: Hash + Eq + Debug> {
    peer: K,
    state: Arc<Mutex<Counts<K>>>,
}

impl<K: Hash + Eq + Clone + Debug> Limiter<K> {
    /// A limiter enforcing `limits`.
    pub fn new(limits: ConnectionLimits) -> Self {
        Limiter {
            limits,
            state: Arc::new(Mutex::new(Counts {
                total: 0,
                by_peer: HashMap::new(),
            })),
        }
    }

    /// The limits enforced.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Takes a slot for `peer`, or says which cap it would exceed.
    pub fn admit(&self, peer: K) -> Result<Permit<K>, Refusal> {
        let mut counts = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.limits.max_connections {
            return Err(Refusal::Global(self.limits.max_connections));
        }
        let n = counts.by_peer.entry(peer.clone()).or_insert(0);
        if *n >= self.limits.max_connections_per_peer {
            return Err(Refusal::Peer(self.limits.max_connections_per_peer));
        }
        *n += 1;
        counts.total += 1;
        Ok(Permit {
            peer,
            state: self.state.clone(),
        })
    }

    /// Connections open now (all peers).
    pub fn open(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl<K: Hash + Eq + Debug> Drop for Permit<K> {
    fn drop(&mut self) {
        let mut counts = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
    }
}

/// The wait after a failed `accept`, doubling from 5 ms to 1 s while
/// failures continue (as Go's net/http server does), reset by a success.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    delay: Option<Duration>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    /// Records a successful accept.
    pub fn reset(&mut self) {
        self.delay = None;
    }

    /// The delay before the next accept after a failure.
    pub fn next_delay(&mut self) -> Duration {
        let next = match self.delay {
            None => Self::FIRST,
            Some(d) => (d * 2).min(Self::MAX),
        };
        self.delay = Some(next);
        next
    }
}

/// When a listener may log a refused connection again: at most once a
/// minute, so that a flood does not also flood the log. The messages say
/// "(logged once a minute)".
#[derive(Debug, Default)]
pub struct RefusalLog {
    last: Option<tokio::time::Instant>,
}

impl RefusalLog {
    /// How long the log stays quiet after a refusal was logged.
    pub const INTERVAL: Duration = Duration::from_secs(60);

    /// Whether this refusal is to be logged (and, if so, starts the quiet
    /// minute).
    pub fn due(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < Self::INTERVAL)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// Accept errors that concern one connection or a momentary shortage
/// (file descriptors, memory), after which the listener still works.
pub fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::OutOfMemory
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12)) // ENFILE, EMFILE, ENOBUFS, ENOMEM
}

/// Raises this process's soft limit on open files to its hard limit (as
/// the Go runtime does for SPIRE), and returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (limit.current, limit.maximum) {
        if cur < max {
            limit.current = Some(max);
            if setrlimit(Resource::Nofile, limit).is_err() {
                return Some(cur);
            }
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_peer: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: total,
            max_connections_per_peer: per_peer,
            first_request_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn caps_per_peer_and_in_total_and_frees_on_drop() {
        let limiter = Limiter::new(limits(3, 2));
        let a1 = limiter.admit(1000u32).unwrap();
        let _a2 = limiter.admit(1000).unwrap();
        assert_eq!(limiter.admit(1000).unwrap_err(), Refusal::Peer(2));
        let _b1 = limiter.admit(1001).unwrap();
        assert_eq!(limiter.admit(1002).unwrap_err(), Refusal::Global(3));
        drop(a1);
        assert_eq!(limiter.open(), 2);
        let _a3 = limiter.admit(1000).unwrap();
    }

    #[test]
    fn max_connections_fits_the_open_file_limit() {
        let l = limits(8192, 1024);
        assert_eq!(l.within_fd_limit(Some(1024)).max_connections, 768);
        assert_eq!(l.within_fd_limit(Some(1 << 20)).max_connections, 8192);
        assert_eq!(l.within_fd_limit(None), l);
        assert_eq!(l.within_fd_limit(Some(10)).max_connections, 1);
    }

    #[test]
    fn backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(5));
        assert_eq!(delays[1], Duration::from_millis(10));
        assert_eq!(delays[9], Duration::from_secs(1));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(5));
    }

    #[test]
    fn out_of_descriptors_is_transient() {
        assert!(is_transient_accept_error(&io::Error::from_raw_os_error(24)));
        assert!(is_transient_accept_error(&io::Error::from_raw_os_error(23)));
        assert!(!is_transient_accept_error(&io::Error::from_raw_os_error(9)));
    }
}
