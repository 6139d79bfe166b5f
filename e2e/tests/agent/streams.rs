//! End to end: many long-lived `FetchX509SVID` streams of one workload on a
//! real agent. Every stream gets the same full response, and the update
//! when an SVID is replaced; the agent's memory does not grow from one
//! cycle of opening and closing them to the next (identical responses are
//! shared, not copied per stream).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::Path;
use std::time::Duration;

use spinel_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spinel_proto::workload::{X509svidRequest, X509svidResponse};
use spinel_test_fixtures::process::{my_uid, write_file};
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};
use tonic::transport::Channel;
use tonic::Streaming;

const ALIAS: &str = "spiffe://example.org/streams-node";
/// Entries this test's uid gets.
const ENTRIES: usize = 300;
/// Streams open at once.
const STREAMS: usize = 200;
const CYCLES: usize = 4;
/// How much the agent's RSS may grow from the first cycle to the last.
/// Copies per stream would be ~90 MiB per cycle (200 streams x 300 SVIDs).
const GROWTH_BOUND_MIB: f64 = 24.0;
/// How much RSS 200 open streams may add: far below one copy each.
const OPEN_BOUND_MIB: f64 = 48.0;

type Client = SpiffeWorkloadApiClient<Channel>;

async fn connect(socket: &Path) -> Client {
    crate::support::workload_api_client(socket, 64 << 20).await
}

async fn open(client: &mut Client) -> (X509svidResponse, Streaming<X509svidResponse>) {
    let mut request = tonic::Request::new(X509svidRequest {});
    request.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut stream = client.fetch_x509svid(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    (first, stream)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

fn spiffe_id(i: usize) -> String {
    format!("spiffe://example.org/streams/{i:04}")
}

fn start() -> (ServerHandle, AgentHandle, String) {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let uid = format!("uid:{}", my_uid());
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let entries: Vec<serde_json::Value> = (1..ENTRIES)
        .map(|i| {
            serde_json::json!({
                "spiffe_id": spiffe_id(i),
                "parent_id": ALIAS,
                "selectors": [{"type": "unix", "value": uid}],
            })
        })
        .collect();
    let data = dir.path().join("entries.json");
    write_file(
        &data,
        &serde_json::json!({ "entries": entries }).to_string(),
    )
    .unwrap();
    server
        .cli(&["entry", "create", "-data", data.to_str().unwrap()])
        .unwrap()
        .ok()
        .unwrap();
    // Entry 0, the one the test replaces the SVID of.
    let selector = format!("unix:{uid}");
    let id0 = spiffe_id(0);
    let entry_id = server
        .create_entry(&[
            "-parentID",
            ALIAS,
            "-spiffeID",
            &id0,
            "-selector",
            &selector,
        ])
        .unwrap();
    let token = server.generate_token(Some(ALIAS)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    (server, agent, entry_id)
}

async fn wait_for_all(socket: &Path) {
    for _ in 0..600 {
        let (first, _) = open(&mut connect(socket).await).await;
        if first.svids.len() == ENTRIES {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the agent never served all {ENTRIES} SVIDs");
}

/// Opens `STREAMS` streams, each on its own connection; all first
/// responses must be the same full response.
async fn open_all(socket: &Path) -> (X509svidResponse, Vec<(Client, Streaming<X509svidResponse>)>) {
    let mut all = Vec::new();
    let mut reference: Option<X509svidResponse> = None;
    for _ in 0..STREAMS {
        let mut client = connect(socket).await;
        let (first, stream) = open(&mut client).await;
        assert_eq!(first.svids.len(), ENTRIES);
        match &reference {
            Some(r) => assert!(*r == first, "two streams got different responses"),
            None => reference = Some(first),
        }
        all.push((client, stream));
    }
    (reference.unwrap(), all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_responses_and_memory_stays_flat() {
    let (server, agent, entry_id) = start();
    let pid = agent.process.as_ref().unwrap().pid().unwrap();
    let socket = agent.socket_path.clone();
    wait_for_all(&socket).await;

    let mut closed = Vec::new();
    for cycle in 0..CYCLES {
        let before = rss_mib(pid);
        let (_, streams) = open_all(&socket).await;
        let with = rss_mib(pid);
        assert!(
            with - before < OPEN_BOUND_MIB,
            "cycle {cycle}: {STREAMS} streams took the agent from {before:.1} to {with:.1} MiB"
        );
        drop(streams);
        // Let the closed streams' tasks end and the allocator return
        // memory (jemalloc's background thread).
        tokio::time::sleep(Duration::from_secs(3)).await;
        closed.push(rss_mib(pid));
    }
    let (first, last) = (closed[0], closed[CYCLES - 1]);
    assert!(
        last - first < GROWTH_BOUND_MIB,
        "agent RSS after each cycle: {closed:?} MiB"
    );

    // A replaced SVID reaches every stream, the same update for all.
    let (initial, mut streams) = open_all(&socket).await;
    let id0 = spiffe_id(0);
    let selector = format!("unix:uid:{}", my_uid());
    server
        .cli(&[
            "entry",
            "update",
            "-entryID",
            &entry_id,
            "-parentID",
            ALIAS,
            "-spiffeID",
            &id0,
            "-selector",
            &selector,
            "-dns",
            "replaced.example.org",
        ])
        .unwrap()
        .ok()
        .unwrap();
    let svid_of = |r: &X509svidResponse| {
        r.svids
            .iter()
            .find(|s| s.spiffe_id == id0)
            .map(|s| s.x509_svid.clone())
            .unwrap()
    };
    let mut update: Option<X509svidResponse> = None;
    for (_, stream) in &mut streams {
        let next = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                let next = stream.message().await.unwrap().unwrap();
                if svid_of(&next) != svid_of(&initial) {
                    return next;
                }
            }
        })
        .await
        .expect("no new SVID for entry 0 within 120 s");
        assert_eq!(next.svids.len(), ENTRIES);
        match &update {
            Some(u) => assert!(*u == next, "two streams got different updates"),
            None => update = Some(next),
        }
    }
    drop(server);
}
