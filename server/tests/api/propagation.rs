//! Incremental entry sync (`SyncAuthorizedEntries`) over real mTLS: with
//! 10,000 authorized entries (the figure) and one changed, the second sync re-sends one
//! entry; an entry the agent is not authorized for never arrives, even when
//! asked for by ID (invariant 2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use crate::support::{attest, id, TestServer};
use spinel_proto::spire::api::server::entry::v1::{
    entry_client::EntryClient, BatchCreateEntryRequest, BatchUpdateEntryRequest,
    SyncAuthorizedEntriesRequest, SyncAuthorizedEntriesResponse,
};
use spinel_proto::spire::api::types;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const COUNT: usize = 10_000;

/// One sync as an agent does it: revisions first, then the entries whose
/// revision differs from `known` (plus `extra` IDs). Returns every
/// revision listed and every entry sent in full.
async fn sync(
    channel: Channel,
    known: &HashMap<String, i64>,
    extra: &[String],
) -> (HashMap<String, i64>, Vec<types::Entry>) {
    let (tx, rx) = mpsc::channel(2);
    tx.send(SyncAuthorizedEntriesRequest::default())
        .await
        .unwrap();
    let mut inbound = EntryClient::new(channel)
        .sync_authorized_entries(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut revisions = HashMap::new();
    loop {
        let page: SyncAuthorizedEntriesResponse = inbound.message().await.unwrap().unwrap();
        assert!(
            page.entries.is_empty(),
            "a large set starts with revisions only"
        );
        for r in page.entry_revisions {
            revisions.insert(r.id, r.revision_number);
        }
        if !page.more {
            break;
        }
    }
    let mut wanted: Vec<String> = revisions
        .iter()
        .filter(|(id, rev)| known.get(*id) != Some(rev))
        .map(|(id, _)| id.clone())
        .collect();
    wanted.extend(extra.iter().cloned());
    let mut sent = Vec::new();
    tx.send(SyncAuthorizedEntriesRequest {
        ids: wanted,
        output_mask: None,
    })
    .await
    .unwrap();
    loop {
        let page = inbound.message().await.unwrap().unwrap();
        sent.extend(page.entries);
        if !page.more {
            break;
        }
    }
    drop(tx);
    (revisions, sent)
}

fn entry(parent: &str, n: usize) -> types::Entry {
    types::Entry {
        parent_id: Some(id(parent)),
        spiffe_id: Some(id(&format!("spiffe://example.org/w/{n}"))),
        selectors: vec![types::Selector {
            r#type: "unix".into(),
            value: format!("uid:{n}"),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_entry_is_the_only_one_resent() {
    let server = TestServer::start().await;
    let token = server.token(None).await;
    let agent = attest(&server, &token).await.unwrap();
    let other_token = server.token(None).await;
    let other = attest(&server, &other_token).await.unwrap();

    let mut admin = server.entries().await;
    for chunk in (0..COUNT).collect::<Vec<_>>().chunks(500) {
        let response = admin
            .batch_create_entry(BatchCreateEntryRequest {
                entries: chunk.iter().map(|&n| entry(&agent.id, n)).collect(),
                output_mask: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(response
            .results
            .iter()
            .all(|r| r.status.as_ref().unwrap().code == 0));
    }
    let denied_id = server
        .create_entry(&other.id, "spiffe://example.org/denied", "unix:uid:9", &[])
        .await;

    let channel = agent.channel(&server).await;
    let (revisions, first) = sync(channel.clone(), &HashMap::new(), &[]).await;
    assert_eq!(revisions.len(), COUNT);
    assert_eq!(first.len(), COUNT, "the first sync downloads everything");
    assert!(!revisions.contains_key(&denied_id));

    // Change one entry.
    let mut changed = first[17].clone();
    changed.hint = "changed".into();
    let response = admin
        .batch_update_entry(BatchUpdateEntryRequest {
            entries: vec![changed.clone()],
            input_mask: Some(types::EntryMask {
                hint: true,
                ..Default::default()
            }),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results[0].status.as_ref().unwrap().code, 0);

    let known: HashMap<String, i64> = first
        .iter()
        .map(|e| (e.id.clone(), e.revision_number))
        .collect();
    // Also ask, by ID, for an entry of another agent: it must not come.
    let (revisions, second) = sync(channel, &known, std::slice::from_ref(&denied_id)).await;
    assert_eq!(revisions.len(), COUNT);
    assert_eq!(second.len(), 1, "only the changed entry is re-sent");
    assert_eq!(second[0].id, changed.id);
    assert_eq!(second[0].hint, "changed");
    assert!(second[0].revision_number > known[&changed.id]);
    assert!(second.iter().all(|e| e.id != denied_id));
}
