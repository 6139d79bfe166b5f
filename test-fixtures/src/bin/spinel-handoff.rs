//! `spinel-handoff`: the PID-reuse attack on the Workload API, as a tool
//! for the test that proves it fails.
//!
//! ```text
//! spinel-handoff --socket PATH --trigger FILE
//! ```
//!
//! The process connects to the Workload API socket, starts a copy of
//! itself that inherits the connection (as its standard input), prints
//! `parent <pid>` and exits. The copy waits until FILE exists (by then the
//! test has made another process take the parent's PID), then calls
//! `FetchX509SVID` on the inherited connection and prints one JSON object:
//! `grpc_status`, `reset` and `message` (the response, lossily as text, so
//! SPIFFE IDs in it can be searched for).

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spinel_test_fixtures::grpc_raw::RawCall;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .with_context(|| format!("{flag} is required"))
    };
    let trigger = PathBuf::from(value("--trigger")?);
    if args.iter().any(|a| a == "--child") {
        return child(trigger);
    }
    let socket = value("--socket")?;
    let stream = std::os::unix::net::UnixStream::connect(&socket)
        .with_context(|| format!("connecting to {socket}"))?;
    let me = std::env::current_exe()?;
    Command::new(me)
        .args(["--child", "--trigger", &trigger.display().to_string()])
        .stdin(Stdio::from(OwnedFd::from(stream)))
        .spawn()
        .context("starting the child")?;
    println!("parent {}", std::process::id());
    Ok(())
}

fn child(trigger: PathBuf) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !trigger.exists() {
        if Instant::now() > deadline {
            bail!("{} did not appear", trigger.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let response = runtime.block_on(async {
        let stream = tokio::net::UnixStream::from_std(stream)?;
        RawCall {
            path: "/SpiffeWorkloadAPI/FetchX509SVID",
            authority: Some("localhost"),
            metadata: &[("workload.spiffe.io", "true")],
            message: &[],
        }
        .on(stream)
        .await
    })?;
    let report = serde_json::json!({
        "grpc_status": response.grpc_status,
        "reset": response.reset,
        "message": response.message.map(|m| String::from_utf8_lossy(&m).into_owned()),
    });
    println!("{report}");
    Ok(())
}
