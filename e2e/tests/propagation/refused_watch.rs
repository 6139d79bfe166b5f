//! An open `spinel.server.v1.Watch/WatchChanges` stream ends with
//! `PermissionDenied` (and the `spinel-agent-refusal` reason) when its
//! agent is banned or evicted through the CLI, against a real
//! `spinel-server` process. The watching agent is a raw tonic client
//! holding an agent SVID.
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::Duration;

use crate::support::raw_agent;
use spinel_proto::refusal::AgentRefusal;
use spinel_proto::spinel::server::v1::watch_client::WatchClient;
use spinel_proto::spinel::server::v1::{Changes, WatchChangesRequest};
use spinel_test_fixtures::{ServerHandle, ServerOptions};
use tonic::{Code, Status, Streaming};

/// A failure guard, not a measurement: the stream must end long before.
const GUARD: Duration = Duration::from_secs(60);

/// Opens the agent's watch stream and reads its first message.
async fn watch(server: &ServerHandle, agent: &raw_agent::Agent) -> Streaming<Changes> {
    let channel = raw_agent::as_agent(server, agent).await;
    let mut stream = WatchClient::new(channel)
        .watch_changes(WatchChangesRequest {})
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().expect("the current marks");
    stream
}

/// Reads `stream` until it fails; marks sent meanwhile are fine.
async fn end_of(stream: &mut Streaming<Changes>) -> Status {
    tokio::time::timeout(GUARD, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a refusal"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the watch stream stayed open")
}

#[tokio::test(flavor = "multi_thread")]
async fn ban_and_evict_end_open_watch_streams() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let banned = raw_agent::attest(&server, &server.generate_token(None).unwrap())
        .await
        .unwrap();
    let evicted = raw_agent::attest(&server, &server.generate_token(None).unwrap())
        .await
        .unwrap();
    let bystander = raw_agent::attest(&server, &server.generate_token(None).unwrap())
        .await
        .unwrap();
    let mut banned_stream = watch(&server, &banned).await;
    let mut evicted_stream = watch(&server, &evicted).await;
    let mut bystander_stream = watch(&server, &bystander).await;

    server
        .cli(&["agent", "ban", "-spiffeID", &banned.id])
        .unwrap()
        .ok()
        .unwrap();
    let status = end_of(&mut banned_stream).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        AgentRefusal::from_status(&status),
        Some(AgentRefusal::Banned),
        "{status:?}"
    );
    assert!(
        status.message().contains("is banned"),
        "{}",
        status.message()
    );

    server
        .cli(&["agent", "evict", "-spiffeID", &evicted.id])
        .unwrap()
        .ok()
        .unwrap();
    let status = end_of(&mut evicted_stream).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        AgentRefusal::from_status(&status),
        Some(AgentRefusal::Evicted),
        "{status:?}"
    );

    // The agent in good standing still watches: the writes above woke it.
    tokio::time::timeout(GUARD, bystander_stream.message())
        .await
        .expect("the bystander's stream stalled")
        .unwrap()
        .expect("the bystander's stream ended");

    // A banned agent cannot open a new stream either.
    let channel = raw_agent::as_agent(&server, &banned).await;
    let status = WatchClient::new(channel)
        .watch_changes(WatchChangesRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        AgentRefusal::from_status(&status),
        Some(AgentRefusal::Banned)
    );
}
