//! Row (5): SPIRE's own sample configs, `conf/server/server.conf` and
//! `conf/agent/agent.conf` of the pinned spire module (read at test time
//! from the Go module cache, never copied into this repository), start
//! Spinel, or Spinel refuses them naming the file line and the key or
//! plugin on it.
//!
//! The configs run as SPIRE's README runs them, from a directory holding
//! `conf/` (their paths are relative). Only what would collide with other
//! tests changes: the TCP port and the socket path (SPIRE's are fixed), and
//! when the sample server cannot start, the agent's server and trust
//! bundle (those of a Spinel server started by the test).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use spinel_test_fixtures::process::{bin_path, free_port, poll, write_file, Process};
use spinel_test_fixtures::spinel::{run_cli, token_of, READY_TIMEOUT};

use crate::support::{ServerHandle, ServerOptions};

use super::{missing, repo_root, spire};

/// The spire module's directory in the Go module cache
/// (`go mod download -json`, which fetches it if needed).
fn spire_module_dir() -> Option<PathBuf> {
    let out = Command::new("go")
        .args(["mod", "download", "-json", "github.com/spiffe/spire"])
        .current_dir(repo_root().join("interop/spire"))
        .env("GOTOOLCHAIN", "local")
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            missing(&format!(
                "`go mod download github.com/spiffe/spire` failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
            return None;
        }
        Err(e) => {
            missing(&format!("cannot run `go` ({e}); install Go 1.26"));
            return None;
        }
    };
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    info["Dir"].as_str().map(PathBuf::from)
}

/// `text` with the value of every `key = "..."` line replaced by `value`;
/// fails unless exactly one line had the key.
fn set_value(text: &str, key: &str, value: &str) -> Result<String> {
    let mut hits = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix(key) {
            Some(rest) if rest.trim_start().starts_with('=') => {
                hits += 1;
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}{key} = \"{value}\"")
            }
            _ => l.to_owned(),
        })
        .collect();
    if hits != 1 {
        bail!("SPIRE's sample has {hits} `{key}` lines, expected 1:\n{text}");
    }
    Ok(lines.join("\n") + "\n")
}

/// How a sample config fared.
enum Outcome {
    /// Running and healthy (killed when dropped).
    Started { _process: Process },
    /// Refused at start; the message names `file:line` and the line's key
    /// or plugin.
    Refused(String),
}

/// Runs `<binary> run -config <config> <extra>` in `dir` until it is
/// healthy or exits; an exit must name the line and what is on it.
fn run_sample(
    binary: &str,
    dir: &Path,
    config: &str,
    socket: &Path,
    extra: &[&str],
) -> Result<Outcome> {
    let mut args = vec!["run", "-config", config];
    args.extend_from_slice(extra);
    let log = dir.join(format!("{binary}.log"));
    let mut process = Process::spawn_in(Some(dir), &bin_path(binary), &args, &[], &log)?;
    let socket = socket.display().to_string();
    let healthy = poll(
        READY_TIMEOUT,
        &format!("{binary} to start or refuse"),
        || {
            if !process.is_running() {
                return Ok(Some(false));
            }
            let out = run_cli(&bin_path(binary), &["healthcheck", "-socketPath", &socket])?;
            Ok(out.success().then_some(true))
        },
    )
    .with_context(|| format!("{binary} log:\n{}", process.log()))?;
    if healthy {
        return Ok(Outcome::Started { _process: process });
    }
    let message = process.log();
    let text = std::fs::read_to_string(dir.join(config))?;
    let line_no: usize = message
        .split(&format!("{config}:"))
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{binary} refused {config} without naming a line:\n{message}"))?;
    let line = text
        .lines()
        .nth(line_no.saturating_sub(1))
        .with_context(|| format!("{config} has no line {line_no}: {message}"))?;
    // The key, the plugin type or the plugin name on that line.
    let names: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || "\"={}".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    assert!(
        names.iter().any(|n| message.contains(n)),
        "{binary}'s refusal names line {line_no} ({line:?}) but none of {names:?}:\n{message}"
    );
    Ok(Outcome::Refused(message.trim().to_owned()))
}

#[test]
fn spires_sample_configs_start_spinel_or_name_what_is_unsupported() {
    let Some(_) = spire() else { return };
    let Some(module) = spire_module_dir() else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("spire-conf")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path();
    let copy = |rel: &str| {
        let bytes = std::fs::read(module.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        write_file(&root.join(rel), &String::from_utf8_lossy(&bytes)).unwrap();
    };
    for rel in [
        "conf/server/dummy_upstream_ca.key",
        "conf/server/dummy_upstream_ca.crt",
        "conf/agent/dummy_root_ca.crt",
    ] {
        copy(rel);
    }
    let server_socket = root.join("server/private/api.sock");
    let sample = std::fs::read_to_string(module.join("conf/server/server.conf")).unwrap();
    let port = free_port().unwrap();
    let conf = set_value(&sample, "bind_port", &port.to_string()).unwrap();
    let conf = set_value(&conf, "socket_path", &server_socket.display().to_string()).unwrap();
    write_file(&root.join("conf/server/server.conf"), &conf).unwrap();

    let server = run_sample(
        "spinel-server",
        root,
        "conf/server/server.conf",
        &server_socket,
        &[],
    )
    .unwrap();
    let mut harness_server = None;
    let mut agent_conf = std::fs::read_to_string(module.join("conf/agent/agent.conf")).unwrap();
    let agent_socket = root.join("agent/public/api.sock");
    agent_conf = set_value(
        &agent_conf,
        "socket_path",
        &agent_socket.display().to_string(),
    )
    .unwrap();
    let (token, server_port) = match &server {
        Outcome::Started { .. } => {
            let socket = server_socket.display().to_string();
            let out = run_cli(
                &bin_path("spinel-server"),
                &["token", "generate", "-socketPath", &socket],
            )
            .unwrap()
            .ok()
            .unwrap();
            // `Token: <t>` and, without -spiffeID, a warning line after it.
            let token = token_of(&out.stdout).unwrap();
            (token, port)
        }
        Outcome::Refused(message) => {
            eprintln!("SPIRE's conf/server/server.conf: Spinel refused it: {message}");
            let s = ServerHandle::start(ServerOptions::default()).unwrap();
            write_file(&root.join("bootstrap.pem"), &s.bundle_pem().unwrap()).unwrap();
            agent_conf = set_value(&agent_conf, "trust_bundle_path", "./bootstrap.pem").unwrap();
            let token = s.generate_token(None).unwrap();
            let port = s.port;
            harness_server = Some(s);
            (token, port)
        }
    };
    agent_conf = set_value(&agent_conf, "server_port", &server_port.to_string()).unwrap();
    write_file(&root.join("conf/agent/agent.conf"), &agent_conf).unwrap();

    let agent = run_sample(
        "spinel-agent",
        root,
        "conf/agent/agent.conf",
        &agent_socket,
        &["-joinToken", &token],
    )
    .unwrap();
    match &agent {
        Outcome::Started { .. } => {
            eprintln!("SPIRE's conf/agent/agent.conf: Spinel's agent started")
        }
        Outcome::Refused(message) => {
            eprintln!("SPIRE's conf/agent/agent.conf: Spinel refused it: {message}")
        }
    }
    drop(harness_server);
}
