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
//! | `issuance` / `jwt-fetch` | X509-SVIDs for N entries of one agent, end to end; FetchJWTSVID for a caller with N identities |
//!
//! Loopback only; every loop is bounded.
#![allow(clippy::disallowed_methods)] // wall-clock timing is the point here

mod args;
mod ceiling;
mod entries;
mod issuance;

use anyhow::{bail, Result};

const USAGE: &str = "usage: spinel-bench <row> [--flag value ...]
rows:
  ceiling                                  P-256 sign/verify on one core
  entry-create --entries N --batch B       batch entry create, entries/s
  entry-show   --entries N                 entry show of N entries
  issuance --entries N | jwt-fetch --identities N --rounds R   X509-SVIDs end to end; FetchJWTSVID, N identities";

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
        "issuance" | "jwt-fetch" => issuance::run(&row, flags).await,
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown row {other:?}\n{USAGE}"),
    }
}
