//! The agent's memory with many Envoy SDS streams open: `sds-rss`.
//!
//! The setup of `streams.rs` (one server, one agent, `--entries` entries
//! of which `--matching` select this process's uid); then `--streams`
//! `StreamSecrets` calls over `--connections` connections (default: one
//! each, as separate Envoys would open them; one Envoy multiplexes its
//! secrets over one connection), each asking for `default` and `ROOTCA` (what an Envoy
//! sidecar asks), reading the first response and ACKing it. The agent's
//! RSS is read with them open and after they close. Works against SPIRE's
//! agent too (`--impl spire`), which serves SDS on its Workload API socket.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use spinel_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use spinel_proto::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::args::Flags;
use crate::stats::{result, Better};
use crate::streams::{channel, rss_mib, Setup};
use crate::system::System;

const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// One open stream: the request side (kept open) and the responses.
type Open = (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>);

fn request(version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.into(),
        resource_names: vec!["default".into(), "ROOTCA".into()],
        type_url: SECRET_TYPE.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

/// Opens one `StreamSecrets` on `channel`, reads its first response and
/// ACKs it.
async fn open(channel: Channel) -> Result<(Open, DiscoveryResponse)> {
    let mut client = SecretDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(4);
    tx.send(request("", "")).await?;
    let mut responses = client
        .stream_secrets(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = responses
        .message()
        .await?
        .context("the stream ended before its first response")?;
    tx.send(request(&first.version_info, &first.nonce)).await?;
    Ok(((tx, responses), first))
}

/// `sds-rss --entries N --matching M --streams S [--connections C] --settle SECS`.
pub async fn rss(mut flags: Flags) -> Result<()> {
    let entries = flags.number("entries", 1_000, 1)?;
    let matching = flags.number("matching", 1, 1)?;
    let streams = flags.number("streams", 500, 1)?;
    let connections = flags.number("connections", streams, 1)?.min(streams);
    let settle = flags.number("settle", 12, 0)?;
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    let setup = tokio::task::block_in_place(|| Setup::start(&system, entries, matching))?;
    setup.wait_served(matching).await?;
    let socket = setup.agent.socket_path().to_owned();
    let start = rss_mib(setup.pid)?;
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(channel(&socket).await?);
    }
    let mut held = Vec::with_capacity(streams);
    for i in 0..streams {
        let (stream, first) = open(channels[i % connections].clone()).await?;
        if first.resources.len() != 2 {
            bail!(
                "expected 2 resources (default, ROOTCA), got {}",
                first.resources.len()
            );
        }
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = rss_mib(setup.pid)?;
    drop(held);
    drop(channels);
    tokio::time::sleep(Duration::from_secs(settle as u64)).await;
    let after = rss_mib(setup.pid)?;
    println!(
        "sds-rss: {entries} SVIDs, {matching} per caller, {streams} StreamSecrets (default, ROOTCA) \
         over {connections} connections: agent RSS before {start:.1} MiB, open {with:.1} MiB, \
         closed {after:.1} MiB"
    );
    result("idle_mib", start, "MiB", Better::Lower);
    result("open_mib", with, "MiB", Better::Lower);
    result("after_close_mib", after, "MiB", Better::Lower);
    Ok(())
}
