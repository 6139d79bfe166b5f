//! SPIRE's Delegated Identity API (`spire.api.agent.delegatedidentity.v1`)
//! on the admin socket: a trusted local process (a mesh proxy, a CNI)
//! gets the SVIDs of other workloads on the node.
//!
//! Every call, in order:
//!
//! 1. the caller is attested from its peer credentials, pinned when it
//!    connected (the Workload API's attestation, `attest_peer`), and one of
//!    the entries its selectors match must have a SPIFFE ID listed in
//!    `agent.authorized_delegates`; otherwise `PermissionDenied` (and for
//!    everyone when the list is empty). Streams check this again, with the
//!    selectors of the start of the call, on every update (as SPIRE does),
//!    and end when the caller has gone;
//! 2. the request names the workload by exactly one of `selectors`
//!    (taken as attested; a selector that is not a valid `type:value` is
//!    `InvalidArgument` naming it) or `pid` (attested by the agent's
//!    workload attestors; a stream ends once that process has exited);
//! 3. the workload's identities are the cache entries whose selectors are
//!    all among its selectors, matched through the Workload API's index.
//!    Admin and downstream entries, and reserved IDs (the server's, an
//!    agent's), are never given out; SVIDs past their NotAfter neither.
//!
//! `SubscribeToX509SVIDs` sends the workload's X509-SVIDs and keys (an
//! empty list when it has none, as SPIRE does), then again whenever they
//! change (rotation, entries created or removed). `SubscribeToX509Bundles`
//! and `SubscribeToJWTBundles` send every bundle the agent holds, built
//! once per snapshot and shared by all streams. `FetchJWTSVIDs` mints one
//! JWT-SVID per identity for the audience.
//!
//! Files: `authorize.rs` (the delegate list, request targets, what may be
//! delegated), `state.rs` (the steps every call starts with),
//! `response.rs` (messages), `stream.rs` (the update loop). Imports go
//! one way: this file → `stream` → `state` → `authorize`, `response`.

mod authorize;
mod response;
mod state;
mod stream;

use std::sync::Arc;

use async_trait::async_trait;
use spinel_proto::spire::api::agent::delegatedidentity::v1::delegated_identity_server::{
    DelegatedIdentity, DelegatedIdentityServer,
};
use spinel_proto::spire::api::agent::delegatedidentity::v1::{
    FetchJwtsviDsRequest, FetchJwtsviDsResponse, SubscribeToJwtBundlesRequest,
    SubscribeToJwtBundlesResponse, SubscribeToX509BundlesRequest, SubscribeToX509BundlesResponse,
    SubscribeToX509sviDsRequest, SubscribeToX509sviDsResponse,
};
use spinel_proto::spire::api::types;
use tonic::{Request, Response, Status};

use crate::cache::{JwtSvidError, Snapshot};
use crate::workload_api::WorkloadApi;

pub use authorize::Delegates;

use authorize::{delegable, servable, Target};
use response::{id_proto, BundleMessages, X509Set};
use state::State;
use stream::{Feed, Next, Updates};

/// The Delegated Identity service. Cloning shares the state.
#[derive(Debug, Clone)]
pub struct DelegatedIdentityService {
    state: Arc<State>,
}

impl DelegatedIdentityService {
    /// The service over `api`'s attestor, cache and JWT-SVID source, for
    /// the callers whose identities `delegates` lists.
    pub fn new(api: WorkloadApi, delegates: Delegates) -> Self {
        DelegatedIdentityService {
            state: Arc::new(State {
                api,
                delegates,
                bundles: BundleMessages::default(),
            }),
        }
    }

    /// The service, ready to mount.
    pub fn into_server(self) -> DelegatedIdentityServer<Self> {
        DelegatedIdentityServer::new(self)
    }
}

/// A workload's X509-SVIDs.
struct X509Svids {
    selectors: std::collections::BTreeSet<spinel_spiffe::Selector>,
    last: Option<X509Set>,
}

impl Feed for X509Svids {
    type Message = SubscribeToX509sviDsResponse;

    fn next(&mut self, state: &State, snapshot: &Snapshot) -> Result<Next<Self::Message>, Status> {
        let now = state.api.clock().now();
        let identities = state
            .api
            .matching(snapshot, &self.selectors)
            .into_iter()
            .filter(|i| servable(i, now))
            .collect();
        let set = X509Set::of(snapshot, identities);
        let wake_at = set.expires();
        if self.last.as_ref().is_some_and(|last| last.same_as(&set)) {
            return Ok(Next {
                message: None,
                wake_at,
            });
        }
        let message = set.message();
        self.last = Some(set);
        Ok(Next {
            message: Some(message),
            wake_at,
        })
    }
}

/// The bundles, one message kind or the other.
struct Bundles<M> {
    build: fn(&BundleMessages, &Snapshot) -> Result<Arc<M>, Status>,
    last: Option<Arc<M>>,
}

impl<M: Clone + PartialEq + Send + Sync + 'static> Feed for Bundles<M> {
    type Message = M;

    fn next(&mut self, state: &State, snapshot: &Snapshot) -> Result<Next<M>, Status> {
        let message = (self.build)(&state.bundles, snapshot)?;
        let same = self
            .last
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(last, &message) || **last == *message);
        if same {
            return Ok(Next {
                message: None,
                wake_at: None,
            });
        }
        self.last = Some(message.clone());
        Ok(Next {
            message: Some(Arc::unwrap_or_clone(message)),
            wake_at: None,
        })
    }
}

const SUBSCRIBE_X509_SVIDS: &str = "SubscribeToX509SVIDs";
const SUBSCRIBE_X509_BUNDLES: &str = "SubscribeToX509Bundles";
const FETCH_JWT_SVIDS: &str = "FetchJWTSVIDs";
const SUBSCRIBE_JWT_BUNDLES: &str = "SubscribeToJWTBundles";

#[async_trait]
impl DelegatedIdentity for DelegatedIdentityService {
    type SubscribeToX509SVIDsStream = Updates<SubscribeToX509sviDsResponse>;
    type SubscribeToX509BundlesStream = Updates<SubscribeToX509BundlesResponse>;
    type SubscribeToJWTBundlesStream = Updates<SubscribeToJwtBundlesResponse>;

    async fn subscribe_to_x509svi_ds(
        &self,
        request: Request<SubscribeToX509sviDsRequest>,
    ) -> Result<Response<Self::SubscribeToX509SVIDsStream>, Status> {
        let state = &self.state;
        let delegate = state.authorize(&request, SUBSCRIBE_X509_SVIDS).await?;
        let body = request.get_ref();
        let target = Target::of_request(&body.selectors, body.pid)?;
        let workload = state.target(target).await?;
        let feed = X509Svids {
            selectors: workload.selectors.clone(),
            last: None,
        };
        let updates = stream::open(
            state.clone(),
            SUBSCRIBE_X509_SVIDS,
            delegate,
            Some(workload),
            feed,
        )?;
        Ok(Response::new(updates))
    }

    async fn subscribe_to_x509_bundles(
        &self,
        request: Request<SubscribeToX509BundlesRequest>,
    ) -> Result<Response<Self::SubscribeToX509BundlesStream>, Status> {
        let state = &self.state;
        let delegate = state.authorize(&request, SUBSCRIBE_X509_BUNDLES).await?;
        let feed = Bundles {
            build: BundleMessages::x509,
            last: None,
        };
        let updates = stream::open(state.clone(), SUBSCRIBE_X509_BUNDLES, delegate, None, feed)?;
        Ok(Response::new(updates))
    }

    async fn fetch_jwtsvi_ds(
        &self,
        request: Request<FetchJwtsviDsRequest>,
    ) -> Result<Response<FetchJwtsviDsResponse>, Status> {
        let body = request.get_ref();
        if body.audience.is_empty() || body.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        let state = &self.state;
        state.authorize(&request, FETCH_JWT_SVIDS).await?;
        let target = Target::of_request(&body.selectors, body.pid)?;
        let workload = state.target(target).await?;
        let snapshot = state.ready_snapshot()?;
        let identities: Vec<_> = state
            .api
            .matching(&snapshot, &workload.selectors)
            .into_iter()
            .filter(|i| delegable(i))
            .collect();
        if identities.is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        let entries: Vec<_> = identities.iter().map(|i| &i.entry).collect();
        let tokens = state
            .api
            .jwt_source()
            .fetch_jwt_svids(&entries, &body.audience)
            .await
            .map_err(|(entry, e)| {
                tracing::warn!(spiffe_id = %entry.spiffe_id, error = %e, "could not get a JWT-SVID for a delegate");
                let message = format!("could not fetch JWT-SVID: {e}");
                match e {
                    JwtSvidError::Invalid(_) => Status::invalid_argument(message),
                    _ => Status::unavailable(message),
                }
            })?;
        // A process named by pid must not have been replaced meanwhile.
        workload.check_alive()?;
        let svids = entries
            .iter()
            .zip(tokens)
            .map(|(entry, token)| {
                let (expires_at, issued_at) = times_of(&token);
                types::Jwtsvid {
                    token,
                    id: Some(id_proto(&entry.spiffe_id)),
                    expires_at,
                    issued_at,
                    hint: entry.hint.clone(),
                }
            })
            .collect();
        Ok(Response::new(FetchJwtsviDsResponse { svids }))
    }

    async fn subscribe_to_jwt_bundles(
        &self,
        request: Request<SubscribeToJwtBundlesRequest>,
    ) -> Result<Response<Self::SubscribeToJWTBundlesStream>, Status> {
        let state = &self.state;
        let delegate = state.authorize(&request, SUBSCRIBE_JWT_BUNDLES).await?;
        let feed = Bundles {
            build: BundleMessages::jwt,
            last: None,
        };
        let updates = stream::open(state.clone(), SUBSCRIBE_JWT_BUNDLES, delegate, None, feed)?;
        Ok(Response::new(updates))
    }
}

/// `exp` and `iat` of a JWT-SVID the server minted (0 when absent).
fn times_of(token: &str) -> (i64, i64) {
    let claims = spinel_spiffe::jwt::decode_unverified(token)
        .map(|(_, claims)| claims)
        .unwrap_or_default();
    let number = |name: &str| {
        claims
            .get(name)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0)
    };
    (number("exp"), number("iat"))
}
