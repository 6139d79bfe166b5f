//! Rows about the agent's Workload API under many streams: the agent's
//! memory with many long-lived `FetchX509SVID` streams open (and after
//! they close, cycle after cycle), and the latency and agent CPU of
//! `FetchX509SVID` calls while they are open.
//!
//! Both start one server (memory key manager) and one agent (join token
//! with a node alias), create `--entries` entries under the alias of which
//! `--matching` select this process's uid (the others a uid no process
//! has, so the agent holds their SVIDs but serves them to no one), and
//! wait until the agent serves the matching ones. Each stream and each
//! client has its own connection, as separate workloads would.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spinel_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spinel_proto::workload::{X509svidRequest, X509svidResponse};
use spinel_test_fixtures::process::my_uid;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use crate::args::Flags;
use crate::stats::{result, Better, Latencies};
use crate::system::{Agent, Server, System};

const ALIAS: &str = "spiffe://example.org/bench-node";

/// A uid no process runs as.
const NOBODYS_UID: u32 = 3_999_999;

type Client = SpiffeWorkloadApiClient<Channel>;

pub(crate) struct Setup {
    _server: Server,
    pub(crate) agent: Agent,
    pub(crate) pid: u32,
}

impl Setup {
    pub(crate) fn start(system: &System, entries: usize, matching: usize) -> Result<Setup> {
        if matching > entries {
            bail!("--matching {matching} is more than --entries {entries}");
        }
        let server = system.server()?;
        let uid = my_uid();
        let list: Vec<serde_json::Value> = (0..entries)
            .map(|i| {
                let uid = if i < matching { uid } else { NOBODYS_UID };
                serde_json::json!({
                    "spiffe_id": format!("spiffe://example.org/stream/{i:05}"),
                    "parent_id": ALIAS,
                    "selectors": [{"type": "unix", "value": format!("uid:{uid}")}],
                    "x509_svid_ttl": 3600,
                })
            })
            .collect();
        server.create_entries_from_data(&list, 1_000)?;
        let token = server.generate_token(ALIAS)?;
        let agent = system.agent(&server, &token)?;
        let pid = agent.pid().context("the agent has no pid")?;
        Ok(Setup {
            _server: server,
            agent,
            pid,
        })
    }

    /// Waits until a fetch gets `matching` SVIDs, then a little more for
    /// the agent to settle.
    pub(crate) async fn wait_served(&self, matching: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let got = match connect(self.agent.socket_path()).await {
                Ok(mut client) => first(&mut client).await.map(|(r, _)| r.svids.len()),
                Err(e) => Err(e),
            };
            match got {
                Ok(n) if n == matching => break,
                _ if Instant::now() > deadline => {
                    bail!("the agent did not serve {matching} SVIDs within 120 s: {got:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    }
}

async fn connect(socket: &Path) -> Result<Client> {
    Ok(SpiffeWorkloadApiClient::new(channel(socket).await?).max_decoding_message_size(256 << 20))
}

/// A new connection to the agent's socket.
pub(crate) async fn channel(socket: &Path) -> Result<Channel> {
    let socket: PathBuf = socket.to_owned();
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?;
    Ok(channel)
}

/// Opens `FetchX509SVID` and reads its first message.
async fn first(client: &mut Client) -> Result<(X509svidResponse, Streaming<X509svidResponse>)> {
    let mut request = tonic::Request::new(X509svidRequest {});
    request.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut stream = client.fetch_x509svid(request).await?.into_inner();
    let message = stream
        .message()
        .await?
        .context("the stream ended before its first message")?;
    Ok((message, stream))
}

/// Opens `count` streams, each on its own connection, and reads their
/// first messages (which must all be equal).
async fn open_streams(
    socket: &Path,
    count: usize,
) -> Result<Vec<(Client, Streaming<X509svidResponse>)>> {
    let mut open = Vec::with_capacity(count);
    let mut reference: Option<X509svidResponse> = None;
    for _ in 0..count {
        let mut client = connect(socket).await?;
        let (message, stream) = first(&mut client).await?;
        match &reference {
            Some(r) if *r != message => bail!("two streams got different responses"),
            Some(_) => {}
            None => reference = Some(message),
        }
        open.push((client, stream));
    }
    Ok(open)
}

/// Resident memory of `pid` in MiB (VmRSS).
pub(crate) fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")?;
    Ok(kib / 1024.0)
}

/// CPU time (user + system) of `pid` in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Result<f64> {
    // Fields 14 and 15 (utime, stime).
    stat_seconds(pid, 14)
}

/// The sum of fields `first` and `first + 1` (1-based, clock ticks) of
/// `/proc/<pid>/stat`, in seconds.
pub(crate) fn stat_seconds(pid: u32, first: usize) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("malformed stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3.
    let start = first
        .checked_sub(3)
        .context("fields 1 and 2 are not times")?;
    let ticks: u64 = fields
        .get(start..start + 2)
        .context("short stat")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    Ok(ticks as f64 / 100.0)
}

/// `streams-rss --entries N --matching M --streams S --cycles C --settle SECS`:
/// the agent's RSS with S streams open and after they close, C times.
pub async fn rss(mut flags: Flags) -> Result<()> {
    let entries = flags.number("entries", 1_000, 1)?;
    let matching = flags.number("matching", 1, 1)?;
    let streams = flags.number("streams", 500, 1)?;
    let cycles = flags.number("cycles", 10, 1)?;
    let settle = flags.number("settle", 12, 0)?;
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    let setup = tokio::task::block_in_place(|| Setup::start(&system, entries, matching))?;
    setup.wait_served(matching).await?;
    let socket = setup.agent.socket_path().to_owned();
    let start = rss_mib(setup.pid)?;
    println!(
        "streams-rss: {entries} SVIDs, {matching} per stream, {streams} streams, {cycles} cycles; \
         agent RSS before: {start:.1} MiB"
    );
    let (mut peak, mut last_closed) = (start, start);
    for cycle in 1..=cycles {
        let open = open_streams(&socket, streams).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let with = rss_mib(setup.pid)?;
        drop(open);
        tokio::time::sleep(Duration::from_secs(settle as u64)).await;
        let after = rss_mib(setup.pid)?;
        println!("  cycle {cycle:2}: open {with:7.1} MiB, closed {after:7.1} MiB");
        peak = peak.max(with);
        last_closed = after;
    }
    println!(
        "streams-rss: open peak {peak:.1} MiB, after the last close {last_closed:.1} MiB \
         (before {start:.1} MiB)"
    );
    result("idle_mib", start, "MiB", Better::Lower);
    result("open_peak_mib", peak, "MiB", Better::Lower);
    result("after_close_mib", last_closed, "MiB", Better::Lower);
    Ok(())
}

/// `streams-latency --entries N --matching M --streams S --clients C --rate R --seconds T`:
/// with S streams open, C clients each calling `FetchX509SVID` (first
/// message, then close) R times a second for T seconds: latency
/// percentiles and the agent's CPU time per call.
pub async fn latency(mut flags: Flags) -> Result<()> {
    let entries = flags.number("entries", 1_000, 1)?;
    let matching = flags.number("matching", 1, 1)?;
    let streams = flags.number("streams", 500, 0)?;
    let clients = flags.number("clients", 100, 1)?;
    let rate = flags.number("rate", 20, 1)?;
    let seconds = flags.number("seconds", 10, 1)?;
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    let setup = tokio::task::block_in_place(|| Setup::start(&system, entries, matching))?;
    setup.wait_served(matching).await?;
    let socket = setup.agent.socket_path().to_owned();
    let _open = open_streams(&socket, streams).await?;
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(connect(&socket).await?);
    }
    let cpu_before = cpu_seconds(setup.pid)?;
    let wall = Instant::now();
    // The clients' ticks are spread over the period, as independent
    // clients' would be: started together, every client would call at the
    // same instant, and the row would measure the queue of a burst of
    // `clients` calls rather than a steady rate.
    let period = Duration::from_secs(1) / rate as u32;
    let spread = period / clients as u32;
    let first_tick = tokio::time::Instant::now();
    let tasks: Vec<_> = connected
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut tick = tokio::time::interval_at(first_tick + spread * i as u32, period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for _ in 0..rate * seconds {
                    tick.tick().await;
                    let start = Instant::now();
                    let (_message, stream) = first(&mut client).await?;
                    times.push(start.elapsed());
                    drop(stream);
                }
                anyhow::Ok(times)
            })
        })
        .collect();
    let mut times = Latencies::default();
    for task in tasks {
        times.extend(task.await??);
    }
    let elapsed = wall.elapsed().as_secs_f64();
    let cpu = cpu_seconds(setup.pid)? - cpu_before;
    println!(
        "streams-latency: {streams} streams open ({matching} of {entries} SVIDs each), \
         {clients} clients x {rate}/s for {seconds} s: {} calls in {elapsed:.1} s",
        times.len()
    );
    println!(
        "  FetchX509SVID p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        times.ms(0.50),
        times.ms(0.90),
        times.ms(0.99),
        times.ms(0.999),
        times.ms(1.0)
    );
    println!(
        "  agent CPU {cpu:.2} s: {:.1} us per call",
        cpu * 1e6 / times.len() as f64
    );
    result("p50_ms", times.ms(0.5), "ms", Better::Lower);
    result("p99_ms", times.ms(0.99), "ms", Better::Lower);
    result(
        "cpu_us_per_call",
        cpu * 1e6 / times.len() as f64,
        "us",
        Better::Lower,
    );
    result(
        "calls_per_s",
        times.len() as f64 / elapsed,
        "calls/s",
        Better::Higher,
    );
    Ok(())
}
