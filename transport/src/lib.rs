//! The connections `spinel-server` and `spinel-agent` serve on.
//!
//! - [`http2`]: [`Http2Guard`], which reads a client's HTTP/2 frames before
//!   the gRPC server does: it repairs the `:authority` that C-core and
//!   grpc-java clients send on Unix sockets (which `h2` would refuse) and
//!   closes connections that send no request in time.
//! - [`hpack`]: the HPACK decoder and literal encoder the guard uses.
//! - [`unix`]: the accept loop of every Unix-socket gRPC listener: peer
//!   credentials read at accept, caps per uid, the guard.
//! - [`limits`]: connection caps (in total and per peer), accept back-off,
//!   and raising the open-file limit.
//! - [`process`]: [`ProcessHandle`], the caller's process pinned at connect
//!   (pidfd), so that a reused PID never inherits its identity.
//! - [`tcp`]: the accept loop of every TCP listener: caps in total and per
//!   source address, accept back-off.
//! - [`health_http`]: the HTTP health listener (`health_checks`) of both
//!   binaries.
//! - [`plain_http`]: the small HTTP/1.1 server (limits, timeouts) of the
//!   health and metrics listeners.
//! - [`server`]: the HTTP/2 settings every gRPC listener shares.
//! - [`delegate`]: `AsyncRead`/`AsyncWrite` of connection wrappers,
//!   delegated to the stream they hold ([`delegate_io!`]).
//! - [`unix_socket`]: binding Unix sockets with their mode from the start,
//!   in directories no other user can change; connecting only to sockets
//!   of the invoking user or root.

pub mod delegate;
pub mod health_http;
pub mod hpack;
pub mod http2;
pub mod limits;
pub mod plain_http;
pub mod process;
pub mod server;
pub mod tcp;
pub mod unix;
pub mod unix_socket;

pub use http2::{GuardOptions, Http2Guard};
pub use limits::{ConnectionLimits, Limiter, Permit};
pub use process::ProcessHandle;
pub use unix::{UnixConnection, UnixPeer};
