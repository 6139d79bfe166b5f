//! `spinel-bench`: the performance rows of docs/benchmarks.md, one command
//! each, against real `spinel-server` and `spinel-agent` processes (from
//! the same target directory, or `SPINEL_BIN_DIR`).
//!
//! ```sh
//! cargo build --release --bins
//! target/release/spinel-bench entry-create --entries 100000 --batch 1000
//! ```
//!
//! Every row prints the machine's same-run ceiling first (P-256 sign and
//! verify on one core with ring, and the core count), so that results of
//! different machines and runs compare as ratios. Rows:
//!
//! | row | what |
//! |---|---|
//! | `ceiling` | only the ceiling |
//! | `entry-create` | batch entry create through `entry create -data`, entries per second |
//! | `entry-show` | `entry show` of every entry, the time it takes |
//! | `propagation` | `entry create` returning until the workload's stream shows the SVID, p50/p99 |
//! | `cold-start` | an agent process started until its workload gets its first SVID |
//! | `jwt-new-audience` | FetchJWTSVID with an audience not minted before (one server round trip) |
//! | `streams-rss`, `streams-latency` | the agent's RSS over cycles of many open `FetchX509SVID` streams; fetch latency and agent CPU per fetch while they are open |
//! | `sds-rss` | the agent's RSS with many open Envoy SDS `StreamSecrets` streams |
//! | `issuance` / `jwt-fetch` | X509-SVIDs for N entries of one agent, end to end; FetchJWTSVID for a caller with N identities |
//! | `ha-scale` | many simulated agents syncing with several servers on one PostgreSQL (issue 13): sync p50/p99, database transactions per sync, server CPU and RSS, a restarted server's time to its first sync |
//! | `compare` | the rows above against Spinel and SPIRE 1.13.3 in one run, one table with the ratios |
//!
//! Every row but `ceiling`, `ha-scale` and `compare` takes `--impl spinel|spire`
//! (default `spinel`) and, for SPIRE, `--spire-poll MS`: the same row
//! against SPIRE's `spire-server` and `spire-agent` (see `system.rs` for
//! the settings of both sides).
//!
//! Loopback only; every loop is bounded.
#![allow(clippy::disallowed_methods)] // wall-clock timing is the point here

mod args;
mod ceiling;
mod compare;
mod entries;
mod ha_scale;
mod issuance;
mod propagation;
mod sds;
mod stats;
mod streams;
mod system;

use anyhow::{bail, Result};

const USAGE: &str = "usage: spinel-bench <row> [--flag value ...]
rows:
  ceiling                                  P-256 sign/verify on one core
  entry-create --entries N --batch B       batch entry create, entries/s
  entry-show   --entries N                 entry show of N entries
  server-rss   --entries N [--agent yes|no] [--settle SECS]
                                           server RSS holding N entries: restarted, and with
                                           one agent authorized for all of them (Spinel only)
  propagation  --agents N --rounds R --entries E
                                           entry create -> workload stream, E other entries
  cold-start   --runs R [--settle SECS]    agent start -> first X509-SVID
  jwt-new-audience --requests N            FetchJWTSVID, new audience each
  streams-rss --entries N --matching M --streams S --cycles C --settle SECS
                                           agent RSS over cycles of S open streams
  streams-latency --entries N --matching M --streams S --clients C --rate R --seconds T
                                           FetchX509SVID latency, agent CPU per call
  sds-rss --entries N --matching M --streams S [--connections C] --settle SECS
                                           agent RSS with S open Envoy SDS streams
  issuance --entries N [--from create|agent-start] [--settle SECS]
                                           X509-SVIDs for N entries, end to end
  jwt-fetch --identities N --rounds R      FetchJWTSVID for a caller with N identities
  ha-scale --agents N --entries E --servers S --seconds T --interval-ms I [--concurrency C]
                                           N simulated agents syncing every I ms with S servers
                                           on one PostgreSQL (Spinel only)
  compare [--only ROW,ROW]                 the rows against Spinel and SPIRE, one table
every row but ceiling, ha-scale and compare also takes:
  --impl spinel|spire                      the system under test (default spinel)
  --spire-poll MS                          SPIRE's server cache reload and agent sync interval";

#[tokio::main]
async fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    let Some(row) = argv.next() else {
        bail!("{USAGE}");
    };
    let flags = args::Flags::parse(argv)?;
    ceiling::print();
    match row.as_str() {
        "ceiling" => flags.done(),
        "entry-create" => entries::create(flags),
        "entry-show" => entries::show(flags),
        "server-rss" => tokio::task::block_in_place(|| entries::server_rss(flags)),
        "propagation" => propagation::entry_to_stream(flags).await,
        "cold-start" => propagation::cold_start(flags).await,
        "jwt-new-audience" => propagation::jwt_new_audience(flags).await,
        "streams-rss" => streams::rss(flags).await,
        "streams-latency" => streams::latency(flags).await,
        "sds-rss" => sds::rss(flags).await,
        "issuance" | "jwt-fetch" => issuance::run(&row, flags).await,
        "ha-scale" => ha_scale::run(flags).await,
        "compare" => tokio::task::block_in_place(|| compare::run(flags)),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown row {other:?}\n{USAGE}"),
    }
}
