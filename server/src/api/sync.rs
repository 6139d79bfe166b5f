//! `SyncAuthorizedEntries`, SPIRE's incremental entry sync.
//!
//! The agent opens the stream with an output mask. Up to a page of
//! entries, the server answers with all of them in one message. Beyond
//! that it sends only `(id, revision, created_at)` for every entry, in pages
//! flagged `more`, and then serves the agent's requests for the full
//! entries it lacks (each request answered in pages, the last with
//! `more = false`) until the agent closes its side.

use std::sync::Arc;

use futures::Stream;
use spinel_proto::spire::api::server::entry::v1::{
    EntryRevision, SyncAuthorizedEntriesRequest, SyncAuthorizedEntriesResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use super::authorized::AuthorizedSet;
use super::convert::entry_to_proto_masked;

type Sender = mpsc::Sender<Result<SyncAuthorizedEntriesResponse, Status>>;

/// Serves one sync exchange over `inbound`, from the agent's authorized
/// `set`.
pub fn serve(
    set: Arc<AuthorizedSet>,
    inbound: Streaming<SyncAuthorizedEntriesRequest>,
    page_size: usize,
) -> impl Stream<Item = Result<SyncAuthorizedEntriesResponse, Status>> + Send + 'static {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(status) = exchange(&set, inbound, page_size.max(1), &tx).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    ReceiverStream::new(rx)
}

async fn send(tx: &Sender, message: SyncAuthorizedEntriesResponse) -> Result<(), Status> {
    tx.send(Ok(message))
        .await
        .map_err(|_| Status::cancelled("agent went away"))
}

async fn exchange(
    set: &AuthorizedSet,
    mut inbound: Streaming<SyncAuthorizedEntriesRequest>,
    page_size: usize,
    tx: &Sender,
) -> Result<(), Status> {
    let first = inbound
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("no initial request"))?;
    if !first.ids.is_empty() {
        return Err(Status::invalid_argument(
            "specifying IDs on initial request is not supported",
        ));
    }
    if first.output_mask.is_some_and(|m| !m.revision_number) {
        return Err(Status::invalid_argument("revision number cannot be masked"));
    }
    let mask = first.output_mask;
    let entries = set.entries();
    if entries.len() <= page_size {
        return send(
            tx,
            SyncAuthorizedEntriesResponse {
                entries: entries
                    .iter()
                    .map(|e| entry_to_proto_masked(e, mask.as_ref()))
                    .collect(),
                ..Default::default()
            },
        )
        .await;
    }
    let pages: Vec<_> = entries.chunks(page_size).collect();
    let last = pages.len().saturating_sub(1);
    for (i, page) in pages.into_iter().enumerate() {
        send(
            tx,
            SyncAuthorizedEntriesResponse {
                entry_revisions: page
                    .iter()
                    .map(|e| EntryRevision {
                        id: e.id.clone(),
                        revision_number: e.revision_number,
                        created_at: e.created_at,
                    })
                    .collect(),
                entries: Vec::new(),
                more: i < last,
            },
        )
        .await?;
    }
    loop {
        let request = match inbound.message().await {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(status) if status.code() == Code::Cancelled => return Ok(()),
            Err(status) => return Err(status),
        };
        let mut page = Vec::with_capacity(page_size.min(request.ids.len()));
        for id in &request.ids {
            let Some(entry) = set.get(id) else { continue };
            if page.len() == page_size {
                send(
                    tx,
                    SyncAuthorizedEntriesResponse {
                        entries: std::mem::take(&mut page),
                        more: true,
                        ..Default::default()
                    },
                )
                .await?;
            }
            page.push(entry_to_proto_masked(entry, mask.as_ref()));
        }
        send(
            tx,
            SyncAuthorizedEntriesResponse {
                entries: page,
                more: false,
                ..Default::default()
            },
        )
        .await?;
    }
}
