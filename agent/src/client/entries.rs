//! Incremental entry sync with SPIRE's `SyncAuthorizedEntries`.
//!
//! The agent opens the stream; a small set comes back whole in one
//! message. A large one comes back as `(id, revision)` pages first: the
//! agent then asks only for the entries it does not already hold at that
//! revision, and closes. An agent with 10,000 entries of which one changed
//! downloads one entry, not 10,000. The IDs are asked for
//! [`IDS_PER_REQUEST`] at a time, so no message nears the gRPC limit at
//! any number of entries. The server still decides what the
//! agent may see (it answers only for authorized IDs), so this changes
//! nothing about invariant 2.

use std::collections::HashMap;

use spinel_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use spinel_proto::spire::api::server::entry::v1::{
    SyncAuthorizedEntriesRequest, SyncAuthorizedEntriesResponse,
};
use spinel_proto::spire::api::types;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// Entry IDs per request for full entries: ~38 bytes each on the wire (a
/// UUID), ~38 KB a request, whatever the number of entries.
const IDS_PER_REQUEST: usize = 1_000;

/// The outcome of one sync, in the server's order.
#[derive(Debug, Default)]
pub struct SyncedEntries {
    /// Entries the server sent in full (new or changed).
    pub changed: Vec<types::Entry>,
    /// IDs of authorized entries the agent already holds at the current
    /// revision.
    pub unchanged: Vec<String>,
}

async fn next(
    inbound: &mut Streaming<SyncAuthorizedEntriesResponse>,
) -> Result<SyncAuthorizedEntriesResponse, Status> {
    inbound
        .message()
        .await?
        .ok_or_else(|| Status::unavailable("the server ended the entry sync early"))
}

/// Syncs the authorized entries over `channel`, given the revision of each
/// entry the agent holds (`known`: entry ID to revision number).
pub async fn sync_authorized_entries(
    channel: Channel,
    known: &HashMap<String, i64>,
) -> Result<SyncedEntries, Status> {
    let (tx, rx) = mpsc::channel(2);
    tx.send(SyncAuthorizedEntriesRequest::default())
        .await
        .map_err(|_| Status::internal("the sync request stream closed"))?;
    let mut inbound = EntryClient::new(channel)
        .sync_authorized_entries(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = next(&mut inbound).await?;
    if first.entry_revisions.is_empty() {
        // Small set: everything in one message.
        return Ok(SyncedEntries {
            changed: first.entries,
            unchanged: Vec::new(),
        });
    }
    let mut out = SyncedEntries::default();
    let mut wanted = Vec::new();
    let mut page = first;
    loop {
        for r in &page.entry_revisions {
            if known.get(&r.id) == Some(&r.revision_number) {
                out.unchanged.push(r.id.clone());
            } else {
                wanted.push(r.id.clone());
            }
        }
        if !page.more {
            break;
        }
        page = next(&mut inbound).await?;
    }
    // The IDs are asked for in several requests, each answered in pages
    // ending with `more = false`: one request of 100,000 IDs would be
    // ~3.8 MB, at the 4 MiB gRPC limit.
    for ids in wanted.chunks(IDS_PER_REQUEST) {
        tx.send(SyncAuthorizedEntriesRequest {
            ids: ids.to_vec(),
            output_mask: None,
        })
        .await
        .map_err(|_| Status::unavailable("the server closed the entry sync"))?;
        loop {
            let page = next(&mut inbound).await?;
            out.changed.extend(page.entries);
            if !page.more {
                break;
            }
        }
    }
    // Closing our side ends the exchange.
    drop(tx);
    Ok(out)
}
