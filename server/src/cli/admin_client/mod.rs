//! The admin subcommands' side of the server API: a gRPC channel over the
//! server's admin Unix socket, the flags every subcommand shares
//! (`-socketPath`, `-output`), value parsers that refuse bad flag values
//! before any connection is made, and the one error type.
//!
//! The socket is the admin boundary: whoever can open it is an
//! administrator, so the channel carries no credentials. For the same
//! reason the client talks only to a socket owned by the invoking user or
//! root and served by a process running as one of them: a socket another
//! user planted at the path (say in a `/tmp` directory they created first)
//! would otherwise receive the operator's commands and answer them.

mod args;
mod error;
#[cfg(test)]
pub(crate) mod test_support;

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use spinel_transport::unix_socket;
use tonic::transport::{Channel, Endpoint};

pub use args::{
    id_from_proto, id_to_proto, parse_dns_name, parse_go_bool, parse_match, parse_selector,
    parse_spiffe_id, parse_td, parse_ttl, parse_unix_seconds, AdminArgs, MatchOn, OutputFormat,
};
pub use error::{AdminClientError, GoCode};

/// The admin socket the server listens on unless configured otherwise
/// (one constant, the config's: SPIRE's path with `spinel-server`).
pub use crate::config::DEFAULT_SOCKET_PATH;

/// How long to wait for the socket to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the server's admin API on the Unix socket at `path`.
///
/// The connection is made now, so that a missing socket, a server that is
/// not running and a permission problem are each reported by name, with the
/// path.
pub async fn connect_admin(path: &Path) -> Result<Channel, AdminClientError> {
    let owned: PathBuf = args::resolve_socket_path(path);
    let path = owned.as_path();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(AdminClientError::SocketMissing { path: owned });
        }
        Err(e) => return Err(classify(&owned, &e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(AdminClientError::NotASocket { path: owned });
        }
        Ok(meta) => unix_socket::check_owner(path, &meta)
            .map_err(|e| AdminClientError::Untrusted(e.to_string()))?,
    }
    // The URI is required by tonic but never resolved: the connector below
    // always dials the socket.
    let endpoint = Endpoint::from_static("http://localhost").connect_timeout(CONNECT_TIMEOUT);
    let dial_path = owned.clone();
    let connector = tower::service_fn(move |_uri: tonic::transport::Uri| {
        let dial_path = dial_path.clone();
        async move {
            let stream = unix_socket::connect(&dial_path).await?;
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| match (unix_socket::untrusted(&e), find_io_error(&e)) {
            (Some(refusal), _) => AdminClientError::Untrusted(refusal.to_string()),
            (None, Some(io_err)) => classify(&owned, io_err),
            (None, None) => AdminClientError::Connect {
                path: owned.clone(),
                reason: error_chain(&e),
            },
        })
}

/// Names the usual connection failures.
fn classify(path: &Path, e: &io::Error) -> AdminClientError {
    let path = path.to_owned();
    match e.kind() {
        io::ErrorKind::NotFound => AdminClientError::SocketMissing { path },
        io::ErrorKind::ConnectionRefused => AdminClientError::ConnectionRefused { path },
        io::ErrorKind::PermissionDenied => AdminClientError::PermissionDenied { path },
        _ => AdminClientError::Connect {
            path,
            reason: e.to_string(),
        },
    }
}

/// The first `io::Error` in `e`'s source chain.
fn find_io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(io_err) = err.downcast_ref::<io::Error>() {
            return Some(io_err);
        }
        current = err.source();
    }
    None
}

/// `e` and its sources, joined with `": "`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut current = e.source();
    while let Some(err) = current {
        let text = err.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let err = connect_admin(&path).await.unwrap_err();
        assert!(matches!(err, AdminClientError::SocketMissing { .. }));
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("no such file"), "{text}");
    }

    #[tokio::test]
    async fn regular_file_is_not_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        std::fs::write(&path, b"").unwrap();
        let err = connect_admin(&path).await.unwrap_err();
        assert!(matches!(err, AdminClientError::NotASocket { .. }), "{err}");
    }

    #[tokio::test]
    async fn stale_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        // Bind then drop the listener: the socket file stays, nobody listens.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = connect_admin(&path).await.unwrap_err();
        assert!(
            matches!(err, AdminClientError::ConnectionRefused { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("connection refused"));
    }

    #[tokio::test]
    async fn listening_socket_connects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let accept = tokio::spawn(async move {
            // Hold the connection open until the client is done.
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(stream);
        });
        connect_admin(&path).await.unwrap();
        accept.await.unwrap();
    }

    #[test]
    fn rpc_errors_read_like_spire() {
        let err = AdminClientError::rpc_while(
            "error fetching entries",
            tonic::Status::not_found("no such entry"),
        );
        assert_eq!(
            err.to_string(),
            "error fetching entries: rpc error: code = NotFound desc = no such entry"
        );
        assert_eq!(GoCode(tonic::Code::Cancelled).to_string(), "Canceled");
    }
}
