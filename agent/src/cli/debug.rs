//! `spinel-agent debug explain -pid N`: why a process gets (or does not
//! get) an identity, through the agent's admin socket.
//!
//! Prints the selectors the agent attests for the process, the SPIFFE IDs
//! they give it, and, when none, the registration entries that come
//! closest with the selectors each lacks. Values are shown in full: the
//! admin socket is open only to its owner.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;
use spinel_proto::spinel::agent::debug::v1::debug_client::DebugClient;
use spinel_proto::spinel::agent::debug::v1::{ExplainWorkloadRequest, ExplainWorkloadResponse};

use super::api::Output;
use crate::workload_client::{status_error, unix_channel, with_timeout};

/// The admin socket the `debug` commands use unless told otherwise (the
/// sample config's `admin_socket_path`).
pub const DEFAULT_ADMIN_SOCKET_PATH: &str = "/tmp/spinel-agent/private/admin.sock";

/// `debug` subcommands.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Explains which identities a process gets, and why not.
    Explain(ExplainArgs),
}

/// `debug explain` flags.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The process to attest.
    #[arg(long = "pid")]
    pub pid: i32,
    /// Path to the agent's admin socket (`admin_socket_path`).
    #[arg(long = "adminSocketPath", default_value = DEFAULT_ADMIN_SOCKET_PATH)]
    pub admin_socket_path: PathBuf,
    /// Time to wait for a response.
    #[arg(long = "timeout", default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Output format.
    #[arg(long = "output", value_enum, default_value_t = Output::Pretty)]
    pub output: Output,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    spinel_config::duration::parse_go_duration(text).map_err(|e| e.to_string())
}

/// Runs a `debug` subcommand.
pub async fn run(cmd: DebugCommand) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::Explain(args) => explain(args).await,
    }
}

async fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let what = "explaining the workload";
    let response = with_timeout(args.timeout, what, async {
        let channel = unix_channel(&args.admin_socket_path, args.timeout, "agent admin API")
            .await
            .context("is admin_socket_path set in the agent config?")?;
        DebugClient::new(channel)
            .explain_workload(ExplainWorkloadRequest { pid: args.pid })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| status_error(what, &s))
    })
    .await?;
    match args.output {
        Output::Json => println!("{}", to_json(args.pid, &response)),
        Output::Pretty => print!("{}", pretty(args.pid, &response)),
    }
    Ok(())
}

fn to_json(pid: i32, r: &ExplainWorkloadResponse) -> serde_json::Value {
    let matches = |list: &[spinel_proto::spinel::agent::debug::v1::Match]| {
        list.iter()
            .map(
                |m| json!({"entry_id": m.entry_id, "spiffe_id": m.spiffe_id, "missing": m.missing}),
            )
            .collect::<Vec<_>>()
    };
    json!({
        "pid": pid,
        "uid": r.uid,
        "gid": r.gid,
        "ready": r.ready,
        "attestation_error": r.attestation_error,
        "selectors": r.selectors,
        "identities": matches(&r.identities),
        "closest": matches(&r.closest),
    })
}

fn pretty(pid: i32, r: &ExplainWorkloadResponse) -> String {
    let mut out = format!("Process {pid} (uid {}, gid {})\n", r.uid, r.gid);
    if !r.ready {
        out.push_str("The agent has not synced with its server yet: it issues nothing.\n");
    }
    if !r.attestation_error.is_empty() {
        let _ = writeln!(out, "Attestation failed: {}", r.attestation_error);
        return out;
    }
    let _ = writeln!(out, "Selectors ({}):", r.selectors.len());
    for s in &r.selectors {
        let _ = writeln!(out, "  {s}");
    }
    if !r.identities.is_empty() {
        let _ = writeln!(out, "Identities ({}):", r.identities.len());
        for m in &r.identities {
            let _ = writeln!(out, "  {} (entry {})", m.spiffe_id, m.entry_id);
        }
        return out;
    }
    out.push_str("Identities: none (the Workload API answers \"no identity issued\")\n");
    if r.closest.is_empty() {
        out.push_str("The agent holds no registration entries with selectors.\n");
        return out;
    }
    out.push_str("Closest entries:\n");
    for m in &r.closest {
        let _ = writeln!(out, "  {} (entry {}) lacks:", m.spiffe_id, m.entry_id);
        for s in &m.missing {
            let _ = writeln!(out, "    {s}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use spinel_proto::spinel::agent::debug::v1::Match;

    #[test]
    fn pretty_output_names_what_is_missing() {
        let r = ExplainWorkloadResponse {
            uid: 1000,
            gid: 100,
            selectors: vec!["unix:gid:100".into(), "unix:uid:1000".into()],
            closest: vec![Match {
                entry_id: "e1".into(),
                spiffe_id: "spiffe://example.org/db".into(),
                missing: vec!["unix:gid:50".into()],
            }],
            ready: true,
            ..Default::default()
        };
        assert_eq!(
            pretty(7, &r),
            "Process 7 (uid 1000, gid 100)\nSelectors (2):\n  unix:gid:100\n  unix:uid:1000\n\
             Identities: none (the Workload API answers \"no identity issued\")\n\
             Closest entries:\n  spiffe://example.org/db (entry e1) lacks:\n    unix:gid:50\n"
        );
        assert_eq!(to_json(7, &r)["closest"][0]["missing"][0], "unix:gid:50");
    }
}
