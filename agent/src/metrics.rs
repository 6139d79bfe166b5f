//! The agent's Prometheus metrics (`telemetry { Prometheus { ... } }`),
//! named as SPIRE names them where SPIRE has the metric (docs/metrics.md
//! has the table).
//!
//! Events are counted where they happen, in the process-wide [`metrics`]
//! (a counter increment, nothing else): sync rounds (`manager/sync/run.rs`),
//! agent SVID renewals (`manager/sync/round.rs`), node attestations
//! (`manager/identity/attest.rs`), kubelet requests (the `k8s` workload
//! attestor), Workload API connections (`workload_api/mod.rs`) and every
//! Workload API call ([`AgentMetrics::rpc`], one layer on the socket).
//! Cache sizes and open connections are read at each scrape by [`render`].
//! Label values come from fixed sets (method names, gRPC code names,
//! attestor names, `success`/`failure`): no SPIFFE ID or entry ID.

use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use spinel_spiffe::Clock;
use spinel_telemetry::{Registry, Render, RpcMetrics};
use spinel_transport::Limiter;

use crate::cache::Cache;

/// The prefix of every metric name unless `MetricPrefix` says otherwise
/// (SPIRE's).
pub const DEFAULT_PREFIX: &str = "spire_agent";

/// Bucket bounds of `sync_duration_seconds`, from 5 ms to 60 s.
const SYNC_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// The methods the Workload API socket serves (and SDS, which shares it),
/// for the RPC layer: other paths are counted as `unknown`.
const WORKLOAD_SOCKET_METHODS: &[&str] = &[
    "/SpiffeWorkloadAPI/FetchX509SVID",
    "/SpiffeWorkloadAPI/FetchX509Bundles",
    "/SpiffeWorkloadAPI/FetchJWTSVID",
    "/SpiffeWorkloadAPI/FetchJWTBundles",
    "/SpiffeWorkloadAPI/ValidateJWTSVID",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
    "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets",
];

fn known_method(path: &str) -> Option<&'static str> {
    WORKLOAD_SOCKET_METHODS
        .iter()
        .find(|m| **m == path)
        .copied()
}

/// Labels of an outcome that is a success or a failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Labels of a node attestation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttestorLabels {
    /// The node attestor (`join_token`, `k8s_psat`).
    pub attestor: &'static str,
}

fn outcome(ok: bool) -> ResultLabels {
    ResultLabels {
        result: if ok { "success" } else { "failure" },
    }
}

/// The agent's event counters, process-wide.
#[derive(Debug)]
pub struct AgentMetrics {
    /// Every call on the Workload API socket.
    pub rpc: RpcMetrics,
    /// Sync rounds with the server, by outcome.
    pub sync_rounds: Family<ResultLabels, Counter>,
    /// How long sync rounds take.
    pub sync_duration: Histogram,
    /// The agent's own SVID renewed or re-attested (SPIRE
    /// `agent_svid.rotate`).
    pub agent_svid_rotations: Counter,
    /// Successful node attestations (SPIRE `node.attestor.new_svid`).
    pub node_attestations: Family<AttestorLabels, Counter>,
    /// Requests to the kubelet's `/pods`, by outcome.
    pub kubelet_requests: Family<ResultLabels, Counter>,
    /// Workload API connections accepted (SPIRE `workload_api.connection`).
    pub workload_api_connections: Counter,
    /// The Workload API socket's connection limiter (open connections).
    workload_api_open: Mutex<Option<Limiter<u32>>>,
}

static METRICS: LazyLock<AgentMetrics> = LazyLock::new(|| AgentMetrics {
    rpc: RpcMetrics::new(known_method),
    sync_rounds: Family::default(),
    sync_duration: Histogram::new(SYNC_BUCKETS),
    agent_svid_rotations: Counter::default(),
    node_attestations: Family::default(),
    kubelet_requests: Family::default(),
    workload_api_connections: Counter::default(),
    workload_api_open: Mutex::new(None),
});

/// The process's counters.
pub fn metrics() -> &'static AgentMetrics {
    &METRICS
}

/// Counts one sync round that took `took`.
pub fn sync_round(took: Duration, ok: bool) {
    METRICS.sync_duration.observe(took.as_secs_f64());
    METRICS.sync_rounds.get_or_create(&outcome(ok)).inc();
}

/// Counts one kubelet request.
pub fn kubelet_request(ok: bool) {
    METRICS.kubelet_requests.get_or_create(&outcome(ok)).inc();
}

/// Counts one successful node attestation with `attestor`.
pub fn node_attestation(attestor: &'static str) {
    METRICS
        .node_attestations
        .get_or_create(&AttestorLabels { attestor })
        .inc();
}

/// Counts the Workload API connections `incoming` yields, and reads the
/// open ones from `open` (the socket's limiter) at each scrape.
pub fn count_workload_connections<S, C, E>(
    open: Limiter<u32>,
    incoming: S,
) -> impl Stream<Item = Result<C, E>>
where
    S: Stream<Item = Result<C, E>>,
{
    *METRICS
        .workload_api_open
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(open);
    incoming.inspect(|accepted| {
        if accepted.is_ok() {
            METRICS.workload_api_connections.inc();
        }
    })
}

/// Values read at each scrape.
#[derive(Debug)]
struct Scraped {
    entries: Gauge,
    svids: Gauge,
    connections: Gauge,
    uptime_ms: Gauge,
}

/// The scrape of the running agent: its counters under `prefix`, and the
/// cache sizes and open connections read at each scrape.
pub fn render(prefix: &str, cache: Cache, clock: Clock) -> Render {
    let started = tokio::time::Instant::now();
    let mut registry = Registry::with_prefix(prefix);
    let m = metrics();
    m.rpc.register(&mut registry);
    registry.register(
        "manager_sync_rounds",
        "Sync rounds with the server, by result",
        m.sync_rounds.clone(),
    );
    registry.register(
        "manager_sync_duration_seconds",
        "Time a sync round with the server takes",
        m.sync_duration.clone(),
    );
    registry.register(
        "agent_svid_rotate",
        "The agent's own SVID renewed (or the agent attested again for it)",
        m.agent_svid_rotations.clone(),
    );
    registry.register(
        "node_attestor_new_svid",
        "Successful node attestations, by attestor",
        m.node_attestations.clone(),
    );
    registry.register(
        "k8s_kubelet_requests",
        "Requests to the kubelet for the node's pods, by result",
        m.kubelet_requests.clone(),
    );
    registry.register(
        "workload_api_connection",
        "Workload API connections accepted",
        m.workload_api_connections.clone(),
    );
    let scraped = Scraped {
        entries: Gauge::default(),
        svids: Gauge::default(),
        connections: Gauge::default(),
        uptime_ms: Gauge::default(),
    };
    registry.register(
        "lru_cache_record_map_size",
        "Registration entries in the agent's cache",
        scraped.entries.clone(),
    );
    registry.register(
        "lru_cache_svid_map_size",
        "Unexpired X509-SVIDs in the agent's cache",
        scraped.svids.clone(),
    );
    registry.register(
        "workload_api_connections",
        "Workload API connections open",
        scraped.connections.clone(),
    );
    registry.register(
        "uptime_in_ms",
        "Time since the metrics listener started, in milliseconds",
        scraped.uptime_ms.clone(),
    );
    let shared = Arc::new((registry, scraped, cache, clock, started));
    Arc::new(move || {
        let shared = shared.clone();
        Box::pin(async move {
            let (registry, scraped, cache, clock, started) = &*shared;
            read_now(scraped, cache, clock, *started);
            spinel_telemetry::encode(registry)
        })
    })
}

fn read_now(scraped: &Scraped, cache: &Cache, clock: &Clock, started: tokio::time::Instant) {
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let snapshot = cache.snapshot();
    let now = clock.now();
    scraped.entries.set(gauge(snapshot.identities.len()));
    scraped.svids.set(gauge(
        snapshot
            .identities
            .values()
            .filter(|i| i.svid.not_after > now)
            .count(),
    ));
    let open = METRICS
        .workload_api_open
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map_or(0, Limiter::open);
    scraped.connections.set(gauge(open));
    let uptime = started.elapsed().as_millis();
    scraped
        .uptime_ms
        .set(i64::try_from(uptime).unwrap_or(i64::MAX));
}
