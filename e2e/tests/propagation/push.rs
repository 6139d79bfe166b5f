//! End to end, real processes: three agents, each with a workload stream
//! open (the `spiffe` crate); `entry create` for each; each stream shows
//! the new SVID without waiting for a poll, pushed through Spinel's
//! `WatchChanges`. The delay from `entry create` returning to the stream
//! update is printed (not asserted): see docs/benchmarks.md.
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

const AGENTS: usize = 3;
const ROUNDS: usize = 5;

fn alias(i: usize) -> String {
    format!("spiffe://example.org/node-{i}")
}

fn create(server: &ServerHandle, parent: &str, spiffe_id: &str, selector: &str) {
    server
        .create_entry(&[
            "-parentID",
            parent,
            "-spiffeID",
            spiffe_id,
            "-selector",
            selector,
        ])
        .unwrap();
}

/// Fetches until the agent has an SVID with `id`, or 30 s pass.
async fn wait_for_svid(client: &WorkloadApiClient, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(svids) = client.fetch_all_x509_svids().await {
            if svids.iter().any(|s| s.spiffe_id().to_string() == id) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no SVID for {id} within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn new_entries_reach_three_agents_streams_without_a_poll() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let selector = format!("unix:uid:{}", my_uid());
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let token = server.generate_token(Some(&alias(i))).unwrap();
        let agent = AgentHandle::start(
            &server,
            AgentOptions {
                join_token: Some(token),
                ..Default::default()
            },
        )
        .unwrap();
        // A first identity, so that the workload stream opens.
        let first = format!("spiffe://example.org/agent-{i}/w0");
        create(&server, &alias(i), &first, &selector);
        let client = WorkloadApiClient::connect_to(agent.endpoint())
            .await
            .unwrap();
        wait_for_svid(&client, &first).await;
        agents.push((agent, client));
    }
    let mut streams = Vec::new();
    for (_, client) in &agents {
        let mut stream = client.stream_x509_contexts().await.unwrap();
        stream.next().await.unwrap().unwrap();
        streams.push(stream);
    }

    let mut delays = Vec::new();
    for round in 1..=ROUNDS {
        for (i, stream) in streams.iter_mut().enumerate() {
            let id = format!("spiffe://example.org/agent-{i}/w{round}");
            create(&server, &alias(i), &id, &selector);
            let created = Instant::now();
            tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let context = stream.next().await.expect("stream open").expect("update");
                    if context
                        .svids()
                        .iter()
                        .any(|s| s.spiffe_id().to_string() == id)
                    {
                        return;
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{id} never reached agent {i}'s stream"));
            delays.push(created.elapsed());
        }
    }
    delays.sort();
    let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
    println!(
        "propagation (entry create returned -> workload stream update), {} samples over {AGENTS} agents: min {:?}, median {:?}, mean {mean:?}, max {:?}",
        delays.len(),
        delays[0],
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    for (agent, _) in &agents {
        assert!(
            agent.log().contains("watching the server for changes"),
            "the agent held the change stream:\n{}",
            agent.log()
        );
    }
    drop(server);
}
