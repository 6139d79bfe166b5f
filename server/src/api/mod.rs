//! The server's gRPC API: SPIRE's server API on the wire.
//!
//! One router ([`routes`]) serves both listeners: the TCP listener (TLS,
//! agents and mTLS admins, see [`crate::tls`]) and the admin Unix socket (local
//! callers are admins). Services:
//!
//! | service | file | who |
//! | --- | --- | --- |
//! | `spire.api.server.agent.v1.Agent` | `agent.rs` | attestation: anyone; renewal: agents; management: admins |
//! | `spire.api.server.entry.v1.Entry` | `entry.rs` | authorized entries: agents; the rest: admins |
//! | `spire.api.server.svid.v1.SVID` | `svid.rs` | `BatchNewX509SVID`/`NewJWTSVID`: agents; `Mint*`: admins |
//! | `spire.api.server.bundle.v1.Bundle` | `bundle.rs` | `GetBundle`: anyone; the rest: admins |
//! | `spire.api.server.trustdomain.v1.TrustDomain` | `trustdomain.rs` | admins |
//! | `spire.api.server.localauthority.v1.LocalAuthority` | `localauthority.rs` | admins |
//! | `spire.api.server.logger.v1.Logger` | `logger.rs` | the admin socket |
//! | `grpc.health.v1.Health` | `health.rs` | the admin socket |
//! | `spinel.server.v1.Watch` | `watch.rs` | agents (Spinel's own: change push) |
//!
//! Two layers wrap the router on both listeners: with
//! `audit_log_enabled`, [`audit::AuditLayer`] writes one JSON line per
//! call; [`crate::notify::NotifyLayer`] pokes [`crate::notify::Changes`]
//! after every call the method table marks as mutating ([`mutates`]),
//! which is what wakes the `Watch` streams.
//!
//! Every handler starts with [`ApiState::authorize`] (the method table,
//! [`METHODS`], is in `policy.rs`: who may call each method and whether it
//! mutates state), validates its input at the edge (`validate.rs`, errors
//! name the field), converts with `convert.rs`, and reports failures as one
//! [`ApiError`] type turned into a `tonic::Status` (or a per-item
//! `spire.api.types.Status` in batches) in one place (`error.rs`).
//!
//! The connection's [`PeerInfo`] (transport and client certificate chain)
//! reaches handlers through the request extensions ([`transport`]). A
//! client chain is judged against the bundle as it is at the handshake, at
//! every request, and whenever the bundle changes; a connection whose chain
//! stops verifying is closed ([`client_trust`], `revocable.rs`).

mod agent;
mod agents;
mod attest;
pub mod audit;
mod auth;
mod authorized;
mod bundle;
pub mod client_trust;
mod convert;
mod entry;
mod error;
mod health;
pub mod localauthority;
mod logger;
mod policy;
mod revocable;
mod svid;
mod sync;
/// Moved to [`crate::tls`]; this path stays for the integration tests.
pub mod tls {
    pub use crate::tls::*;
}
pub mod transport;
mod trustdomain;
mod validate;
mod watch;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use spinel_proto::grpc::health::v1::health_server::HealthServer;
use spinel_proto::spinel::server::v1::watch_server::WatchServer;
use spinel_proto::spire::api::server::agent::v1::agent_server::AgentServer;
use spinel_proto::spire::api::server::bundle::v1::bundle_server::BundleServer;
use spinel_proto::spire::api::server::entry::v1::entry_server::EntryServer;
use spinel_proto::spire::api::server::svid::v1::svid_server::SvidServer;
use spinel_proto::spire::api::server::trustdomain::v1::trust_domain_server::TrustDomainServer;
use spinel_spiffe::{Clock, SpiffeId, TrustDomain};
use tonic::service::Routes;

pub use auth::{method, policy, Caller, Policy};
pub use error::{ApiError, ApiResult};
pub use health::ENTRY_SERVICE;
pub use policy::{mutates, MethodPolicy, METHODS};
pub use svid::x509_params_for_entry;
pub use transport::PeerInfo;

use crate::attestor::node::NodeAttestors;
use crate::ca::Ca;
use crate::datastore::DataStore;

/// Largest response an unpaged call sends: the 4 MiB every gRPC client
/// receives by default.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Largest number of entries `SyncAuthorizedEntries` sends in full before
/// switching to revisions first (SPIRE's default page size).
pub const SYNC_PAGE_SIZE: usize = 500;

/// API settings from the config.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The server's trust domain.
    pub trust_domain: TrustDomain,
    /// SPIFFE IDs allowed to call admin methods over mTLS (`admin_ids`).
    pub admin_ids: Vec<SpiffeId>,
    /// Lifetime of agent SVIDs (`agent_ttl`); `None`: the CA's X509-SVID default.
    pub agent_ttl: Option<Duration>,
}

/// Everything the services share. Cheap to share as `Arc<ApiState>`.
#[derive(Debug)]
pub struct ApiState {
    trust_domain: TrustDomain,
    datastore: Arc<dyn DataStore>,
    ca: Arc<Ca>,
    clock: Clock,
    attestors: NodeAttestors,
    admin_ids: BTreeSet<String>,
    agent_ttl: Option<Duration>,
    authorized: authorized::AuthorizedEntries,
    serving: AtomicBool,
    federation: OnceLock<Arc<crate::federation::Federation>>,
    changes: Arc<crate::notify::Changes>,
    /// Agent records for the authorization of agent calls (`agents.rs`).
    agents: agents::AgentRecords,
}

impl ApiState {
    /// The shared state of the services.
    pub fn new(
        settings: ApiSettings,
        datastore: Arc<dyn DataStore>,
        ca: Arc<Ca>,
        attestors: NodeAttestors,
        clock: Clock,
    ) -> Arc<Self> {
        Arc::new(ApiState {
            authorized: authorized::AuthorizedEntries::new(&settings.trust_domain),
            admin_ids: auth::admin_id_set(&settings.admin_ids),
            trust_domain: settings.trust_domain,
            agent_ttl: settings.agent_ttl,
            datastore,
            ca,
            clock,
            attestors,
            serving: AtomicBool::new(true),
            federation: OnceLock::new(),
            changes: Arc::new(crate::notify::Changes::new()),
            agents: agents::AgentRecords::default(),
        })
    }

    /// Connects the TrustDomain API to the federation poller (once; later
    /// calls are ignored). Without it, relationships are still managed but
    /// `RefreshBundle` answers `Unavailable`.
    pub fn attach_federation(&self, federation: Arc<crate::federation::Federation>) {
        let _ = self.federation.set(federation);
    }

    /// The change marks pushed to agents.
    pub fn changes(&self) -> &Arc<crate::notify::Changes> {
        &self.changes
    }

    /// Reads the authorized-entries index, so that the first agent
    /// syncing does not wait for it; a failure is left to the first sync.
    pub async fn warm(&self) {
        if let Err(e) = self.authorized.warm(self.datastore.as_ref()).await {
            tracing::warn!(error = %e, "cannot read the registration entries at start; the first agent sync reads them");
        }
    }

    /// Marks the server as (not) serving, as health checks report it.
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    /// How the server is: serving, serving agents from memory while the
    /// database cannot be reached, or not serving.
    pub async fn health(&self) -> ServerHealth {
        if !self.serving.load(Ordering::Relaxed) {
            return ServerHealth::Down("the server is stopping".into());
        }
        match self.datastore.entries_revision().await {
            Ok(_) => ServerHealth::Serving,
            Err(crate::datastore::DataStoreError::Unavailable(reason)) => {
                ServerHealth::Degraded(reason)
            }
            Err(e) => ServerHealth::Down(e.to_string()),
        }
    }

    /// Whether the server serves agents (`/ready`, the health check of the
    /// server as a whole): also while degraded, so that agents keep
    /// reaching it.
    pub async fn healthy(&self) -> bool {
        !matches!(self.health().await, ServerHealth::Down(_))
    }
}

/// What the health checks report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHealth {
    /// Everything answers.
    Serving,
    /// The database cannot be reached: agents are served from memory
    /// (their records, authorized entries and the bundle as last read),
    /// registration changes are refused.
    Degraded(String),
    /// Not serving (stopping, or the datastore fails otherwise).
    Down(String),
}

/// Whether `name` is acceptable as a DNS SAN (a hostname, optionally with a
/// leftmost `*` label), by the rules applied to entries.
pub fn is_dns_name(name: &str) -> bool {
    validate::dns_name(name).is_ok()
}

/// The router with every service, for either listener.
pub fn routes(state: Arc<ApiState>) -> Routes {
    Routes::new(AgentServer::new(agent::AgentService::new(state.clone())))
        .add_service(EntryServer::new(entry::EntryService::new(state.clone())))
        .add_service(SvidServer::new(svid::SvidService::new(state.clone())))
        .add_service(BundleServer::new(bundle::BundleService::new(state.clone())))
        .add_service(TrustDomainServer::new(
            trustdomain::TrustDomainService::new(state.clone()),
        ))
        .add_service(HealthServer::new(health::HealthService::new(state.clone())))
        .add_service(WatchServer::new(watch::WatchService::new(state.clone())))
        .add_service(
            spinel_proto::spire::api::server::logger::v1::logger_server::LoggerServer::new(
                logger::LoggerService::new(state.clone()),
            ),
        )
        .add_service(localauthority_server(state))
}

/// The LocalAuthority service (manual CA rotation), admins only.
fn localauthority_server(
    state: Arc<ApiState>,
) -> spinel_proto::spire::api::server::localauthority::v1::local_authority_server::LocalAuthorityServer<
    localauthority::LocalAuthorityService,
>{
    spinel_proto::spire::api::server::localauthority::v1::local_authority_server::LocalAuthorityServer::new(
        localauthority::LocalAuthorityService::new(state),
    )
}
