//! Load tool: Workload API attestation by Kubernetes pod metadata, with a
//! large pod list on the node.
//!
//! Starts a real `spinel-server` and `spinel-agent` (from the same target
//! directory, or `SPINEL_BIN_DIR`), a fake kubelet listing `--pods` pods
//! (each with `--containers` containers, real Kubernetes JSON), registers
//! one of them, moves this process into that pod's cgroup (root needed),
//! and makes `--clients` concurrent Workload API clients each fetch an
//! X509-SVID `--requests` times. Prints latency percentiles, the kubelet
//! requests made, and the agent's peak resident memory. Loopback only;
//! every loop is bounded.
//!
//! ```sh
//! cargo build --release --bins
//! sudo target/release/spinel-k8s-load --pods 500 --clients 32 --requests 50
//! ```
#![allow(clippy::disallowed_methods)] // wall-clock timing is the point here

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use spiffe::WorkloadApiClient;
use spinel_test_fixtures::cgroup::{Layout, PodCgroup};
use spinel_test_fixtures::k8s::{FakeKubelet, KubeletOptions, PodBuilder};
use spinel_test_fixtures::process::write_file;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

struct Args {
    pods: usize,
    containers: usize,
    clients: usize,
    requests: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        pods: 500,
        containers: 3,
        clients: 32,
        requests: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| format!("{flag} needs a number"))?;
        match flag.trim_start_matches('-') {
            "pods" => args.pods = value.max(1),
            "containers" => args.containers = value.max(1),
            "clients" => args.clients = value.clamp(1, 1024),
            "requests" => args.requests = value.clamp(1, 100_000),
            other => bail!("unknown flag -{other} (use --pods --containers --clients --requests)"),
        }
    }
    Ok(args)
}

fn vm_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "?".into())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let layout = Layout::V1Cgroupfs;
    if !PodCgroup::available(layout) {
        bail!("needs root and the cgroup v1 pids hierarchy (or run the tests instead)");
    }
    let kubelet = FakeKubelet::start(KubeletOptions {
        token: Some("load-token".into()),
        ..Default::default()
    })?;
    let mut pods = Vec::with_capacity(args.pods);
    let mut target = None;
    for i in 0..args.pods {
        let mut b = PodBuilder::new(format!("ns-{}", i % 20), format!("app-{i}-7d9f8b6c5-x2kqj"))
            .service_account(format!("sa-{}", i % 50))
            .label("app", format!("app-{i}"))
            .label("team", "payments")
            .owner(
                "ReplicaSet",
                format!("app-{i}-7d9f8b6c5"),
                uuid::Uuid::new_v4().to_string(),
            );
        for c in 0..args.containers {
            b = b.container(format!("c{c}"), format!("ghcr.io/acme/app-{i}-c{c}:1.{c}"));
        }
        if i == args.pods / 2 {
            target = Some((
                b.pod_uid().to_owned(),
                b.container_id("c0").context("container c0")?.to_owned(),
                format!("ns-{}", i % 20),
                format!("sa-{}", i % 50),
            ));
        }
        pods.push(b.build());
    }
    let list_bytes = serde_json::to_vec(&pods)?.len();
    kubelet.set_pods(pods);
    let (pod_uid, container_id, ns, sa) = target.context("no target pod")?;

    let server = ServerHandle::start(ServerOptions::default())?;
    let alias = "spiffe://example.org/node";
    let token = server.generate_token(Some(alias))?;
    let files = tempfile::tempdir_in("/tmp")?;
    let ca = files.path().join("kubelet-ca.pem");
    kubelet.write_ca(&ca)?;
    let token_path = files.path().join("token");
    write_file(&token_path, "load-token")?;
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            plugins_extra: format!(
                "    WorkloadAttestor \"k8s\" {{\n        plugin_data {{\n            node_name = \"127.0.0.1\"\n            kubelet_secure_port = {}\n            kubelet_ca_path = \"{}\"\n            token_path = \"{}\"\n        }}\n    }}",
                kubelet.secure_port(),
                ca.display(),
                token_path.display()
            ),
            ..Default::default()
        },
    )?;
    let id = format!("spiffe://example.org/ns/{ns}/sa/{sa}");
    server.create_entry(&[
        "-parentID",
        alias,
        "-spiffeID",
        &id,
        "-selector",
        &format!("k8s:ns:{ns}"),
        "-selector",
        &format!("k8s:sa:{sa}"),
    ])?;
    let agent_pid = agent
        .process
        .as_ref()
        .and_then(|p| p.pid())
        .context("agent pid")?;

    let client = WorkloadApiClient::connect_to(agent.endpoint()).await?;
    let _in_pod = PodCgroup::enter(layout, &pod_uid, &container_id)?;
    let ready_by = Instant::now() + Duration::from_secs(30);
    while client
        .fetch_x509_svid()
        .await
        .map(|s| s.spiffe_id().to_string() != id)
        .unwrap_or(true)
    {
        if Instant::now() > ready_by {
            bail!("no SVID for {id} within 30 s; agent log:\n{}", agent.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let kubelet_before = kubelet.pods_requests();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let client = WorkloadApiClient::connect_to(agent.endpoint()).await?;
        let (id, requests) = (id.clone(), args.requests);
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(requests);
            for _ in 0..requests {
                let t = Instant::now();
                let svid = client.fetch_x509_svid().await?;
                times.push(t.elapsed());
                if svid.spiffe_id().to_string() != id {
                    bail!("got {} instead of {id}", svid.spiffe_id());
                }
            }
            Ok::<_, anyhow::Error>(times)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = started.elapsed();
    all.sort();
    println!(
        "pods={} containers/pod={} pod list JSON={} KiB clients={} requests/client={}",
        args.pods,
        args.containers,
        list_bytes / 1024,
        args.clients,
        args.requests
    );
    println!(
        "fetches={} in {:.2?} ({:.0}/s); latency p50={:.2?} p90={:.2?} p99={:.2?} max={:.2?}",
        all.len(),
        wall,
        all.len() as f64 / wall.as_secs_f64(),
        percentile(&all, 0.5),
        percentile(&all, 0.9),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
    println!(
        "kubelet GET /pods during the run: {}; agent VmHWM={} VmRSS={}",
        kubelet.pods_requests() - kubelet_before,
        vm_field(agent_pid, "VmHWM:"),
        vm_field(agent_pid, "VmRSS:")
    );
    Ok(())
}
