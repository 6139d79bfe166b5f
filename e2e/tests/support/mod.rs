//! What several areas of the whole-system tests share. Add here what a
//! second area needs; what one area needs stays in its folder.
//!
//! - `crash`: `kill -9` a real server at a failpoint and check what it
//!   comes back with (the `crash/` tests);
//! - `psat`: a server and agents attesting with `k8s_psat` against the fake
//!   kube-apiserver (`kubernetes/`, `resilience/`, `agent/`);
//! - `raw_agent`: a tonic client attesting as an agent, the admin socket
//!   as a channel and the audit log lines (`audit/`, `propagation/`);
//! - `sql`: servers on `DataStore "sql"` (`backends/`, `resilience/`).
//!
//! This file: the other local user (`nobody`), CPU time of a process,
//! a tonic Workload API client with a chosen receive limit
//! ([`workload_api_client`]) and [`wait_until`].

pub mod crash;
pub mod psat;
pub mod raw_agent;
pub mod sql;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

/// The user ID tests use for "another local user" (nobody).
pub const NOBODY: u32 = 65534;

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// A tonic Workload API client on a new connection to `socket`, accepting
/// messages of up to `max_message` bytes (gRPC clients default to 4 MiB).
pub async fn workload_api_client(
    socket: &Path,
    max_message: usize,
) -> spinel_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient<
    tonic::transport::Channel,
> {
    let socket: PathBuf = socket.to_owned();
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .unwrap();
    spinel_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(channel)
        .max_decoding_message_size(max_message)
}

/// Opens the agent's directories to other users (the harness makes them
/// 0700), so that another user can reach its Workload API socket.
pub fn share_with_nobody(agent: &AgentHandle) {
    for dir in [agent.dir.path(), agent.socket_path.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Starts one of this workspace's binaries as [`NOBODY`], stdout and
/// stderr piped. The build directory may not be reachable by another
/// user, so a copy in a world-readable directory runs.
pub fn run_as_nobody(binary: &str, args: &[&str]) -> Child {
    let copy = nobody_copy(binary);
    Command::new(&copy)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} as uid {NOBODY}: {e}", copy.display()))
}

fn nobody_copy(binary: &str) -> PathBuf {
    let dir = Path::new("/tmp/spinel-e2e-bin");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // One copy per build of the binary, shared by the test processes that
    // run in parallel: written under a private name, then renamed.
    let source = spinel_test_fixtures::bin_path(binary);
    let meta = std::fs::metadata(&source).unwrap();
    let built = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let copy = dir.join(format!("{binary}-{}-{built}", meta.len()));
    if !copy.exists() {
        let temp = dir.join(format!(".{binary}-{}", std::process::id()));
        std::fs::copy(&source, &temp).unwrap();
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&temp, &copy).unwrap();
    }
    copy
}

/// Polls `ready` every 100 ms for up to `limit`; returns how long it took.
/// On timeout the test fails, naming `what` and showing `log()` (usually a
/// process's log).
pub fn wait_until(
    what: &str,
    limit: Duration,
    log: impl Fn() -> String,
    mut ready: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < limit,
            "{what} within {limit:?}; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}
