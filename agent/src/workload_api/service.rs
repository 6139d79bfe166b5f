//! The `SpiffeWorkloadAPI` service: the five methods.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use spinel_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use spinel_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509svidRequest, X509svidResponse,
};
use spinel_spiffe::{Clock, Selector, TrustBundle, TrustDomain};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::attestor::workload::{AttestError, Caller, WorkloadAttestor};
use crate::cache::{Cache, JwtSvidError, JwtSvidSource, Snapshot};

use super::caller::{self, no_identity};
use super::explain::{explain, Explanation, SelectorLog};
use super::index::Indexes;
use super::response;
use super::sds::config::SdsConfig;
use super::shared::{Encoded, SharedResponses};
use super::state::Shared;
use super::stream::{self, Feed, Step, Updates};

/// How many distinct identity sets' X509-SVID responses are shared per
/// cache snapshot; callers past that get a response of their own.
const SHARED_RESPONSE_SETS: usize = 4096;

/// The Workload API service, to be mounted with
/// `SpiffeWorkloadApiServer::new`. Cloning shares the state.
#[derive(Debug, Clone)]
pub struct WorkloadApi {
    shared: Arc<Shared>,
    /// How Envoy SDS names map to identities and bundles.
    sds: Arc<SdsConfig>,
}

impl WorkloadApi {
    /// A service over `cache`, minting JWT-SVIDs through `jwt` and
    /// identifying callers with `attestor`.
    pub fn new(
        cache: Cache,
        jwt: Arc<dyn JwtSvidSource>,
        attestor: Arc<dyn WorkloadAttestor>,
        clock: Clock,
    ) -> Self {
        Self::with_selector_log(cache, jwt, attestor, clock, SelectorLog::default())
    }

    /// [`WorkloadApi::new`], with denial logs showing selector values as
    /// `selector_log` allows.
    pub fn with_selector_log(
        cache: Cache,
        jwt: Arc<dyn JwtSvidSource>,
        attestor: Arc<dyn WorkloadAttestor>,
        clock: Clock,
        selector_log: SelectorLog,
    ) -> Self {
        WorkloadApi {
            shared: Arc::new(Shared {
                cache,
                jwt,
                attestor,
                clock,
                selector_log,
                stop: watch::Sender::new(false),
                indexes: Indexes::default(),
                x509: SharedResponses::new(SHARED_RESPONSE_SETS),
            }),
            sds: Arc::new(SdsConfig::default()),
        }
    }

    /// The service with Envoy SDS served under `config` (SPIRE's `sds`
    /// block; the defaults otherwise).
    #[must_use]
    pub fn with_sds(mut self, config: SdsConfig) -> Self {
        self.sds = Arc::new(config);
        self
    }

    /// What the SDS service shares with this one: the state and the `sds`
    /// settings.
    pub(crate) fn sds_parts(&self) -> (Arc<Shared>, Arc<SdsConfig>) {
        (self.shared.clone(), self.sds.clone())
    }

    /// Attests `caller` and matches it against the current snapshot, for
    /// the debug API: its selectors and what they get it. Unlike a
    /// Workload API call, nothing is logged or redacted.
    pub async fn explain(
        &self,
        caller: &Caller,
    ) -> Result<(Arc<Snapshot>, BTreeSet<Selector>, Explanation), AttestError> {
        let snapshot = self.shared.cache.snapshot();
        let selectors: BTreeSet<Selector> = self
            .shared
            .attestor
            .attest(caller)
            .await?
            .into_iter()
            .collect();
        let explanation = explain(&selectors, &snapshot);
        Ok((snapshot, selectors, explanation))
    }

    /// Ends every open stream (with `Unavailable`) and every future one.
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
    }

    /// The cache served.
    pub fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    /// The selectors of the process at the other end of `request`'s
    /// connection (pinned when it connected), attested as a Workload API
    /// caller is, without the security header (the admin socket's
    /// Delegated Identity API authorizes its callers by them).
    pub(crate) async fn attest_peer<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(Caller, BTreeSet<Selector>), Status> {
        let caller = caller::caller_of(request)?;
        let selectors = self.attest_process(&caller).await?;
        Ok((caller, selectors))
    }

    /// The selectors of `caller`, attested with the agent's workload
    /// attestors; fails when the process exited meanwhile.
    pub(crate) async fn attest_process(
        &self,
        caller: &Caller,
    ) -> Result<BTreeSet<Selector>, Status> {
        let selectors = self
            .shared
            .attestor
            .attest(caller)
            .await
            .and_then(|selectors| {
                caller.check_still_connected()?;
                Ok(selectors)
            })
            .map_err(|e| caller::attest_failure(caller, &e))?;
        Ok(selectors.into_iter().collect())
    }

    /// The identities of `snapshot` whose selectors are all in `selectors`,
    /// by entry ID, through the same per-snapshot index the Workload API
    /// matches its callers with.
    pub(crate) fn matching(
        &self,
        snapshot: &Snapshot,
        selectors: &BTreeSet<Selector>,
    ) -> Vec<Arc<crate::cache::Identity>> {
        self.shared.indexes.of(snapshot).matching(selectors)
    }

    /// Where JWT-SVIDs come from.
    pub(crate) fn jwt_source(&self) -> &Arc<dyn JwtSvidSource> {
        &self.shared.jwt
    }

    /// The clock SVID expiry is judged by.
    pub(crate) fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// A receiver that sees `true` once the API is stopping.
    pub(crate) fn stop_signal(&self) -> watch::Receiver<bool> {
        self.shared.stop_signal()
    }

    /// `FetchX509SVID`: the caller's stream of encoded responses.
    pub(crate) async fn open_x509_frames<T>(
        &self,
        request: &Request<T>,
    ) -> Result<Updates<Encoded>, Status> {
        let caller = caller::start(request)?;
        stream::open(self.shared.clone(), caller, X509SvidFeed).await
    }
}

struct X509SvidFeed;

#[async_trait]
impl Feed for X509SvidFeed {
    type Message = Encoded;

    async fn step(
        &self,
        shared: &Shared,
        caller: &Caller,
        snapshot: Arc<Snapshot>,
    ) -> Result<Step<Encoded>, Status> {
        let view = shared.view(caller, snapshot).await?;
        view.require_identity(caller, "FetchX509SVID", &shared.selector_log)?;
        Ok(
            match response::x509_svids(&view, shared.clock.now(), &shared.x509) {
                Some((message, expires)) => Step {
                    message: Some(message),
                    wake_at: Some(expires),
                },
                None => {
                    tracing::warn!(
                        pid = caller.pid,
                        "the caller's entries match but none has a valid X509-SVID yet"
                    );
                    Step {
                        message: None,
                        wake_at: None,
                    }
                }
            },
        )
    }
}

struct X509BundlesFeed;

#[async_trait]
impl Feed for X509BundlesFeed {
    type Message = X509BundlesResponse;

    async fn step(
        &self,
        shared: &Shared,
        caller: &Caller,
        snapshot: Arc<Snapshot>,
    ) -> Result<Step<X509BundlesResponse>, Status> {
        let view = shared.view(caller, snapshot).await?;
        view.require_identity(caller, "FetchX509Bundles", &shared.selector_log)?;
        Ok(Step {
            message: Some(Arc::new(response::x509_bundles(&view))),
            wake_at: None,
        })
    }
}

struct JwtBundlesFeed;

#[async_trait]
impl Feed for JwtBundlesFeed {
    type Message = JwtBundlesResponse;

    async fn step(
        &self,
        shared: &Shared,
        caller: &Caller,
        snapshot: Arc<Snapshot>,
    ) -> Result<Step<JwtBundlesResponse>, Status> {
        let view = shared.view(caller, snapshot).await?;
        view.require_identity(caller, "FetchJWTBundles", &shared.selector_log)?;
        Ok(Step {
            message: Some(Arc::new(response::jwt_bundles(&view)?)),
            wake_at: None,
        })
    }
}

#[async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = BoxStream<'static, Result<X509svidResponse, Status>>;
    type FetchX509BundlesStream = Updates<X509BundlesResponse>;
    type FetchJWTBundlesStream = Updates<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        // Served by `route.rs` in front of this service; here for a server
        // mounted without it.
        let updates = self.open_x509_frames(&request).await?;
        Ok(Response::new(
            updates
                .map(|item| item.and_then(|encoded| encoded.decode()))
                .boxed(),
        ))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let caller = caller::start(&request)?;
        let updates = stream::open(self.shared.clone(), caller, X509BundlesFeed).await?;
        Ok(Response::new(updates))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let caller = caller::start(&request)?;
        let request = request.into_inner();
        if request.audience.is_empty() || request.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        let wanted = match request.spiffe_id.as_str() {
            "" => None,
            id => Some(spinel_spiffe::id::parse_id(id).map_err(|e| {
                Status::invalid_argument(format!("invalid requested SPIFFE ID: {e}"))
            })?),
        };
        let shared = &self.shared;
        let view = shared.view(&caller, shared.cache.snapshot()).await?;
        view.require_identity(&caller, "FetchJWTSVID", &shared.selector_log)?;
        let chosen: Vec<_> = view
            .identities
            .iter()
            .filter(|i| wanted.as_ref().is_none_or(|w| *w == i.entry.spiffe_id))
            .cloned()
            .collect();
        if chosen.is_empty() {
            tracing::info!(
                pid = caller.pid,
                uid = caller.uid,
                requested = %request.spiffe_id,
                "no identity issued: the caller has no entry for the requested SPIFFE ID"
            );
            return Err(no_identity());
        }
        // One concurrent round for all the caller's identities.
        let unique = response::unique_hints(&chosen);
        let entries: Vec<_> = unique.iter().map(|i| &i.entry).collect();
        let tokens = shared
            .jwt
            .fetch_jwt_svids(&entries, &request.audience)
            .await
            .map_err(|(entry, e)| {
                tracing::warn!(spiffe_id = %entry.spiffe_id, error = %e, "could not get a JWT-SVID");
                match e {
                    JwtSvidError::Invalid(_) => Status::invalid_argument(format!(
                        "could not fetch the JWT-SVID of {}: {e}",
                        entry.spiffe_id
                    )),
                    _ => Status::unavailable(format!(
                        "could not fetch the JWT-SVID of {}: {e}",
                        entry.spiffe_id
                    )),
                }
            })?;
        let svids = entries
            .iter()
            .zip(tokens)
            .map(|(entry, token)| Jwtsvid {
                spiffe_id: entry.spiffe_id.to_string(),
                svid: token,
                hint: entry.hint.clone(),
            })
            .collect();
        Ok(Response::new(JwtsvidResponse { svids }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let caller = caller::start(&request)?;
        let updates = stream::open(self.shared.clone(), caller, JwtBundlesFeed).await?;
        Ok(Response::new(updates))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        let caller = caller::start(&request)?;
        let request = request.into_inner();
        if request.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if request.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let shared = &self.shared;
        let view = shared.view(&caller, shared.cache.snapshot()).await?;
        let bundles: BTreeMap<TrustDomain, TrustBundle> = response::bundles_for(&view)
            .into_iter()
            .map(|b| (b.trust_domain.clone(), b))
            .collect();
        let lookup = |td: &TrustDomain| bundles.get(td).cloned();
        let validated = spinel_spiffe::jwt::validate(
            &request.svid,
            &request.audience,
            &lookup,
            shared.clock.unix_seconds(),
        )
        .map_err(|e| {
            tracing::info!(pid = caller.pid, uid = caller.uid, reason = %e, "JWT-SVID failed validation");
            Status::invalid_argument(e.to_string())
        })?;
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id: validated.spiffe_id.to_string(),
            claims: Some(response::claims_struct(&validated.claims)),
        }))
    }
}
