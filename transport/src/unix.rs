//! Serving gRPC on a Unix socket: the accept loop every Unix-socket
//! listener of both binaries uses (the agent's Workload API and admin
//! sockets, the server's admin socket).
//!
//! For each connection, at accept:
//!
//! - the caller's credentials are read from the socket (`SO_PEERCRED`):
//!   they, never anything the client sends, identify the caller
//!   ([`UnixPeer`], the connection's tonic `ConnectInfo`), and its process
//!   is pinned ([`ProcessHandle`]) so that a later call on the connection
//!   can tell whether the PID still names that process;
//! - the caps are applied ([`ConnectionLimits`]: in total and per uid); a
//!   connection over a cap is closed at once and the refusal logged (at
//!   most once a minute per listener);
//! - the connection is wrapped in an [`Http2Guard`] that repairs
//!   `:authority` (any value a client stack sends is accepted) and closes
//!   it if no request arrives within the first-request timeout.
//!
//! Accept errors that concern one connection or a shortage of file
//! descriptors are retried after a growing pause ([`AcceptBackoff`]),
//! never in a tight loop; any other error ends the stream.

use std::io;

use futures::Stream;
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::server::Connected;

use crate::http2::{GuardOptions, Http2Guard};
use crate::limits::{
    is_transient_accept_error, AcceptBackoff, ConnectionLimits, Limiter, Permit, Refusal,
    RefusalLog,
};
use crate::process::{Pinned, ProcessHandle};

/// The caller of a Unix-socket connection, as the kernel reported it at
/// accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixPeer {
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
    /// Process ID, when the kernel reports one (it does on Linux).
    pub pid: Option<i32>,
    /// The process that connected, pinned at connect (or, before Linux
    /// 6.5, at accept); `None` where the kernel has no pidfds.
    pub process: Option<ProcessHandle>,
}

/// An accepted Unix-socket connection, guarded and counted.
#[derive(Debug)]
pub struct UnixConnection {
    io: Http2Guard<UnixStream>,
    peer: UnixPeer,
    _permit: Permit<u32>,
}

impl UnixConnection {
    /// The caller.
    pub fn peer(&self) -> &UnixPeer {
        &self.peer
    }
}

impl Connected for UnixConnection {
    type ConnectInfo = UnixPeer;

    fn connect_info(&self) -> UnixPeer {
        self.peer.clone()
    }
}

/// Accepts connections on `listener` (named `what` in logs) under
/// `limits`. See the module documentation.
pub fn incoming(
    listener: UnixListener,
    limits: ConnectionLimits,
    what: &'static str,
) -> impl Stream<Item = io::Result<UnixConnection>> {
    incoming_counted(listener, limits, what).1
}

/// [`incoming`], with the limiter that counts its open connections (a
/// clone: [`Limiter::open`] reads them, for metrics).
pub fn incoming_counted(
    listener: UnixListener,
    limits: ConnectionLimits,
    what: &'static str,
) -> (Limiter<u32>, impl Stream<Item = io::Result<UnixConnection>>) {
    let limiter = Limiter::new(limits);
    let state = Accepting {
        listener,
        limiter: limiter.clone(),
        backoff: AcceptBackoff::default(),
        refusal_log: RefusalLog::default(),
        warned_pin: false,
        what,
    };
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        match state.next().await {
            Ok(conn) => Some((Ok(conn), Some(state))),
            Err(e) => Some((Err(e), None)),
        }
    });
    (limiter, stream)
}

struct Accepting {
    listener: UnixListener,
    limiter: Limiter<u32>,
    backoff: AcceptBackoff,
    refusal_log: RefusalLog,
    warned_pin: bool,
    what: &'static str,
}

impl Accepting {
    async fn next(&mut self) -> io::Result<UnixConnection> {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => {
                    self.backoff.reset();
                    stream
                }
                Err(e) if is_transient_accept_error(&e) => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(listener = self.what, error = %e, retry_in = ?delay, "accept failed; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(listener = self.what, error = %e, "the listener failed");
                    return Err(e);
                }
            };
            let cred = match stream.peer_cred() {
                Ok(cred) => cred,
                Err(e) => {
                    tracing::debug!(listener = self.what, error = %e, "closing a connection whose credentials cannot be read");
                    continue;
                }
            };
            let permit = match self.limiter.admit(cred.uid()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    self.log_refusal(cred.uid(), cred.pid(), refusal);
                    continue;
                }
            };
            let process = match ProcessHandle::of_peer(&stream, cred.pid()) {
                Some((handle, pinned)) => {
                    if pinned == Pinned::AtAccept && !self.warned_pin {
                        self.warned_pin = true;
                        tracing::warn!(listener = self.what, "this kernel has no SO_PEERPIDFD (Linux 6.5): callers are pinned by pidfd_open at accept");
                    }
                    Some(handle)
                }
                None => {
                    if !self.warned_pin {
                        self.warned_pin = true;
                        tracing::warn!(listener = self.what, "this kernel has no pidfds (Linux 5.3): a caller's process cannot be pinned, and a reused PID could pass for it");
                    }
                    None
                }
            };
            let peer = UnixPeer {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
                process,
            };
            let limits = self.limiter.limits();
            let io = Http2Guard::new(
                stream,
                GuardOptions {
                    repair_authority: true,
                    first_request_deadline: Some(limits.first_request_timeout),
                },
            );
            return Ok(UnixConnection {
                io,
                peer,
                _permit: permit,
            });
        }
    }

    fn log_refusal(&mut self, uid: u32, pid: Option<i32>, refusal: Refusal) {
        if !self.refusal_log.due() {
            return;
        }
        match refusal {
            Refusal::Global(max) => tracing::warn!(
                listener = self.what,
                max_connections = max,
                "connection limit reached; closing new connections (logged once a minute)"
            ),
            Refusal::Peer(max) => tracing::warn!(
                listener = self.what,
                uid,
                pid = ?pid,
                max_connections_per_uid = max,
                "per-user connection limit reached; closing this user's new connections (logged once a minute)"
            ),
        }
    }
}

crate::delegate_io!(UnixConnection, io);
