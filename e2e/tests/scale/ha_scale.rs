//! `spinel-bench ha-scale` in a CI size (issue 13's scale benchmark; the
//! full size is in docs/benchmarks.md): 200 simulated agents syncing
//! every 2 s with three servers on one real PostgreSQL. Behaviour only,
//! no timing: the bench exits 0, every agent got exactly its entries at
//! warm-up, no sync failed, and a restarted server answers a sync.

use std::process::Command;

use spinel_test_fixtures::{bin_path, postgres};

#[test]
fn two_hundred_agents_sync_with_three_servers_on_postgres() {
    if postgres::available().is_none() {
        eprintln!("skipped: needs PostgreSQL under /usr/lib/postgresql");
        return;
    }
    let out = Command::new(bin_path("spinel-bench"))
        .args(["ha-scale", "--agents", "200", "--entries", "2000"])
        .args(["--servers", "3", "--seconds", "12", "--interval-ms", "2000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "spinel-bench ha-scale failed:\n{stdout}\n{stderr}"
    );
    for line in [
        "warm-up: every agent got exactly its entries (10 or 10 each)",
        "syncs failed: 0\n",
        "ha-scale summary: 200 agents, 2000 entries, 3 servers: ",
        ", 0 failed,",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    let done: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("syncs done: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `syncs done` line in:\n{stdout}"));
    // 200 agents for 12 s at one sync per 2 s each: 1,200 syncs when none
    // runs late; any number of them shows the window ran.
    assert!(done >= 200, "only {done} syncs:\n{stdout}");
    assert!(
        stdout.contains("cache build: server 1 restarted with 2000 entries"),
        "no restart figures in:\n{stdout}"
    );
}
