//! `ha-scale`: issue 13's scale benchmark. Several real `spinel-server`
//! processes on one real PostgreSQL, many simulated agents syncing as
//! SPIRE's agents do, every `--interval-ms`.
//!
//! A simulated agent is a raw agent (`spinel_test_fixtures::raw_agent`):
//! it attests with its own join token (`bench-agent-<i>`, so its SPIFFE ID
//! is known before it attests), keeps one mTLS channel to its server
//! (agent `i` on server `i mod servers`), and each sync does what a
//! Spinel agent does every round apart from minting: `GetBundle`, then
//! `SyncAuthorizedEntries` (the whole set in one message up to the
//! server's page size; beyond it, pages of `(id, revision)`, after which
//! it asks only for the entries it does not hold at that revision).
//! Entry `k` of `--entries` belongs to agent `k mod agents`
//! (`spiffe://example.org/bench/w<k>`, selector `unix:uid:<k>`), so every
//! agent knows what it must get; one entry too few or too many fails the
//! run (warm-up) or the sync (window).
//!
//! Database queries are counted as PostgreSQL's committed and rolled-back
//! transactions in database `spinel` (`pg_stat_database`): every pool
//! query outside a transaction is one. Backends flush these counters
//! within about a second of going idle, so each read waits 1.5 s first.
//! Server CPU is user + system time from `/proc/<pid>/stat`, memory
//! `VmRSS` and `VmHWM` from `/proc/<pid>/status`; PostgreSQL's CPU is its
//! postmaster's and its live backends'. The bench's own client runs on the
//! same machine and competes with the servers and the database for its
//! cores.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rand::seq::SliceRandom;
use spinel_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use spinel_proto::spire::api::server::agent::v1::CreateJoinTokenRequest;
use spinel_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use spinel_proto::spire::api::server::bundle::v1::GetBundleRequest;
use spinel_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use spinel_proto::spire::api::server::entry::v1::{
    BatchCreateEntryRequest, SyncAuthorizedEntriesRequest, SyncAuthorizedEntriesResponse,
};
use spinel_proto::spire::api::types;
use spinel_test_fixtures::postgres::{self, Postgres, PostgresOptions};
use spinel_test_fixtures::raw_agent::{
    self, client_config, id, id_string, try_tls_channel, ApiServer,
};
use spinel_test_fixtures::{ServerHandle, ServerOptions};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::args::Flags;
use crate::stats::{result, Better, Latencies};
use crate::streams::{cpu_seconds, rss_mib};

/// Entries per `BatchCreateEntry`.
const BATCH: usize = 1_000;
/// Entry IDs per request for full entries in a paged sync (as the agent).
const IDS_PER_REQUEST: usize = 1_000;
/// How long one sync (both RPCs) may take before it counts as failed.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long PostgreSQL's backends may take to flush their counters.
const STATS_FLUSH: Duration = Duration::from_millis(1_500);
/// Open files the bench needs beyond one per agent (attestation channels,
/// the admin sockets, psql, logs).
const FD_MARGIN: usize = 512;
/// The server's log line giving the time its authorized-entry index took
/// to read at start.
const INDEX_LINE: &str = "authorized-entries index read in full";

/// The join token of agent `i`.
fn token(i: usize) -> String {
    format!("bench-agent-{i}")
}

/// The SPIFFE ID agent `i` gets by attesting with [`token`].
fn agent_id(i: usize) -> String {
    format!("spiffe://example.org/spire/agent/join_token/{}", token(i))
}

/// The SPIFFE ID of entry `k`.
fn workload_id(k: usize) -> String {
    format!("spiffe://example.org/bench/w{k}")
}

/// How many entries agent `i` of `agents` owns out of `entries`.
fn expected_count(i: usize, agents: usize, entries: usize) -> usize {
    entries / agents + usize::from(i < entries % agents)
}

/// A server as agents reach it: its address and the bundle read once
/// (the harness's own `ApiServer` reads the bundle with the CLI on every
/// call).
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    roots: Arc<Vec<Vec<u8>>>,
}

impl Target {
    fn of(server: &ServerHandle) -> Result<Target> {
        let pem = server.bundle_pem()?;
        let roots = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
            .map(|p| p.map(|p| p.contents))
            .collect::<Result<Vec<_>, _>>()
            .context("reading the server's bundle")?;
        if roots.is_empty() {
            bail!("the server's bundle holds no X.509 authority");
        }
        Ok(Target {
            addr: SocketAddr::from(([127, 0, 0, 1], server.port)),
            roots: Arc::new(roots),
        })
    }
}

impl ApiServer for Target {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn roots(&self) -> Vec<Vec<u8>> {
        self.roots.as_ref().clone()
    }
}

/// One simulated agent.
struct SimAgent {
    index: usize,
    server: usize,
    identity: raw_agent::Agent,
    channel: Option<Channel>,
    /// Entry ID to (revision, SPIFFE ID) of the entries it holds.
    known: HashMap<String, (i64, String)>,
}

impl SimAgent {
    async fn connect(&mut self, target: &Target) -> Result<()> {
        let config = client_config(
            &target.roots,
            Some((&self.identity.chain, &self.identity.key_der)),
        );
        let channel = try_tls_channel(target.addr, config)
            .await
            .with_context(|| format!("agent {} connecting to {}", self.index, target.addr))?;
        self.channel = Some(channel);
        Ok(())
    }

    /// One sync round (`GetBundle`, `SyncAuthorizedEntries`); checks that
    /// the agent holds exactly its `expected` entries afterwards.
    async fn sync(&mut self, expected: usize) -> Result<()> {
        let channel = self.channel.clone().context("not connected")?;
        BundleClient::new(channel.clone())
            .get_bundle(GetBundleRequest::default())
            .await
            .context("GetBundle")?;
        sync_entries(channel, &mut self.known)
            .await
            .context("SyncAuthorizedEntries")?;
        if self.known.len() != expected {
            bail!(
                "agent {} holds {} entries, expected {expected}",
                self.index,
                self.known.len()
            );
        }
        Ok(())
    }

    /// Whether the entries held are exactly entries `k` with
    /// `k mod agents == index`.
    fn holds_exactly_its_entries(&self, agents: usize, entries: usize) -> Result<()> {
        let mut ks = Vec::with_capacity(self.known.len());
        for (_, spiffe_id) in self.known.values() {
            let k: usize = spiffe_id
                .strip_prefix("spiffe://example.org/bench/w")
                .and_then(|k| k.parse().ok())
                .with_context(|| format!("agent {} got a stranger: {spiffe_id}", self.index))?;
            if k % agents != self.index || k >= entries {
                bail!("agent {} got entry {spiffe_id}, not its own", self.index);
            }
            ks.push(k);
        }
        ks.sort_unstable();
        ks.dedup();
        let expected = expected_count(self.index, agents, entries);
        if ks.len() != expected {
            bail!(
                "agent {} got {} distinct entries, expected {expected}",
                self.index,
                ks.len()
            );
        }
        Ok(())
    }
}

async fn next(
    inbound: &mut Streaming<SyncAuthorizedEntriesResponse>,
) -> Result<SyncAuthorizedEntriesResponse> {
    inbound
        .message()
        .await?
        .context("the server ended the sync early")
}

fn remember(known: &mut HashMap<String, (i64, String)>, entry: types::Entry) {
    let spiffe_id = entry.spiffe_id.as_ref().map(id_string).unwrap_or_default();
    known.insert(entry.id, (entry.revision_number, spiffe_id));
}

/// SPIRE's incremental sync, client side: `known` becomes the authorized
/// set, with only new or changed entries downloaded.
async fn sync_entries(channel: Channel, known: &mut HashMap<String, (i64, String)>) -> Result<()> {
    let (tx, rx) = mpsc::channel(2);
    tx.send(SyncAuthorizedEntriesRequest::default())
        .await
        .map_err(|_| anyhow!("the request stream closed"))?;
    let mut inbound = EntryClient::new(channel)
        .sync_authorized_entries(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = next(&mut inbound).await?;
    if first.entry_revisions.is_empty() {
        // Up to a page: the whole set in one message.
        known.clear();
        for entry in first.entries {
            remember(known, entry);
        }
        return Ok(());
    }
    let mut current = HashMap::new();
    let mut wanted = Vec::new();
    let mut listed = 0;
    let mut page = first;
    loop {
        for r in page.entry_revisions {
            listed += 1;
            match known.remove(&r.id) {
                Some(held) if held.0 == r.revision_number => {
                    current.insert(r.id, held);
                }
                _ => wanted.push(r.id),
            }
        }
        if !page.more {
            break;
        }
        page = next(&mut inbound).await?;
    }
    for ids in wanted.chunks(IDS_PER_REQUEST) {
        tx.send(SyncAuthorizedEntriesRequest {
            ids: ids.to_vec(),
            output_mask: None,
        })
        .await
        .map_err(|_| anyhow!("the server closed the sync"))?;
        loop {
            let page = next(&mut inbound).await?;
            for entry in page.entries {
                remember(&mut current, entry);
            }
            if !page.more {
                break;
            }
        }
    }
    drop(tx);
    if current.len() != listed {
        bail!(
            "the server listed {listed} entries but sent {} in full or unchanged",
            current.len()
        );
    }
    *known = current;
    Ok(())
}

/// Runs `f` on every item, `concurrency` at a time on the runtime's
/// threads; the results in the items' order, or the first error.
async fn run_all<T, R, F, Fut>(items: Vec<T>, concurrency: usize, f: F) -> Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<R>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(items.len());
    for item in items {
        let permit = permits.clone().acquire_owned().await?;
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            f(item).await
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.context("a task panicked")??);
    }
    Ok(out)
}

/// Raises the soft open-file limit to the hard one (the servers inherit
/// it); fails when even the hard limit is too low for `agents`.
fn raise_open_files(agents: usize, concurrency: usize) -> Result<u64> {
    let limit = spinel_transport::limits::raise_fd_limit().unwrap_or(u64::MAX);
    let needed = (agents + concurrency + FD_MARGIN) as u64;
    if limit < needed {
        bail!(
            "{agents} agents need {needed} open files in this process, but the open-file limit is {limit} even after raising it to the hard limit: raise the hard limit (ulimit -Hn, or LimitNOFILE) or use fewer --agents"
        );
    }
    Ok(limit)
}

/// The transactions committed or rolled back in database `spinel`, after
/// waiting for the backends to flush their counters.
async fn transactions(pg: &Postgres) -> Result<u64> {
    tokio::time::sleep(STATS_FLUSH).await;
    let out = tokio::task::block_in_place(|| {
        pg.local_sql(
            "SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database WHERE datname = 'spinel'",
        )
    })?;
    if !out.status.success() {
        bail!(
            "reading pg_stat_database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("pg_stat_database gave {text:?}"))
}

/// A `/proc/<pid>/status` value in MiB (`key` as `VmHWM:`).
fn status_mib(pid: u32, key: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {key} line"))?;
    Ok(kib / 1024.0)
}

/// CPU seconds of PostgreSQL: its postmaster (first line of
/// `postmaster.pid` in `data`), its children that exited (reaped: the
/// postmaster's `cutime` and `cstime`; autovacuum workers come and go)
/// and its children alive now.
fn postgres_cpu(data: &std::path::Path) -> Result<f64> {
    let pidfile = std::fs::read_to_string(data.join("postmaster.pid"))?;
    let postmaster: u32 = pidfile
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .context("no pid in postmaster.pid")?;
    let mut total = cpu_seconds(postmaster)? + reaped_children_cpu(postmaster)?;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4, the parent, is the second after the command's `)`.
        let parent = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(postmaster) {
            total += cpu_seconds(pid).unwrap_or(0.0);
        }
    }
    Ok(total)
}

/// `cutime + cstime` of `pid` in seconds: the CPU of its children that
/// exited and were waited for.
fn reaped_children_cpu(pid: u32) -> Result<f64> {
    // Fields 16 and 17 (cutime, cstime).
    crate::streams::stat_seconds(pid, 16)
}

fn pid_of(server: &ServerHandle) -> Result<u32> {
    server
        .process
        .as_ref()
        .and_then(|p| p.pid())
        .context("the server is not running")
}

/// `elapsed_ms` (and `entries`) of the last [`INDEX_LINE`] in `log`, in
/// either of the server's log formats.
fn index_read(log: &str) -> Option<(f64, Option<u64>)> {
    let line = log.lines().rev().find(|l| l.contains(INDEX_LINE))?;
    let field = |name: &str| -> Option<String> {
        for pattern in [format!("{name}="), format!("\"{name}\":")] {
            if let Some(at) = line.find(&pattern) {
                let rest = &line[at + pattern.len()..];
                let value: String = rest
                    .trim_start_matches('"')
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                if !value.is_empty() {
                    return Some(value);
                }
            }
        }
        None
    };
    let elapsed = field("elapsed_ms")?.parse().ok()?;
    Some((elapsed, field("entries").and_then(|e| e.parse().ok())))
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// What one agent's measurement task brings back.
struct Window {
    agent: SimAgent,
    latencies: Vec<Duration>,
    failed: usize,
    first_error: Option<String>,
}

/// Syncs every `interval` from `start + phase` until `end`.
async fn measure(
    mut agent: SimAgent,
    expected: usize,
    first: tokio::time::Instant,
    interval: Duration,
    end: tokio::time::Instant,
) -> Window {
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut first_error = None;
    let mut at = first;
    while at < end {
        tokio::time::sleep_until(at).await;
        let started = Instant::now();
        let outcome = tokio::time::timeout(SYNC_TIMEOUT, agent.sync(expected)).await;
        match outcome {
            Ok(Ok(())) => latencies.push(started.elapsed()),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("agent {}: {e:#}", agent.index));
            }
            Err(_) => {
                failed += 1;
                first_error.get_or_insert_with(|| {
                    format!("agent {}: no answer within {SYNC_TIMEOUT:?}", agent.index)
                });
            }
        }
        at += interval;
        // A late agent starts its next sync at once, as a ticker would.
        at = at.max(tokio::time::Instant::now());
    }
    Window {
        agent,
        latencies,
        failed,
        first_error,
    }
}

/// `ha-scale --agents N --entries E --servers S --seconds T --interval-ms I
/// [--concurrency C]`.
pub async fn run(mut flags: Flags) -> Result<()> {
    let agents = flags.number("agents", 10_000, 1)?;
    let entries = flags.number("entries", 100_000, 0)?;
    let servers = flags.number("servers", 3, 1)?;
    let seconds = flags.number("seconds", 60, 1)?;
    let interval_ms = flags.number("interval-ms", 5_000, 10)?;
    let concurrency = flags.number("concurrency", 64, 1)?;
    flags.done()?;
    let interval = Duration::from_millis(interval_ms as u64);
    println!(
        "ha-scale: {agents} agents, {entries} entries, {servers} servers on PostgreSQL, {seconds} s window, sync every {interval_ms} ms, setup concurrency {concurrency}"
    );
    let open_files = raise_open_files(agents, concurrency)?;
    println!("open-file limit: {open_files}");

    // PostgreSQL and the servers.
    let Some(install) = postgres::available() else {
        bail!("ha-scale needs PostgreSQL (Debian's postgresql package, under /usr/lib/postgresql)");
    };
    let t = Instant::now();
    let pg_dir = tempfile::tempdir_in("/tmp")?;
    let pg = tokio::task::block_in_place(|| -> Result<Postgres> {
        let pg = Postgres::start(&install, pg_dir.path(), &PostgresOptions::default())?;
        pg.create_database("spinel")?;
        Ok(pg)
    })?;
    println!("setup: PostgreSQL started in {}", secs(t.elapsed()));
    let datastore = format!(
        "    DataStore \"sql\" {{\n        plugin_data {{\n            database_type = \"postgres\"\n            connection_string = \"{}\"\n            max_open_conns = 10\n        }}\n    }}",
        pg.keyword_connection_string("spinel")
    );
    let cap = agents + FD_MARGIN;
    // The `disk` key manager (the harness's default): a server restarted
    // on the same datastore refuses to start with a `memory` one, whose
    // CA key died with the process.
    let options = ServerOptions {
        log_level: "INFO".into(),
        datastore,
        server_extra: format!(
            "    connection_limits {{\n        max_connections = {cap}\n        max_connections_per_ip = {cap}\n    }}"
        ),
        ..Default::default()
    };
    let t = Instant::now();
    let mut handles = Vec::with_capacity(servers);
    for _ in 0..servers {
        handles.push(tokio::task::block_in_place(|| {
            ServerHandle::start(options.clone())
        })?);
    }
    let mut targets = Vec::with_capacity(servers);
    for server in &handles {
        targets.push(tokio::task::block_in_place(|| Target::of(server))?);
    }
    println!("setup: {servers} servers started in {}", secs(t.elapsed()));

    // Join tokens and entries, on server 1's admin socket.
    let admin = raw_agent::unix_channel(handles[0].socket_path.clone()).await;
    let t = Instant::now();
    run_all((0..agents).collect(), concurrency, {
        let admin = admin.clone();
        move |i: usize| {
            let mut client = AgentClient::new(admin.clone());
            async move {
                client
                    .create_join_token(CreateJoinTokenRequest {
                        ttl: 24 * 3600,
                        token: token(i),
                        agent_id: None,
                    })
                    .await
                    .with_context(|| format!("CreateJoinToken {}", token(i)))?;
                Ok(())
            }
        }
    })
    .await?;
    println!(
        "setup: {agents} join tokens created in {}",
        secs(t.elapsed())
    );
    let t = Instant::now();
    let mut entry_client = EntryClient::new(admin.clone());
    for start in (0..entries).step_by(BATCH) {
        let batch: Vec<types::Entry> = (start..entries.min(start + BATCH))
            .map(|k| types::Entry {
                spiffe_id: Some(id(&workload_id(k))),
                parent_id: Some(id(&agent_id(k % agents))),
                selectors: vec![types::Selector {
                    r#type: "unix".into(),
                    value: format!("uid:{k}"),
                }],
                ..Default::default()
            })
            .collect();
        let results = entry_client
            .batch_create_entry(BatchCreateEntryRequest {
                entries: batch,
                output_mask: None,
            })
            .await
            .with_context(|| format!("BatchCreateEntry from entry {start}"))?
            .into_inner()
            .results;
        if let Some(bad) = results
            .iter()
            .filter_map(|r| r.status.as_ref())
            .find(|s| s.code != 0)
        {
            bail!("BatchCreateEntry from entry {start}: {bad:?}");
        }
    }
    let took = t.elapsed();
    println!(
        "setup: {entries} entries created in batches of {BATCH} in {} ({:.0} entries/s)",
        secs(took),
        entries as f64 / took.as_secs_f64().max(1e-9)
    );

    // Attestation, then one channel and the warm-up sync each (at once:
    // the server closes a connection that sends nothing for 10 s).
    let t = Instant::now();
    let attested = run_all((0..agents).collect(), concurrency, {
        let targets = targets.clone();
        move |i: usize| {
            let target = targets[i % servers].clone();
            async move {
                let identity = raw_agent::attest(&target, &token(i))
                    .await
                    .map_err(|s| anyhow!("agent {i} attesting: {s}"))?;
                if identity.id != agent_id(i) {
                    bail!("agent {i} attested as {}, not {}", identity.id, agent_id(i));
                }
                Ok(SimAgent {
                    index: i,
                    server: i % servers,
                    identity,
                    channel: None,
                    known: HashMap::new(),
                })
            }
        }
    })
    .await?;
    println!("setup: {agents} agents attested in {}", secs(t.elapsed()));
    let t = Instant::now();
    let mut fleet = run_all(attested, concurrency, {
        let targets = targets.clone();
        move |mut agent: SimAgent| {
            let target = targets[agent.server].clone();
            async move {
                agent.connect(&target).await?;
                let expected = expected_count(agent.index, agents, entries);
                tokio::time::timeout(SYNC_TIMEOUT, agent.sync(expected))
                    .await
                    .map_err(|_| anyhow!("agent {}: warm-up sync timed out", agent.index))??;
                agent.holds_exactly_its_entries(agents, entries)?;
                Ok(agent)
            }
        }
    })
    .await?;
    println!(
        "setup: {agents} mTLS channels opened and one warm-up sync each in {}",
        secs(t.elapsed())
    );
    println!(
        "warm-up: every agent got exactly its entries ({} or {} each)",
        entries / agents,
        entries / agents + usize::from(entries % agents > 0)
    );

    // The window.
    let pids: Vec<u32> = handles.iter().map(pid_of).collect::<Result<_>>()?;
    let tx_before = transactions(&pg).await?;
    let cpu_before: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(*p))
        .collect::<Result<_>>()?;
    let own_cpu_before = cpu_seconds(std::process::id())?;
    let pg_data = pg_dir.path().join("pgdata");
    let pg_cpu_before = postgres_cpu(&pg_data)?;
    let mut order: Vec<usize> = (0..agents).collect();
    order.shuffle(&mut rand::rng());
    let mut phase = vec![Duration::ZERO; agents];
    for (slot, i) in order.into_iter().enumerate() {
        phase[i] = interval.mul_f64(slot as f64 / agents as f64);
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs(seconds as u64);
    let window_started = Instant::now();
    let tasks: Vec<_> = fleet
        .drain(..)
        .map(|agent| {
            let expected = expected_count(agent.index, agents, entries);
            let first = start + phase[agent.index];
            tokio::spawn(measure(agent, expected, first, interval, end))
        })
        .collect();
    let mut latencies = Latencies::default();
    let mut failed = 0;
    let mut first_error: Option<String> = None;
    for task in tasks {
        let window = task.await.context("a sync task panicked")?;
        latencies.extend(window.latencies);
        failed += window.failed;
        if first_error.is_none() {
            first_error = window.first_error;
        }
        fleet.push(window.agent);
    }
    let window = window_started.elapsed();
    let cpu_after: Vec<f64> = pids
        .iter()
        .map(|p| cpu_seconds(*p))
        .collect::<Result<_>>()?;
    let own_cpu = cpu_seconds(std::process::id())? - own_cpu_before;
    let pg_cpu = postgres_cpu(&pg_data)? - pg_cpu_before;
    let memory: Vec<(f64, f64)> = pids
        .iter()
        .map(|p| Ok((rss_mib(*p)?, status_mib(*p, "VmHWM:")?)))
        .collect::<Result<_>>()?;
    let tx_after = transactions(&pg).await?;

    let done = latencies.len();
    let window_s = window.as_secs_f64();
    let tx = tx_after.saturating_sub(tx_before);
    let per_sync = tx as f64 / done.max(1) as f64;
    println!(
        "window: {} (from the first sync to the last answer)",
        secs(window)
    );
    println!("syncs done: {done} ({:.0} syncs/s)", done as f64 / window_s);
    println!("syncs failed: {failed}");
    if let Some(e) = &first_error {
        println!("first failed sync: {e}");
    }
    println!(
        "sync latency (GetBundle + SyncAuthorizedEntries): {}",
        latencies.summary()
    );
    println!(
        "database: {tx} transactions in the window ({:.0}/s, {per_sync:.3} per sync; counted between reads 1.5 s after the warm-up and after the window)",
        tx as f64 / window_s
    );
    for (n, ((before, after), (rss, hwm))) in
        cpu_before.iter().zip(&cpu_after).zip(&memory).enumerate()
    {
        let cpu = after - before;
        println!(
            "server {}: CPU {cpu:.1} s in the window ({:.0}% of one core), RSS {rss:.0} MiB now, {hwm:.0} MiB peak",
            n + 1,
            cpu / window_s * 100.0
        );
    }
    println!(
        "PostgreSQL: CPU {pg_cpu:.1} s in the window ({:.0}% of one core; postmaster and its children)",
        pg_cpu / window_s * 100.0
    );
    println!(
        "bench client: CPU {own_cpu:.1} s in the window ({:.0}% of one core)",
        own_cpu / window_s * 100.0
    );

    // Cache build at start: server 1 restarted on the same database.
    let server = &mut handles[0];
    let log_path = server.dir.path().join("server.log");
    let log_before = std::fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
    tokio::task::block_in_place(|| server.stop())?;
    let t = Instant::now();
    tokio::task::block_in_place(|| server.start_process())?;
    let healthy = t.elapsed();
    let target = tokio::task::block_in_place(|| Target::of(server))?;
    let agent = fleet
        .iter_mut()
        .find(|a| a.server == 0)
        .context("no agent on server 1")?;
    let expected = expected_count(agent.index, agents, entries);
    let mut attempts = 0;
    let first_sync = loop {
        attempts += 1;
        let outcome = async {
            agent.connect(&target).await?;
            agent.sync(expected).await
        }
        .await;
        match outcome {
            Ok(()) => break t.elapsed(),
            Err(e) if t.elapsed() < Duration::from_secs(60) => {
                if attempts == 1 {
                    println!("restart: first sync after the restart failed, retrying: {e:#}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => bail!("no sync answered by server 1 within 60 s of its restart: {e:#}"),
        }
    };
    let log = std::fs::read(&log_path).unwrap_or_default();
    let log = String::from_utf8_lossy(log.get(log_before..).unwrap_or_default());
    let index = index_read(&log);
    println!(
        "cache build: server 1 restarted with {entries} entries: healthy after {}, first sync of one of its agents answered after {} ({attempts} attempt(s), new channel)",
        secs(healthy),
        secs(first_sync)
    );
    match index {
        Some((ms, n)) => println!(
            "cache build: the server's log says the index was read in {ms} ms ({} entries)",
            n.map_or_else(|| "?".to_owned(), |n| n.to_string())
        ),
        None => println!("cache build: no `{INDEX_LINE}` line in server 1's log"),
    }

    result("sync_p50_ms", latencies.ms(0.5), "ms", Better::Lower);
    result("sync_p99_ms", latencies.ms(0.99), "ms", Better::Lower);
    result("transactions_per_sync", per_sync, "tx", Better::Lower);
    result(
        "restart_first_sync_s",
        first_sync.as_secs_f64(),
        "s",
        Better::Lower,
    );
    println!(
        "ha-scale summary: {agents} agents, {entries} entries, {servers} servers: {done} syncs, {failed} failed, p50 {:.2} ms, p99 {:.2} ms, {per_sync:.3} transactions/sync, restart to first sync {}",
        latencies.ms(0.5),
        latencies.ms(0.99),
        secs(first_sync)
    );
    if failed > 0 {
        bail!(
            "{failed} syncs failed; the first: {}",
            first_error.unwrap_or_default()
        );
    }
    drop(handles);
    drop(pg);
    Ok(())
}
