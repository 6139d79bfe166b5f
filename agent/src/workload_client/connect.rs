//! gRPC over a local Unix socket: the Workload API client ([`connect`],
//! every call carrying the `workload.spiffe.io: true` header) and the bare
//! channel the admin-socket commands use ([`unix_channel`]). Only a socket
//! owned by the invoking user or root, served by a process running as one
//! of them, is dialled.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{bail, Context as _};
use hyper_util::rt::TokioIo;
use spinel_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spinel_transport::unix_socket;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status};

use crate::workload_api::SECURITY_HEADER;

/// A connected Workload API client.
pub(crate) type Client = SpiffeWorkloadApiClient<
    InterceptedService<Channel, fn(Request<()>) -> Result<Request<()>, Status>>,
>;

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
        .map_err(connect_error)
        .with_context(|| format!("connecting to the {what} at {}", socket.display()))
}

/// A failed connection as an error: a refused socket of another user by
/// its refusal alone (which says everything), anything else as it is.
pub(crate) fn connect_error(e: tonic::transport::Error) -> anyhow::Error {
    match unix_socket::untrusted(&e) {
        Some(refusal) => anyhow::anyhow!("{refusal}"),
        None => e.into(),
    }
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

/// Dials a Unix socket for tonic, only when it belongs to the invoking
/// user or root (see [`unix_socket::connect`]): a socket another user
/// planted at the path is refused before anything is sent.
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
        Box::pin(async move { Ok(TokioIo::new(unix_socket::connect(&path).await?)) })
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
