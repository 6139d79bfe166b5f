//! Rows about the registration store: batch entry create and `entry show`.
//!
//! Both start one server (sled datastore, memory key manager) and create
//! `--entries` entries through `spinel-server entry create -data FILE`,
//! `--batch` per file, as an operator importing a list would.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spinel_test_fixtures::process::write_file;

use crate::args::Flags;
use crate::stats::{result, Better};
use crate::streams::rss_mib;
use crate::system::{Server, System};

/// The parent of every entry: a node alias, the SPIFFE ID of a join token
/// that only `server-rss --agent yes` generates and uses.
const PARENT: &str = "spiffe://example.org/bench-node";

/// Writes the `-data` file of entries `first..first + count`.
fn entries_file(path: &Path, first: usize, count: usize) -> Result<()> {
    let entries: Vec<serde_json::Value> = (first..first + count)
        .map(|i| {
            serde_json::json!({
                "spiffe_id": format!("spiffe://example.org/bench/{i:07}"),
                "parent_id": PARENT,
                "selectors": [
                    {"type": "unix", "value": format!("uid:{}", 10_000 + i % 1_000)},
                    {"type": "unix", "value": "gid:100"},
                ],
                "x509_svid_ttl": 3600,
            })
        })
        .collect();
    write_file(path, &serde_json::json!({ "entries": entries }).to_string())
}

/// Samples the server's VmRSS every 100 ms until dropped; `peak` and
/// `last` give the highest and the latest sample, in MiB.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(f64, f64)>>,
}

impl RssSampler {
    fn start(server: &Server) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let pid = server.pid();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut peak, mut last) = (0f64, 0f64);
            let Some(pid) = pid else {
                return (peak, last);
            };
            loop {
                if let Ok(mib) = rss_mib(pid) {
                    peak = peak.max(mib);
                    last = mib;
                }
                if flag.load(Ordering::Relaxed) {
                    return (peak, last);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and prints `server RSS: peak P MiB, last L MiB (<what>)`.
    fn report(mut self, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(Ok((peak, last))) = self.thread.take().map(|t| t.join()) {
            println!("server RSS ({what}): peak {peak:.0} MiB, at the end {last:.0} MiB");
        }
    }
}

/// Creates `total` entries (parented by [`PARENT`]) in
/// files of `batch`; returns the seconds spent
/// in `entry create` (files are written before the clock starts).
pub fn create_all(server: &Server, total: usize, batch: usize) -> Result<f64> {
    let dir = tempfile::tempdir_in("/tmp")?;
    let mut files = Vec::new();
    let mut first = 0;
    while first < total {
        let count = batch.min(total - first);
        let path = dir.path().join(format!("entries-{first}.json"));
        entries_file(&path, first, count)?;
        files.push(path);
        first += count;
    }
    let start = Instant::now();
    for path in &files {
        let path = path.to_str().context("temporary path is not UTF-8")?;
        let out = server.cli(&["entry", "create", "-data", path])?;
        if !out.success() {
            bail!("entry create -data {path} failed:\n{}", out.stderr);
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// `entry-create --entries N --batch B`: entries per second.
pub fn create(mut flags: Flags) -> Result<()> {
    let total = flags.number("entries", 100_000, 1)?;
    let batch = flags.number("batch", 1_000, 1)?;
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    let server = system.server()?;
    let rss = RssSampler::start(&server);
    let secs = create_all(&server, total, batch)?;
    rss.report("over the creates");
    println!(
        "entry-create: {total} entries in batches of {batch}: {secs:.2} s, {:.0} entries/s",
        total as f64 / secs
    );
    result(
        "entries_per_s",
        total as f64 / secs,
        "entries/s",
        Better::Higher,
    );
    Ok(())
}

/// `entry-show --entries N`: the time `entry show` takes to list them all.
pub fn show(mut flags: Flags) -> Result<()> {
    let total = flags.number("entries", 100_000, 1)?;
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    let server = system.server()?;
    let rss = RssSampler::start(&server);
    create_all(&server, total, 1_000)?;
    rss.report("over the creates");
    let rss = RssSampler::start(&server);
    let start = Instant::now();
    let out = server.cli(&["entry", "show", "-output", "json"])?;
    let secs = start.elapsed().as_secs_f64();
    rss.report("over the listing");
    if !out.success() {
        bail!("entry show failed:\n{}", out.stderr);
    }
    let shown: serde_json::Value =
        serde_json::from_str(&out.stdout).context("entry show -output json")?;
    let count = shown["entries"].as_array().map_or(0, Vec::len);
    if count != total {
        bail!("entry show listed {count} entries, expected {total}");
    }
    println!("entry-show: {total} entries listed in {secs:.2} s");
    result("seconds", secs, "s", Better::Lower);
    Ok(())
}

/// The VmRSS of `pid` now, in MiB (0 if it cannot be read).
fn rss_now(pid: Option<u32>) -> f64 {
    pid.and_then(|pid| rss_mib(pid).ok()).unwrap_or(0.0)
}

/// `server-rss --entries N [--agent yes|no] [--settle SECS]`: the server's memory
/// holding N entries: over the creates, after a restart (the entries read
/// back, the authorized-entries index built) and, with `--agent yes`, while
/// and after one agent authorized for all N entries syncs and gets an
/// X509-SVID for each. Spinel only (it restarts the server).
pub fn server_rss(mut flags: Flags) -> Result<()> {
    let total = flags.number("entries", 100_000, 1)?;
    let with_agent = match flags.text("agent", "no").as_str() {
        "yes" => true,
        "no" => false,
        other => bail!("--agent must be yes or no, got {other:?}"),
    };
    let settle = Duration::from_secs(flags.number("settle", 3, 0)? as u64);
    let system = System::from_flags(&mut flags)?;
    flags.done()?;
    if system.describe() != "spinel" {
        bail!("server-rss runs against Spinel only");
    }
    // The disk key manager: the CA outlives the restart.
    let mut server = Server::Spinel(spinel_test_fixtures::spinel::ServerHandle::start(
        Default::default(),
    )?);
    // The agent's alias: every entry is parented by it.
    let token = server.generate_token(PARENT)?;
    let rss = RssSampler::start(&server);
    create_all(&server, total, 1_000)?;
    rss.report("over the creates");
    if let Server::Spinel(s) = &mut server {
        s.restart()?;
    }
    std::thread::sleep(settle);
    let mib = rss_now(server.pid());
    if let Server::Spinel(s) = &server {
        // What the start read: the store's indexes and the authorized-entries index.
        let log = s.log();
        let read = log.lines().filter(|l| {
            (l.contains("entry indexes built") || l.contains("index read in full"))
                && !l.contains("entries=0 ")
        });
        for line in read {
            println!("server log after the restart: {line}");
        }
    }
    println!("server RSS ({total} entries, restarted, {settle:?} after): {mib:.0} MiB");
    result("server_rss_idle", mib, "MiB", Better::Lower);
    if !with_agent {
        return Ok(());
    }
    let rss = RssSampler::start(&server);
    let start = Instant::now();
    let agent = system.agent(&server, &token)?;
    let patience = Duration::from_secs(120 + total as u64 / 500);
    while agent.held_svids() < total {
        if start.elapsed() > patience {
            bail!(
                "the agent holds {} of {total} SVIDs after {patience:?}",
                agent.held_svids()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "agent holds all {total} SVIDs {:.1} s after its start",
        start.elapsed().as_secs_f64()
    );
    rss.report("while the agent synced");
    std::thread::sleep(settle);
    let mib = rss_now(server.pid());
    let agent_mib = rss_now(agent.pid());
    println!("server RSS (one agent holding {total} SVIDs, {settle:?} after): {mib:.0} MiB; agent RSS {agent_mib:.0} MiB");
    result("server_rss_with_agent", mib, "MiB", Better::Lower);
    Ok(())
}
