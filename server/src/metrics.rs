//! The server's Prometheus metrics (`telemetry { Prometheus { ... } }`),
//! named as SPIRE names them where SPIRE has the metric (docs/metrics.md
//! has the table).
//!
//! Events are counted where they happen, in the process-wide [`metrics`]
//! (a counter increment, nothing else): SVIDs signed (`ca/mod.rs`),
//! authorities activated (`ca/operations.rs`), node attestations
//! (`api/attest.rs`), the server's own SVID rotated (`tls.rs`), and every
//! gRPC call ([`ServerMetrics::rpc`], one layer on both listeners).
//! Counts and times that live elsewhere (entries, agents, the CA's
//! NotAfter) are read at each scrape by [`render`]. Label values come from
//! fixed sets: attestor names the server has, gRPC code names, methods of
//! the method table, the trust domain.

use std::sync::{Arc, LazyLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use spinel_spiffe::clock;
use spinel_telemetry::{Registry, Render, RpcMetrics};

use crate::ca::Ca;
use crate::datastore::DataStore;

/// The prefix of every metric name unless `MetricPrefix` says otherwise
/// (SPIRE's).
pub const DEFAULT_PREFIX: &str = "spire_server";

/// Labels of a node attestation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttestationLabels {
    /// The node attestor (`join_token`, `k8s_psat`; `unknown` for a type
    /// the server does not have).
    pub attestor: &'static str,
    /// The gRPC code name of the outcome (`OK`, `PermissionDenied`...).
    pub status: &'static str,
}

/// Labels of a per-trust-domain gauge (SPIRE's `trust_domain_id`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrustDomainLabels {
    trust_domain_id: String,
}

/// The server's event counters, process-wide.
#[derive(Debug)]
pub struct ServerMetrics {
    /// Every gRPC call of both listeners.
    pub rpc: RpcMetrics,
    /// X509-SVIDs signed (SPIRE `server_ca.sign.x509_svid`).
    pub x509_svids_signed: Counter,
    /// JWT-SVIDs signed (SPIRE `server_ca.sign.jwt_svid`).
    pub jwt_svids_signed: Counter,
    /// Node attestations by attestor and outcome.
    pub node_attestations: Family<AttestationLabels, Counter>,
    /// X.509 authorities activated, by rotation or by hand (SPIRE
    /// `ca.manager.x509_ca.activate`).
    pub x509_ca_activations: Counter,
    /// JWT keys activated (SPIRE `manager.jwt_key.activate`).
    pub jwt_key_activations: Counter,
    /// The server's own TLS SVID rotated (SPIRE `svid.rotate`).
    pub svid_rotations: Counter,
}

static METRICS: LazyLock<ServerMetrics> = LazyLock::new(|| ServerMetrics {
    rpc: RpcMetrics::new(known_method),
    x509_svids_signed: Counter::default(),
    jwt_svids_signed: Counter::default(),
    node_attestations: Family::default(),
    x509_ca_activations: Counter::default(),
    jwt_key_activations: Counter::default(),
    svid_rotations: Counter::default(),
});

/// The process's counters.
pub fn metrics() -> &'static ServerMetrics {
    &METRICS
}

/// Counts one node attestation.
pub fn node_attestation(attestor: Option<&'static str>, code: tonic::Code) {
    let labels = AttestationLabels {
        attestor: attestor.unwrap_or("unknown"),
        status: spinel_telemetry::rpc::code_name(i32::from(code)),
    };
    METRICS.node_attestations.get_or_create(&labels).inc();
}

fn known_method(path: &str) -> Option<&'static str> {
    crate::api::METHODS
        .iter()
        .find(|m| m.path == path)
        .map(|m| m.path)
}

/// Values read at each scrape.
#[derive(Debug)]
struct Scraped {
    entries: Gauge,
    agents: Gauge,
    x509_ca_expiration: Family<TrustDomainLabels, Gauge>,
    jwt_key_expiration: Family<TrustDomainLabels, Gauge>,
    uptime_ms: Gauge,
}

/// The scrape of one running server: its counters under `prefix`, and
/// what is read from `datastore` and `ca` at each scrape.
pub fn render(prefix: &str, datastore: Arc<dyn DataStore>, ca: Arc<Ca>) -> Render {
    let started = tokio::time::Instant::now();
    let mut registry = Registry::with_prefix(prefix);
    let m = metrics();
    m.rpc.register(&mut registry);
    registry.register(
        "server_ca_sign_x509_svid",
        "X509-SVIDs signed",
        m.x509_svids_signed.clone(),
    );
    registry.register(
        "server_ca_sign_jwt_svid",
        "JWT-SVIDs signed",
        m.jwt_svids_signed.clone(),
    );
    registry.register(
        "node_attestations",
        "Node attestations, by attestor and gRPC status",
        m.node_attestations.clone(),
    );
    registry.register(
        "ca_manager_x509_ca_activate",
        "X.509 authorities activated",
        m.x509_ca_activations.clone(),
    );
    registry.register(
        "manager_jwt_key_activate",
        "JWT keys activated",
        m.jwt_key_activations.clone(),
    );
    registry.register(
        "svid_rotate",
        "The server's own TLS SVID rotated",
        m.svid_rotations.clone(),
    );
    let scraped = Scraped {
        entries: Gauge::default(),
        agents: Gauge::default(),
        x509_ca_expiration: Family::default(),
        jwt_key_expiration: Family::default(),
        uptime_ms: Gauge::default(),
    };
    registry.register(
        "entry_entries_by_entryid_cache_count",
        "Registration entries stored",
        scraped.entries.clone(),
    );
    registry.register(
        "node_agents_by_id_cache_count",
        "Attested agents stored",
        scraped.agents.clone(),
    );
    registry.register(
        "manager_x509_ca_rotate_expiration",
        "NotAfter of the active X.509 authority, in seconds since the epoch",
        scraped.x509_ca_expiration.clone(),
    );
    registry.register(
        "manager_jwt_key_rotate_expiration",
        "NotAfter of the active JWT key, in seconds since the epoch",
        scraped.jwt_key_expiration.clone(),
    );
    registry.register(
        "uptime_in_ms",
        "Time since the server started, in milliseconds",
        scraped.uptime_ms.clone(),
    );
    let shared = Arc::new((registry, scraped, datastore, ca, started));
    Arc::new(move || {
        let shared = shared.clone();
        Box::pin(async move {
            let (registry, scraped, datastore, ca, started) = &*shared;
            read_now(scraped, datastore, ca, *started).await;
            spinel_telemetry::encode(registry)
        })
    })
}

async fn read_now(
    scraped: &Scraped,
    datastore: &Arc<dyn DataStore>,
    ca: &Ca,
    started: tokio::time::Instant,
) {
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    match datastore.count_entries().await {
        Ok(n) => {
            scraped.entries.set(gauge(n));
        }
        Err(e) => tracing::warn!(error = %e, "metrics: counting entries failed"),
    }
    match datastore.count_agents().await {
        Ok(n) => {
            scraped.agents.set(gauge(n));
        }
        Err(e) => tracing::warn!(error = %e, "metrics: counting agents failed"),
    }
    let td = TrustDomainLabels {
        trust_domain_id: ca.trust_domain().to_string(),
    };
    if let Some(not_after) = ca.ca_not_after() {
        scraped
            .x509_ca_expiration
            .get_or_create(&td)
            .set(clock::to_unix_seconds(not_after));
    }
    if let Some(not_after) = ca.jwt_key_not_after() {
        scraped
            .jwt_key_expiration
            .get_or_create(&td)
            .set(clock::to_unix_seconds(not_after));
    }
    let uptime = started.elapsed().as_millis();
    scraped
        .uptime_ms
        .set(i64::try_from(uptime).unwrap_or(i64::MAX));
}
