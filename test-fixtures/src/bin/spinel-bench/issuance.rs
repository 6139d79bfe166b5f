//! Rows about issuance (issue 12): X509-SVIDs for many entries of one
//! agent, end to end, and FetchJWTSVID for a caller with many identities.
//!
//! Both start one server and one agent (memory key managers, join token)
//! and create the entries with `spinel-server entry create -data FILE`.
//! How many SVIDs the agent holds is read from its debug log line
//! `published a new cache snapshot identities=N` (the harness runs the
//! agent at DEBUG).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

use crate::args::Flags;
use crate::stats::Latencies;

const NODE: &str = "spiffe://example.org/bench-node";
/// How long a row waits for the agent before giving up.
const PATIENCE: Duration = Duration::from_secs(600);

/// Runs the row `issuance` or `jwt-fetch`.
pub async fn run(row: &str, flags: Flags) -> Result<()> {
    if row == "jwt-fetch" {
        jwt(flags).await
    } else {
        x509(flags).await
    }
}

fn server_and_agent() -> Result<(ServerHandle, AgentHandle)> {
    let server = ServerHandle::start(ServerOptions {
        key_manager: "memory".into(),
        ..Default::default()
    })?;
    let token = server.generate_token(Some(NODE))?;
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            key_manager: Some("memory".into()),
            ..Default::default()
        },
    )?;
    Ok((server, agent))
}

/// Creates `count` entries under [`NODE`] in one `entry create -data`;
/// `uid(i)` is entry i's `unix:uid` selector.
fn create_entries(server: &ServerHandle, count: usize, uid: impl Fn(usize) -> u32) -> Result<()> {
    let entries: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            serde_json::json!({
                "spiffe_id": format!("spiffe://example.org/issue/{i:07}"),
                "parent_id": NODE,
                "selectors": [{"type": "unix", "value": format!("uid:{}", uid(i))}],
            })
        })
        .collect();
    server.create_entries_from_data(&entries, count)
}

async fn wait_for_identities(agent: &AgentHandle, count: usize) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while agent.published_identities() < count {
        if Instant::now() > deadline {
            bail!(
                "the agent holds {} of {count} SVIDs after {PATIENCE:?}",
                agent.published_identities()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// `issuance --entries N`: from the start of one `entry create -data` of
/// N entries to an SVID for each held by the agent, SVIDs per second.
async fn x509(mut flags: Flags) -> Result<()> {
    let total = flags.number("entries", 5_000, 1)?;
    flags.done()?;
    let (server, agent) = server_and_agent()?;
    // Selectors of other uids: the agent signs for every entry whether a
    // workload asks or not.
    // Timed from the start of `entry create`: the agent may hold every
    // SVID before the CLI process has exited.
    let start = Instant::now();
    create_entries(&server, total, |i| 5_000_000 + i as u32)?;
    let created = start.elapsed().as_secs_f64();
    wait_for_identities(&agent, total).await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "issuance: {total} X509-SVIDs, entry create started -> all held by the agent: {secs:.2} s ({created:.2} s of it in entry create), {:.0} SVIDs/s",
        total as f64 / secs
    );
    Ok(())
}

/// `jwt-fetch --identities N --rounds R`: FetchJWTSVID (no SPIFFE ID, a
/// new audience each round, so nothing is cached) for a caller with N
/// identities; prints the median and worst round.
async fn jwt(mut flags: Flags) -> Result<()> {
    let identities = flags.number("identities", 120, 1)?;
    let rounds = flags.number("rounds", 10, 1)?;
    flags.done()?;
    let (server, agent) = server_and_agent()?;
    let uid = my_uid();
    create_entries(&server, identities, |_| uid)?;
    wait_for_identities(&agent, identities).await?;
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .context("connecting to the agent's Workload API")?;
    let mut times = Latencies::default();
    for round in 0..rounds {
        let audience = format!("bench-audience-{round}");
        let start = Instant::now();
        let svids = client
            .fetch_all_jwt_svids([audience.as_str()], None)
            .await
            .context("FetchJWTSVID")?;
        times.push(start.elapsed());
        if svids.len() != identities {
            bail!(
                "FetchJWTSVID returned {} JWT-SVIDs, expected {identities}",
                svids.len()
            );
        }
    }
    println!(
        "jwt-fetch: FetchJWTSVID for a caller with {identities} identities, new audience each time, {rounds} rounds: median {:.1} ms, max {:.1} ms",
        times.ms(0.5),
        times.ms(1.0)
    );
    Ok(())
}
