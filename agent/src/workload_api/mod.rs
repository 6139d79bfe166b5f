//! The SPIFFE Workload API, served on the agent's Unix socket.
//!
//! Any local process may connect (the socket is mode 0777, like SPIRE's);
//! what it gets depends on who it is. For every call:
//!
//! 1. the call must carry the metadata `workload.spiffe.io: true`, exactly
//!    once, or it is refused with `InvalidArgument`;
//! 2. the agent must have synced with its server, or the call is refused
//!    with `Unavailable`;
//! 3. the caller's pid, uid and gid are taken from the socket
//!    (`SO_PEERCRED`) and the [`WorkloadAttestor`] turns them into
//!    selectors;
//! 4. the cache entries whose selectors are all among them are the caller's
//!    identities; none is `PermissionDenied` ("no identity issued"), logged
//!    at info with the caller's selectors and, for the entries closest to
//!    matching, the selectors it lacks (values redacted outside
//!    `log_selectors`: see [`SelectorLog`]).
//!
//! Streams (`FetchX509SVID`, `FetchX509Bundles`, `FetchJWTBundles`) send the
//! full state at once, then again whenever a cache change alters what this
//! caller gets; the caller is attested again on every change. An X509-SVID
//! is never served past its NotAfter. `FetchJWTSVID` asks the
//! [`JwtSvidSource`] for tokens; `ValidateJWTSVID` checks a token against
//! the bundles the caller may use. WIT-SVID methods are not declared and are
//! answered `Unimplemented` by the gRPC router.
//!
//! The same socket serves `grpc.health.v1.Health`: `SERVING` once the cache
//! is ready (what `spinel-agent healthcheck` asks), and Envoy's Secret
//! Discovery Service (`sds/`: the same callers, identities and bundles as
//! xDS secrets, SPIRE's resource names).
//!
//! One `FetchX509SVID`, file by file: `service.rs` takes the call;
//! `caller.rs` checks the header and reads the peer credentials; `state.rs`
//! (`Shared::view`) attests the caller and matches it against the cache
//! snapshot (through `index.rs`: the snapshot's identities by selector);
//! `response.rs` builds the message from that view, or finds it in
//! `shared.rs` (one encoded X509-SVID response per snapshot and identity
//! set, shared by every call and stream that gets that set); `stream.rs`
//! sends it (through `route.rs`, which answers `FetchX509SVID` in front of
//! the generated service so that the encoded bytes are shared too), then waits for cache changes (or the next SVID expiry) and sends
//! again whenever the message changes. `explain.rs` says which entries came
//! closest when a caller gets nothing (denial logs, debug API); `health.rs`
//! is the health service.
//!
//! Imports go one way: `route` → `service` → `stream`, `response` →
//! `state` → `caller` → `explain`; `state` → `index`; `response`, `state`
//! → `shared`; `sds/` → `state`, `caller`, `service`, `shared`, and
//! `service` → `sds/config.rs` alone
//! (checked by the manager's import-graph test).

mod caller;
mod explain;
mod health;
mod index;
mod response;
mod route;
mod sds;
mod service;
mod shared;
mod state;
mod stream;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use spinel_proto::grpc::health::v1::health_server::HealthServer;
use spinel_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use spinel_spiffe::Clock;
use spinel_transport::unix_socket::{self, BindError, SocketModes};
use spinel_transport::ConnectionLimits;
use tokio::net::UnixListener;

use crate::attestor::workload::WorkloadAttestor;
use crate::cache::{Cache, JwtSvidSource};

pub use caller::SECURITY_HEADER;
pub use explain::{explain, EntryMatch, Explanation, SelectorLog, DEFAULT_LOG_SELECTORS};
pub use sds::{SdsConfig, SecretDiscovery};
pub use service::WorkloadApi;
pub use stream::Updates;

/// The gRPC health service of the agent's sockets: `SERVING` once `cache`
/// is ready.
pub(crate) fn health_service(cache: Cache) -> health::HealthService {
    health::HealthService::new(cache)
}

/// Why the Workload API could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket's directory could not be created.
    #[error("creating the directory of the Workload API socket {path}: {source}")]
    CreateDir {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The socket's directory is one another user can change.
    #[error("socket {path}: {source}")]
    Untrusted {
        /// The socket path.
        path: PathBuf,
        /// What is wrong with the directory.
        #[source]
        source: spinel_spiffe::trusted_dir::UntrustedDir,
    },
    /// Something other than a socket is in the way.
    #[error("Workload API socket path {path} exists and is not a socket")]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket could not be bound.
    #[error("binding the Workload API socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The gRPC server failed.
    #[error("serving the Workload API on {path}: {source}")]
    Serve {
        /// The socket path.
        path: PathBuf,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

/// The Workload API socket's connection limits when the config sets none
/// (`agent.connection_limits`): in total, per uid, and how long a new
/// connection may stay silent before its first request.
pub const DEFAULT_LIMITS: ConnectionLimits = ConnectionLimits {
    max_connections: 8192,
    max_connections_per_peer: 1024,
    first_request_timeout: std::time::Duration::from_secs(10),
};

/// Serves the Workload API (and gRPC health) on `socket_path` until
/// `shutdown` completes, then removes the socket.
pub async fn serve(
    socket_path: &Path,
    cache: Cache,
    jwt: Arc<dyn JwtSvidSource>,
    attestor: Arc<dyn WorkloadAttestor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let api = WorkloadApi::new(cache, jwt, attestor, Clock::system());
    serve_api(socket_path, api, DEFAULT_LIMITS, shutdown).await
}

/// [`serve`] with a service built by the caller (e.g. with a test clock)
/// and the given connection limits. On `shutdown`, open streams end with
/// `Unavailable` so that the server can stop gracefully.
pub async fn serve_api(
    socket_path: &Path,
    api: WorkloadApi,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = bind(socket_path)?;
    tracing::info!(socket = %socket_path.display(), "serving the Workload API");
    let health = HealthServer::new(health::HealthService::new(api.cache().clone()));
    let sds = SecretDiscovery::new(&api);
    let stopper = api.clone();
    let signal = async move {
        shutdown.await;
        stopper.stop();
    };
    let (open, incoming) =
        spinel_transport::unix::incoming_counted(listener, limits, "the Workload API socket");
    let incoming = crate::metrics::count_workload_connections(open, incoming);
    let result = spinel_transport::server::builder(false)
        .layer(crate::metrics::metrics().rpc.layer())
        .add_service(route::Routes::new(
            api.clone(),
            SpiffeWorkloadApiServer::new(api),
        ))
        .add_service(sds)
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    if let Err(e) = std::fs::remove_file(socket_path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(socket = %socket_path.display(), error = %e, "could not remove the Workload API socket");
        }
    }
    result.map_err(|source| Error::Serve {
        path: socket_path.to_owned(),
        source,
    })
}

/// Binds the Workload API socket, open to every local user (mode 0777
/// from the start; see [`spinel_transport::unix_socket`]): creates its
/// directory (0755) when missing, refuses one another user can change, and
/// replaces a stale socket.
pub fn bind(socket_path: &Path) -> Result<UnixListener, Error> {
    bind_with(socket_path, SocketModes::WORKLOAD_API)
}

/// [`bind`] with other modes (the admin socket's).
pub(crate) fn bind_with(socket_path: &Path, modes: SocketModes) -> Result<UnixListener, Error> {
    let path = socket_path.to_owned();
    unix_socket::bind(socket_path, modes).map_err(|e| match e {
        BindError::CreateDir { source, .. } => Error::CreateDir { path, source },
        BindError::Untrusted { source, .. } => Error::Untrusted { path, source },
        BindError::NotASocket { .. } => Error::NotASocket { path },
        BindError::Bind { source, .. } => Error::Bind { path, source },
        other => Error::Bind {
            path,
            source: io::Error::other(other.to_string()),
        },
    })
}
