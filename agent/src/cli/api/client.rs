//! The Workload API client of the `api` commands: gRPC over the Unix
//! socket, every call carrying the `workload.spiffe.io: true` header.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{bail, Context as _};
use hyper_util::rt::TokioIo;
use spinel_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status};

use crate::cli::DEFAULT_SOCKET_PATH;
use crate::workload_api::SECURITY_HEADER;

/// The environment variable SPIFFE clients read the socket address from.
pub const ENDPOINT_SOCKET_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// A connected Workload API client.
pub(crate) type Client = SpiffeWorkloadApiClient<
    InterceptedService<Channel, fn(Request<()>) -> Result<Request<()>, Status>>,
>;

/// The socket to use: `-socketPath`, else `SPIFFE_ENDPOINT_SOCKET`
/// (`unix:///path`), else the default (SPIRE's default path when only that
/// one exists: [`default_socket_path`](crate::cli::default_socket_path)).
pub(crate) fn socket_path(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    match std::env::var(ENDPOINT_SOCKET_ENV) {
        Ok(v) if !v.is_empty() => socket_from_endpoint(&v),
        _ => Ok(crate::cli::default_socket_path(Path::new(
            DEFAULT_SOCKET_PATH,
        ))),
    }
}

/// The path of a `unix:` endpoint address (`unix:///p` or `unix:/p`).
pub(crate) fn socket_from_endpoint(addr: &str) -> anyhow::Result<PathBuf> {
    let Some(rest) = addr.strip_prefix("unix:") else {
        bail!("{ENDPOINT_SOCKET_ENV}={addr:?}: only unix:///path addresses are supported");
    };
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if !path.starts_with('/') {
        bail!("{ENDPOINT_SOCKET_ENV}={addr:?}: the socket path must be absolute");
    }
    Ok(PathBuf::from(path))
}

fn add_header(mut request: Request<()>) -> Result<Request<()>, Status> {
    request
        .metadata_mut()
        .insert(SECURITY_HEADER, MetadataValue::from_static("true"));
    Ok(request)
}

/// A gRPC channel over the Unix socket `socket`; `what` names the API in
/// errors.
pub(crate) async fn unix_channel(
    socket: &Path,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<Channel> {
    // The URI is required by tonic but unused: the connector dials the socket.
    let endpoint = Endpoint::from_static("http://localhost").connect_timeout(timeout);
    endpoint
        .connect_with_connector(UnixConnector(socket.to_owned()))
        .await
        .with_context(|| format!("connecting to the {what} at {}", socket.display()))
}

/// Connects to the Workload API at `socket`.
pub(crate) async fn connect(socket: &Path, timeout: Duration) -> anyhow::Result<Client> {
    let channel = unix_channel(socket, timeout, "Workload API").await?;
    let interceptor: fn(Request<()>) -> Result<Request<()>, Status> = add_header;
    Ok(SpiffeWorkloadApiClient::with_interceptor(
        channel,
        interceptor,
    ))
}

/// Dials a Unix socket for tonic.
#[derive(Debug, Clone)]
struct UnixConnector(PathBuf);

impl tower::Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) })
    }
}

/// Runs `call` with a deadline, naming what timed out.
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    what: &str,
    call: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => bail!("{what}: no response within {timeout:?}"),
    }
}

/// An error message for a failed call, as SPIRE's CLI words them.
pub(crate) fn status_error(what: &str, status: &Status) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}: rpc error: code = {:?} desc = {}",
        status.code(),
        status.message()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_addresses() {
        assert_eq!(
            socket_from_endpoint("unix:///tmp/a.sock").unwrap(),
            PathBuf::from("/tmp/a.sock")
        );
        assert_eq!(
            socket_from_endpoint("unix:/tmp/a.sock").unwrap(),
            PathBuf::from("/tmp/a.sock")
        );
        assert!(socket_from_endpoint("tcp://127.0.0.1:1").is_err());
        assert!(socket_from_endpoint("unix://relative").is_err());
        assert_eq!(
            socket_path(Some(Path::new("/x"))).unwrap(),
            PathBuf::from("/x")
        );
    }
}
