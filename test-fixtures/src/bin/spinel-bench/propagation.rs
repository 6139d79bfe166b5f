//! Rows about how fast an identity reaches a workload: an entry created
//! until the workload's stream shows it, an agent's start until its first
//! SVID, and a JWT-SVID for an audience the agent has not minted yet.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::my_uid;

use crate::args::Flags;
use crate::stats::{result, Better, Latencies};
use crate::system::{Agent, Server, System};

fn alias(i: usize) -> String {
    format!("spiffe://example.org/node-{i}")
}

fn create(server: &Server, parent: &str, spiffe_id: &str) -> Result<()> {
    server.create_entry(&[
        "-parentID",
        parent,
        "-spiffeID",
        spiffe_id,
        "-selector",
        &format!("unix:uid:{}", my_uid()),
    ])?;
    Ok(())
}

fn agent(system: &System, server: &Server, i: usize) -> Result<Agent> {
    let token = server.generate_token(&alias(i))?;
    system.agent(server, &token)
}

/// Fetches until the agent serves `id`, for at most 30 s.
async fn wait_for_svid(client: &WorkloadApiClient, id: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(svids) = client.fetch_all_x509_svids().await {
            if svids.iter().any(|s| s.spiffe_id().to_string() == id) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("no SVID for {id} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `propagation --agents N --rounds R --entries E`: `entry create`
/// returning until the workload stream of the entry's agent shows the new
/// SVID, with `E` more entries in the store (for other agents), so the
/// cost of the server's entry index at that size shows.
pub async fn entry_to_stream(mut flags: Flags) -> Result<()> {
    let agents = flags.number("agents", 1, 1)?;
    let rounds = flags.number("rounds", 50, 1)?;
    let others = flags.number("entries", 0, 0)?;
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    let server = system.server()?;
    if others > 0 {
        crate::entries::create_all(&server, others, 1_000)?;
    }
    let mut streams = Vec::new();
    let mut handles = Vec::new();
    for i in 0..agents {
        let handle = agent(&system, &server, i)?;
        let first = format!("spiffe://example.org/agent-{i}/w0");
        create(&server, &alias(i), &first)?;
        let client = WorkloadApiClient::connect_to(handle.endpoint()).await?;
        wait_for_svid(&client, &first).await?;
        let mut stream = client.stream_x509_contexts().await?;
        stream.next().await.context("stream closed")??;
        streams.push(stream);
        handles.push(handle);
    }
    let mut delays = Latencies::default();
    for round in 1..=rounds {
        for (i, stream) in streams.iter_mut().enumerate() {
            let id = format!("spiffe://example.org/agent-{i}/w{round}");
            create(&server, &alias(i), &id)?;
            let created = Instant::now();
            tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let context = stream.next().await.context("stream closed")??;
                    if context
                        .svids()
                        .iter()
                        .any(|s| s.spiffe_id().to_string() == id)
                    {
                        return Ok::<_, anyhow::Error>(());
                    }
                }
            })
            .await
            .with_context(|| format!("{id} never reached agent {i}'s stream"))??;
            delays.push(created.elapsed());
        }
    }
    println!(
        "propagation: entry create returned -> workload stream, {agents} agent(s), {others} other entries: {}",
        delays.summary()
    );
    result("p50_ms", delays.ms(0.5), "ms", Better::Lower);
    result("p99_ms", delays.ms(0.99), "ms", Better::Lower);
    Ok(())
}

fn cold_id(i: usize) -> String {
    format!("spiffe://example.org/cold-{i}")
}

/// Waits `secs` seconds after registrations, before an agent starts: SPIRE's
/// server answers agents from an entry cache it reloads every 5 s (by
/// default), so a row that times an agent gives both servers this time to
/// hold the entries registered for it, and times the agent, not the
/// server's cache.
pub async fn settle_entry_cache(secs: usize) {
    tokio::time::sleep(Duration::from_secs(secs as u64)).await;
}

/// `cold-start --runs R --settle SECS`: an agent process started (join
/// token, empty data dir, its workload's entry and its join token
/// registered `SECS` seconds before the first run) until the Workload API
/// serves the workload its SVID.
pub async fn cold_start(mut flags: Flags) -> Result<()> {
    let runs = flags.number("runs", 10, 1)?;
    let settle = flags.number("settle", 6, 0)?;
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    let server = system.server()?;
    let mut tokens = Vec::with_capacity(runs);
    for i in 0..runs {
        create(&server, &alias(i), &cold_id(i))?;
        tokens.push(server.generate_token(&alias(i))?);
    }
    settle_entry_cache(settle).await;
    let mut times = Latencies::default();
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            // SPIRE's server admits one attestation per second per IP
            // (every agent here is 127.0.0.1); untimed, on both sides.
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
        let id = cold_id(i);
        let mut handle = system.configure_agent(&server, token)?;
        let started = Instant::now();
        handle.spawn()?;
        let endpoint = handle.endpoint();
        let deadline = started + Duration::from_secs(30);
        loop {
            if let Ok(client) = WorkloadApiClient::connect_to(&endpoint).await {
                if let Ok(svid) = client.fetch_x509_svid().await {
                    if svid.spiffe_id().to_string() == id {
                        break;
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("agent {i} served no SVID within 30 s:\n{}", handle.log());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push(started.elapsed());
    }
    println!(
        "cold-start: agent process spawned -> first X509-SVID: {}",
        times.summary()
    );
    result("p50_ms", times.ms(0.5), "ms", Better::Lower);
    Ok(())
}

/// `jwt-new-audience --requests N`: FetchJWTSVID, each with an audience
/// the agent has not minted for yet (one server round trip each).
pub async fn jwt_new_audience(mut flags: Flags) -> Result<()> {
    let requests = flags.number("requests", 200, 1)?;
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    let server = system.server()?;
    let handle = agent(&system, &server, 0)?;
    let id = "spiffe://example.org/jwt-bench";
    create(&server, &alias(0), id)?;
    let client = WorkloadApiClient::connect_to(handle.endpoint()).await?;
    wait_for_svid(&client, id).await?;
    let mut times = Latencies::default();
    for i in 0..requests {
        let audience = format!("audience-{i}");
        let start = Instant::now();
        client.fetch_jwt_token(&[audience.as_str()], None).await?;
        times.push(start.elapsed());
    }
    println!(
        "jwt-new-audience: FetchJWTSVID with a new audience, 1 client: {}",
        times.summary()
    );
    result("p50_ms", times.ms(0.5), "ms", Better::Lower);
    Ok(())
}
