//! `compare`: the side-by-side table of docs/benchmarks.md. Runs each
//! row of [`CASES`] as a child `spinel-bench <row> ... --impl spinel`,
//! then `--impl spire` (and again with `--spire-poll MS` where SPIRE's
//! polling decides the result), in the same run on the same machine, and
//! prints one table: Spinel, SPIRE and how many times better Spinel is
//! (SPIRE / Spinel for times and memory, Spinel / SPIRE for rates).
//!
//! Every child's output is echoed as it finishes, so the log of a
//! `compare` run holds every row's full lines (percentiles, ceilings).

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::args::Flags;

/// One row of the table: a `spinel-bench` row and the results it shows.
struct Case {
    /// Short name, for `--only`.
    name: &'static str,
    /// What the row measures, as the table says it.
    what: &'static str,
    /// The row and its flags.
    argv: &'static [&'static str],
    /// `--spire-poll` values to run SPIRE with beside its defaults.
    spire_polls: &'static [usize],
    /// `(result name, label)` pairs the table shows.
    results: &'static [(&'static str, &'static str)],
}

/// The rows of the side-by-side table.
const CASES: &[Case] = &[
    Case {
        name: "fetch-load",
        what:
            "FetchX509SVID, 500 streams open, 100 clients x 20/s for 10 s (1 of 1,000 SVIDs each)",
        argv: &[
            "streams-latency",
            "--entries",
            "1000",
            "--matching",
            "1",
            "--streams",
            "500",
            "--clients",
            "100",
            "--rate",
            "20",
            "--seconds",
            "10",
        ],
        spire_polls: &[],
        results: &[
            ("p50_ms", "p50"),
            ("p99_ms", "p99"),
            ("calls_per_s", "calls served"),
            ("cpu_us_per_call", "agent CPU per call"),
        ],
    },
    Case {
        name: "jwt-fetch",
        what: "FetchJWTSVID, caller with 120 identities, new audience each (10 rounds)",
        argv: &["jwt-fetch", "--identities", "120", "--rounds", "10"],
        spire_polls: &[],
        results: &[("median_ms", "median")],
    },
    Case {
        name: "jwt-new-audience",
        what: "FetchJWTSVID, 1 identity, new audience each (200 calls)",
        argv: &["jwt-new-audience", "--requests", "200"],
        spire_polls: &[],
        results: &[("p50_ms", "p50")],
    },
    Case {
        name: "propagation",
        what: "entry create returned -> workload stream shows the SVID (1 agent, 10 rounds)",
        argv: &["propagation", "--rounds", "10"],
        spire_polls: &[1000],
        results: &[("p50_ms", "p50"), ("p99_ms", "p99")],
    },
    Case {
        name: "cold-start",
        what: "cold start: agent process spawned -> workload's first X509-SVID (5 runs)",
        argv: &["cold-start", "--runs", "5"],
        spire_polls: &[],
        results: &[("p50_ms", "p50")],
    },
    Case {
        name: "issuance",
        what: "X.509 issuance: agent process spawned -> SVIDs held for all 5,000 of its entries",
        argv: &["issuance", "--entries", "5000", "--from", "agent-start"],
        spire_polls: &[1000],
        results: &[("svids_per_s", "rate")],
    },
    Case {
        name: "entry-create",
        what: "batch entry create, 2,000 entries in batches of 1,000 (each side's CLI)",
        argv: &["entry-create", "--entries", "2000", "--batch", "1000"],
        spire_polls: &[],
        results: &[("entries_per_s", "rate")],
    },
    Case {
        name: "entry-show",
        what: "entry show -output json of 2,000 entries (each side's CLI)",
        argv: &["entry-show", "--entries", "2000"],
        spire_polls: &[],
        results: &[("seconds", "time")],
    },
    Case {
        name: "streams-rss",
        what: "agent RSS, 1,000 SVIDs; 500 streams of 1 SVID each (2 cycles, 5 s settle)",
        argv: &[
            "streams-rss",
            "--entries",
            "1000",
            "--matching",
            "1",
            "--streams",
            "500",
            "--cycles",
            "2",
            "--settle",
            "5",
        ],
        spire_polls: &[],
        results: &[
            ("idle_mib", "idle"),
            ("open_peak_mib", "500 streams open"),
            ("after_close_mib", "after they close"),
        ],
    },
];

/// One result line of a child: `result: NAME VALUE UNIT lower|higher`.
#[derive(Debug, Clone, PartialEq)]
struct Found {
    name: String,
    value: f64,
    unit: String,
    higher_is_better: bool,
}

fn parse_results(stdout: &str) -> Vec<Found> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("result: ")?.split_whitespace();
            Some(Found {
                name: words.next()?.to_owned(),
                value: words.next()?.parse().ok()?,
                unit: words.next()?.to_owned(),
                higher_is_better: words.next()? == "higher",
            })
        })
        .collect()
}

/// Runs `spinel-bench argv... extra...` and returns its result lines.
fn run_child(argv: &[&str], extra: &[String]) -> Result<Vec<Found>> {
    let exe = std::env::current_exe().context("locating spinel-bench")?;
    println!("\n$ spinel-bench {} {}", argv.join(" "), extra.join(" "));
    let out = Command::new(exe)
        .args(argv)
        .args(extra)
        .output()
        .context("running spinel-bench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    if !out.status.success() {
        bail!(
            "spinel-bench {} failed:\n{}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(parse_results(&stdout))
}

/// A value as the table prints it.
fn show(f: &Found) -> String {
    let v = f.value;
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {}", f.unit)
}

/// How many times better `spinel` is than `spire` ("3.1x"; below 1 means
/// SPIRE is better).
fn ratio(spinel: &Found, spire: &Found) -> String {
    let r = if spinel.higher_is_better {
        spinel.value / spire.value
    } else {
        spire.value / spinel.value
    };
    if r.is_finite() {
        format!("{r:.1}x")
    } else {
        "-".into()
    }
}

/// The outcome of one child: its results, or why there are none.
type Outcome = Result<Vec<Found>, String>;

fn cell(outcome: &Outcome, name: &str) -> Option<Found> {
    outcome
        .as_ref()
        .ok()
        .and_then(|r| r.iter().find(|f| f.name == name).cloned())
}

/// `compare [--only NAME,NAME]`: the side-by-side table (every row, or
/// those named).
pub fn run(mut flags: Flags) -> Result<()> {
    let only = flags.text("only", "");
    flags.done()?;
    let only: Vec<&str> = only.split(',').filter(|s| !s.is_empty()).collect();
    for name in &only {
        if !CASES.iter().any(|c| c.name == *name) {
            bail!(
                "--only: no row {name:?}; rows: {}",
                CASES.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut table = vec![
        "| row | result | Spinel | SPIRE 1.13.3 | Spinel vs SPIRE |".to_owned(),
        "|---|---|---:|---:|---:|".to_owned(),
    ];
    for case in CASES
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.name))
    {
        let spinel: Outcome =
            run_child(case.argv, &["--impl".into(), "spinel".into()]).map_err(|e| format!("{e:#}"));
        let mut spires: Vec<(String, Outcome)> = Vec::new();
        let default = run_child(case.argv, &["--impl".into(), "spire".into()]);
        spires.push((String::new(), default.map_err(|e| format!("{e:#}"))));
        for ms in case.spire_polls {
            let polled = run_child(
                case.argv,
                &[
                    "--impl".into(),
                    "spire".into(),
                    "--spire-poll".into(),
                    ms.to_string(),
                ],
            );
            spires.push((
                format!(" (polls every {ms} ms)"),
                polled.map_err(|e| format!("{e:#}")),
            ));
        }
        let mut what = case.what;
        for (name, label) in case.results {
            for (suffix, spire) in &spires {
                let ours = cell(&spinel, name);
                let theirs = cell(spire, name);
                let (a, b, r) = match (&ours, &theirs) {
                    (Some(a), Some(b)) => (show(a), show(b), ratio(a, b)),
                    (Some(a), None) => (show(a), "failed".into(), "-".into()),
                    (None, Some(b)) => ("failed".into(), show(b), "-".into()),
                    (None, None) => ("failed".into(), "failed".into(), "-".into()),
                };
                table.push(format!("| {what} | {label}{suffix} | {a} | {b} | {r} |"));
                what = "";
            }
        }
        for (suffix, outcome) in std::iter::once((String::new(), &spinel))
            .chain(spires.iter().map(|(s, o)| (s.clone(), o)))
        {
            if let Err(e) = outcome {
                table.push(format!("| | failed{suffix}: {} | | | |", first_line(e)));
            }
        }
    }
    println!("\n{}", table.join("\n"));
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().replace('|', "/")
}
