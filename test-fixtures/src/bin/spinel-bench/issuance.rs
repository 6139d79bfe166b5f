//! Rows about issuance (issue 12): X509-SVIDs for many entries of one
//! agent, end to end, and FetchJWTSVID for a caller with many identities.
//!
//! Both start one server and one agent (memory key managers, join token)
//! and create the entries with `entry create -data FILE`. How many SVIDs
//! the agent holds is read from its debug log (the harness runs agents at
//! DEBUG): Spinel's `published a new cache snapshot identities=N`, one
//! `SVID updated` line per SVID cached for SPIRE's.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::my_uid;

use crate::args::Flags;
use crate::stats::{result, Better, Latencies};
use crate::streams::cpu_seconds;
use crate::system::{Agent, Server, System};

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

fn server_and_agent(system: &System) -> Result<(Server, Agent)> {
    let server = system.server()?;
    let token = server.generate_token(NODE)?;
    let agent = system.agent(&server, &token)?;
    Ok((server, agent))
}

/// Creates `count` entries under [`NODE`] in one `entry create -data`;
/// `uid(i)` is entry i's `unix:uid` selector.
fn create_entries(server: &Server, count: usize, uid: impl Fn(usize) -> u32) -> Result<()> {
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

async fn wait_for_identities(agent: &Agent, count: usize) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while agent.held_svids() < count {
        if Instant::now() > deadline {
            bail!(
                "the agent holds {} of {count} SVIDs after {PATIENCE:?}",
                agent.held_svids()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// `issuance --entries N [--from create|agent-start] [--settle SECS]`: N
/// X509-SVIDs for one agent, SVIDs per second. From `create` (default):
/// from the start of one `entry create -data` of N entries, the agent
/// running, to an SVID for each held by the agent. From `agent-start`: the
/// entries registered `SECS` seconds before (see
/// [`crate::propagation::settle_entry_cache`]), from the agent process's
/// start (attestation included) to all N held.
async fn x509(mut flags: Flags) -> Result<()> {
    let total = flags.number("entries", 5_000, 1)?;
    let from = flags.text("from", "create");
    let settle = flags.number("settle", 6, 0)?;
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    // Selectors of other uids: the agent signs for every entry whether a
    // workload asks or not.
    let uid = |i: usize| 5_000_000 + i as u32;
    match from.as_str() {
        "create" => {
            let (server, agent) = server_and_agent(&system)?;
            // Timed from the start of `entry create`: the agent may hold
            // every SVID before the CLI process has exited.
            let before = Cpu::of(&server, &agent);
            let start = Instant::now();
            create_entries(&server, total, uid)?;
            let created = start.elapsed().as_secs_f64();
            wait_for_identities(&agent, total).await?;
            let secs = start.elapsed().as_secs_f64();
            let used = Cpu::of(&server, &agent).since(&before);
            println!(
                "issuance: {total} X509-SVIDs, entry create started -> all held by the agent: {secs:.2} s ({created:.2} s of it in entry create), {:.0} SVIDs/s",
                total as f64 / secs
            );
            used.print(total, "the server's includes writing the entries");
            result(
                "svids_per_s",
                total as f64 / secs,
                "SVIDs/s",
                Better::Higher,
            );
        }
        "agent-start" => {
            let server = system.server()?;
            create_entries(&server, total, uid)?;
            let token = server.generate_token(NODE)?;
            crate::propagation::settle_entry_cache(settle).await;
            let mut agent = system.configure_agent(&server, &token)?;
            let before = Cpu::of(&server, &agent);
            let start = Instant::now();
            agent.spawn()?;
            wait_for_identities(&agent, total).await?;
            let secs = start.elapsed().as_secs_f64();
            let used = Cpu::of(&server, &agent).since(&before);
            println!(
                "issuance: {total} X509-SVIDs, agent started -> all held by the agent: {secs:.2} s, {:.0} SVIDs/s",
                total as f64 / secs
            );
            used.print(total, "the agent's includes its start and attestation");
            result(
                "svids_per_s",
                total as f64 / secs,
                "SVIDs/s",
                Better::Higher,
            );
        }
        other => bail!("--from must be create or agent-start, got {other:?}"),
    }
    Ok(())
}

/// CPU seconds (user + system) the server and the agent have used (0 for
/// a process not running).
struct Cpu {
    server: f64,
    agent: f64,
}

impl Cpu {
    fn of(server: &Server, agent: &Agent) -> Cpu {
        let of = |pid: Option<u32>| pid.and_then(|p| cpu_seconds(p).ok()).unwrap_or(0.0);
        Cpu {
            server: of(server.pid()),
            agent: of(agent.pid()),
        }
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            server: self.server - before.server,
            agent: self.agent - before.agent,
        }
    }

    /// Prints the CPU per SVID of each process and the rate the two
    /// together would allow with every core busy: the agent's keys and
    /// CSRs share the cores with the server's signing.
    fn print(&self, svids: usize, note: &str) {
        let per = |secs: f64| secs * 1e6 / svids as f64;
        let both = per(self.server + self.agent);
        let cores = crate::ceiling::cores();
        println!(
            "  CPU: server {:.2} s ({:.0} us per SVID), agent {:.2} s ({:.0} us per SVID) ({note}); \
             both {both:.0} us per SVID: at most {:.0} SVIDs/s with all {cores} cores busy",
            self.server,
            per(self.server),
            self.agent,
            per(self.agent),
            cores as f64 * 1e6 / both
        );
        result("cpu_us_per_svid", both, "us", Better::Lower);
    }
}

/// `jwt-fetch --identities N --rounds R`: FetchJWTSVID (no SPIFFE ID, a
/// new audience each round, so nothing is cached) for a caller with N
/// identities; prints the median and worst round.
async fn jwt(mut flags: Flags) -> Result<()> {
    let identities = flags.number("identities", 120, 1)?;
    let rounds = flags.number("rounds", 10, 1)?;
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    let (server, agent) = server_and_agent(&system)?;
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
    result("median_ms", times.ms(0.5), "ms", Better::Lower);
    Ok(())
}
