//! `spire.api.server.trustdomain.v1.TrustDomain`: federation relationships
//! (admins only, like every method not listed in the policy table).
//!
//! A relationship names a foreign trust domain, its bundle endpoint URL and
//! profile (`https_web`, or `https_spiffe` with the endpoint's SPIFFE ID),
//! and may carry the trust domain's bundle, which is stored as the
//! federated bundle (what `https_spiffe` authenticates the endpoint with
//! before the first fetch). Changes wake the federation poller, and
//! `RefreshBundle` fetches one trust domain's bundle at once.

use std::sync::Arc;

use spinel_proto::spire::api::server::trustdomain::v1::{
    batch_create_federation_relationship_response, batch_delete_federation_relationship_response,
    batch_update_federation_relationship_response, trust_domain_server::TrustDomain,
    BatchCreateFederationRelationshipRequest, BatchCreateFederationRelationshipResponse,
    BatchDeleteFederationRelationshipRequest, BatchDeleteFederationRelationshipResponse,
    BatchUpdateFederationRelationshipRequest, BatchUpdateFederationRelationshipResponse,
    GetFederationRelationshipRequest, ListFederationRelationshipsRequest,
    ListFederationRelationshipsResponse, RefreshBundleRequest,
};
use spinel_proto::spire::api::types::{
    self, federation_relationship::BundleEndpointProfile, FederationRelationship,
    FederationRelationshipMask,
};
use tonic::{Code, Request, Response, Status};

use super::convert::{bundle_to_proto, paginate};
use super::error::{ok_status, ApiError, ApiResult};
use super::{validate, ApiState};
use crate::datastore::{StoredBundle, StoredFederationRelationship};
use crate::federation::{FederationError, PROFILE_HTTPS_SPIFFE, PROFILE_HTTPS_WEB};

/// `TrustDomain/ListFederationRelationships` and friends, by full path.
mod method {
    pub use crate::api::method::{
        BATCH_CREATE_FEDERATION_RELATIONSHIP as CREATE,
        BATCH_DELETE_FEDERATION_RELATIONSHIP as DELETE,
        BATCH_UPDATE_FEDERATION_RELATIONSHIP as UPDATE, GET_FEDERATION_RELATIONSHIP as GET,
        LIST_FEDERATION_RELATIONSHIPS as LIST, REFRESH_BUNDLE as REFRESH,
    };
}

/// The TrustDomain service.
#[derive(Debug, Clone)]
pub struct TrustDomainService {
    state: Arc<ApiState>,
}

const ALL: FederationRelationshipMask = FederationRelationshipMask {
    bundle_endpoint_url: true,
    bundle_endpoint_profile: true,
    trust_domain_bundle: true,
};

impl TrustDomainService {
    /// The service over `state`.
    pub fn new(state: Arc<ApiState>) -> Self {
        TrustDomainService { state }
    }

    fn changed(&self) {
        if let Some(f) = self.state.federation.get() {
            f.relationships_changed();
        }
    }

    fn trust_domain(&self, input: &str) -> ApiResult<String> {
        let td = validate::federated_trust_domain(input)
            .map_err(|e| ApiError::invalid("failed to parse trust domain", e))?;
        super::audit::note_entity(&td);
        if td == self.state.trust_domain.as_str() {
            return Err(ApiError::invalid_msg(
                "unable to create federation relationship for the server's own trust domain",
            ));
        }
        Ok(td)
    }

    /// The stored form of a relationship from a request.
    fn stored_from_proto(
        &self,
        r: &FederationRelationship,
    ) -> ApiResult<StoredFederationRelationship> {
        let trust_domain = self.trust_domain(&r.trust_domain)?;
        crate::config::check_https_url(&r.bundle_endpoint_url)
            .map_err(|e| ApiError::invalid("failed to parse bundle endpoint URL", e))?;
        let (profile, endpoint_spiffe_id) = match &r.bundle_endpoint_profile {
            Some(BundleEndpointProfile::HttpsWeb(_)) => (PROFILE_HTTPS_WEB, String::new()),
            Some(BundleEndpointProfile::HttpsSpiffe(p)) => {
                let id = spinel_spiffe::id::parse_id(&p.endpoint_spiffe_id)
                    .map_err(|e| ApiError::invalid("failed to parse endpoint SPIFFE ID", e))?;
                (PROFILE_HTTPS_SPIFFE, id.to_string())
            }
            None => {
                return Err(ApiError::invalid_msg(
                    "bundle endpoint profile is required: https_web or https_spiffe",
                ))
            }
        };
        Ok(StoredFederationRelationship {
            trust_domain,
            bundle_endpoint_url: r.bundle_endpoint_url.clone(),
            profile: profile.to_owned(),
            endpoint_spiffe_id,
        })
    }

    /// The bundle a request carries, checked to be the relationship's
    /// trust domain's.
    fn checked_bundle(
        &self,
        td: &str,
        bundle: Option<&types::Bundle>,
    ) -> ApiResult<Option<StoredBundle>> {
        let Some(b) = bundle else { return Ok(None) };
        let stored =
            validate::bundle(b).map_err(|e| ApiError::invalid("failed to convert bundle", e))?;
        if stored.trust_domain != td {
            return Err(ApiError::invalid_msg(format!(
                "trust domain bundle ({:?}) must match the relationship's trust domain ({td:?})",
                stored.trust_domain
            )));
        }
        Ok(Some(stored))
    }

    async fn store_bundle(&self, bundle: Option<StoredBundle>) -> ApiResult<()> {
        let Some(bundle) = bundle else { return Ok(()) };
        self.state
            .datastore
            .set_bundle(bundle)
            .await
            .map_err(|e| ApiError::datastore("failed to set the trust domain bundle", e))
    }

    async fn to_proto(
        &self,
        r: &StoredFederationRelationship,
        mask: Option<&FederationRelationshipMask>,
    ) -> ApiResult<FederationRelationship> {
        let m = mask.unwrap_or(&ALL);
        let bundle = if m.trust_domain_bundle {
            self.state
                .datastore
                .get_bundle(&r.trust_domain)
                .await
                .map_err(|e| ApiError::datastore("failed to fetch the trust domain bundle", e))?
                .map(|b| bundle_to_proto(&b, None))
        } else {
            None
        };
        Ok(FederationRelationship {
            trust_domain: r.trust_domain.clone(),
            bundle_endpoint_url: if m.bundle_endpoint_url {
                r.bundle_endpoint_url.clone()
            } else {
                String::new()
            },
            bundle_endpoint_profile: if m.bundle_endpoint_profile {
                Some(profile_to_proto(r))
            } else {
                None
            },
            trust_domain_bundle: bundle,
        })
    }

    async fn create(
        &self,
        r: &FederationRelationship,
        mask: Option<&FederationRelationshipMask>,
    ) -> ApiResult<FederationRelationship> {
        let stored = self.stored_from_proto(r)?;
        let bundle = self.checked_bundle(&stored.trust_domain, r.trust_domain_bundle.as_ref())?;
        self.state
            .datastore
            .create_federation_relationship(stored.clone())
            .await
            .map_err(|e| ApiError::datastore("failed to create federation relationship", e))?;
        self.store_bundle(bundle).await?;
        tracing::info!(trust_domain = %stored.trust_domain, url = %stored.bundle_endpoint_url, profile = %stored.profile, "federation relationship created");
        self.to_proto(&stored, mask).await
    }

    async fn update(
        &self,
        r: &FederationRelationship,
        input: Option<&FederationRelationshipMask>,
        output: Option<&FederationRelationshipMask>,
    ) -> ApiResult<FederationRelationship> {
        let td = self.trust_domain(&r.trust_domain)?;
        let existing = self
            .state
            .datastore
            .get_federation_relationship(&td)
            .await
            .map_err(|e| ApiError::datastore("failed to fetch federation relationship", e))?
            .ok_or_else(|| ApiError::not_found("federation relationship does not exist"))?;
        let m = input.unwrap_or(&ALL);
        let mut merged = FederationRelationship {
            trust_domain: td.clone(),
            bundle_endpoint_url: existing.bundle_endpoint_url.clone(),
            bundle_endpoint_profile: Some(profile_to_proto(&existing)),
            trust_domain_bundle: None,
        };
        if m.bundle_endpoint_url {
            merged.bundle_endpoint_url = r.bundle_endpoint_url.clone();
        }
        if m.bundle_endpoint_profile {
            merged.bundle_endpoint_profile = r.bundle_endpoint_profile.clone();
        }
        let stored = self.stored_from_proto(&merged)?;
        let bundle = if m.trust_domain_bundle {
            self.checked_bundle(&td, r.trust_domain_bundle.as_ref())?
        } else {
            None
        };
        self.state
            .datastore
            .update_federation_relationship(stored.clone())
            .await
            .map_err(|e| ApiError::datastore("failed to update federation relationship", e))?;
        self.store_bundle(bundle).await?;
        tracing::info!(trust_domain = %td, "federation relationship updated");
        self.to_proto(&stored, output).await
    }

    async fn delete(&self, input: &str) -> ApiResult<String> {
        let td = validate::federated_trust_domain(input)
            .map_err(|e| ApiError::invalid("failed to parse trust domain", e))?;
        super::audit::note_entity(&td);
        self.state
            .datastore
            .delete_federation_relationship(&td)
            .await
            .map_err(|e| ApiError::datastore("failed to delete federation relationship", e))?;
        tracing::info!(trust_domain = %td, "federation relationship deleted");
        Ok(td)
    }
}

fn profile_to_proto(r: &StoredFederationRelationship) -> BundleEndpointProfile {
    if r.profile == PROFILE_HTTPS_SPIFFE {
        BundleEndpointProfile::HttpsSpiffe(types::HttpsspiffeProfile {
            endpoint_spiffe_id: r.endpoint_spiffe_id.clone(),
        })
    } else {
        BundleEndpointProfile::HttpsWeb(types::HttpsWebProfile {})
    }
}

fn status_of<T>(result: &ApiResult<T>) -> types::Status {
    match result {
        Ok(_) => ok_status(),
        Err(e) => e.to_proto(),
    }
}

#[tonic::async_trait]
impl TrustDomain for TrustDomainService {
    async fn list_federation_relationships(
        &self,
        request: Request<ListFederationRelationshipsRequest>,
    ) -> Result<Response<ListFederationRelationshipsResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::LIST)
            .await?;
        let req = request.into_inner();
        if req.page_size < 0 {
            return Err(ApiError::invalid_msg("page size cannot be less than zero").into());
        }
        let all = self
            .state
            .datastore
            .list_federation_relationships()
            .await
            .map_err(|e| ApiError::datastore("failed to list federation relationships", e))?;
        let (page, next_page_token) =
            paginate(all, req.page_size, &req.page_token, |r| &r.trust_domain);
        let mut federation_relationships = Vec::with_capacity(page.len());
        for r in &page {
            federation_relationships.push(self.to_proto(r, req.output_mask.as_ref()).await?);
        }
        Ok(Response::new(ListFederationRelationshipsResponse {
            federation_relationships,
            next_page_token,
        }))
    }

    async fn get_federation_relationship(
        &self,
        request: Request<GetFederationRelationshipRequest>,
    ) -> Result<Response<FederationRelationship>, Status> {
        self.state
            .authorize(request.extensions(), method::GET)
            .await?;
        let req = request.into_inner();
        let td = validate::federated_trust_domain(&req.trust_domain)
            .map_err(|e| ApiError::invalid("failed to parse trust domain", e))?;
        super::audit::note_entity(&td);
        let stored = self
            .state
            .datastore
            .get_federation_relationship(&td)
            .await
            .map_err(|e| ApiError::datastore("failed to fetch federation relationship", e))?
            .ok_or_else(|| ApiError::not_found("federation relationship does not exist"))?;
        Ok(Response::new(
            self.to_proto(&stored, req.output_mask.as_ref()).await?,
        ))
    }

    async fn batch_create_federation_relationship(
        &self,
        request: Request<BatchCreateFederationRelationshipRequest>,
    ) -> Result<Response<BatchCreateFederationRelationshipResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::CREATE)
            .await?;
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.federation_relationships.len());
        for r in &req.federation_relationships {
            let result = self.create(r, req.output_mask.as_ref()).await;
            results.push(batch_create_federation_relationship_response::Result {
                status: Some(status_of(&result)),
                federation_relationship: result.ok(),
            });
        }
        self.changed();
        Ok(Response::new(BatchCreateFederationRelationshipResponse {
            results,
        }))
    }

    async fn batch_update_federation_relationship(
        &self,
        request: Request<BatchUpdateFederationRelationshipRequest>,
    ) -> Result<Response<BatchUpdateFederationRelationshipResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::UPDATE)
            .await?;
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.federation_relationships.len());
        for r in &req.federation_relationships {
            let result = self
                .update(r, req.input_mask.as_ref(), req.output_mask.as_ref())
                .await;
            results.push(batch_update_federation_relationship_response::Result {
                status: Some(status_of(&result)),
                federation_relationship: result.ok(),
            });
        }
        self.changed();
        Ok(Response::new(BatchUpdateFederationRelationshipResponse {
            results,
        }))
    }

    async fn batch_delete_federation_relationship(
        &self,
        request: Request<BatchDeleteFederationRelationshipRequest>,
    ) -> Result<Response<BatchDeleteFederationRelationshipResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::DELETE)
            .await?;
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.trust_domains.len());
        for td in &req.trust_domains {
            let result = self.delete(td).await;
            results.push(batch_delete_federation_relationship_response::Result {
                status: Some(status_of(&result)),
                trust_domain: result.unwrap_or_else(|_| td.clone()),
            });
        }
        self.changed();
        Ok(Response::new(BatchDeleteFederationRelationshipResponse {
            results,
        }))
    }

    async fn refresh_bundle(
        &self,
        request: Request<RefreshBundleRequest>,
    ) -> Result<Response<()>, Status> {
        self.state
            .authorize(request.extensions(), method::REFRESH)
            .await?;
        let req = request.into_inner();
        let td = validate::federated_trust_domain(&req.trust_domain)
            .map_err(|e| ApiError::invalid("failed to parse trust domain", e))?;
        super::audit::note_entity(&td);
        let Some(federation) = self.state.federation.get() else {
            return Err(ApiError::new(Code::Unavailable, "federation is not running").into());
        };
        match federation.refresh(&td).await {
            Ok(_) => Ok(Response::new(())),
            Err(FederationError::NoRelationship(_)) => {
                Err(ApiError::not_found(format!("no relationship with trust domain {td:?}")).into())
            }
            Err(e) => Err(ApiError::internal("failed to refresh bundle", e).into()),
        }
    }
}
