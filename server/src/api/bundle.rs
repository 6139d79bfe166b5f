//! `spire.api.server.bundle.v1.Bundle`: our trust bundle (anyone may read
//! it) and the bundles of federated trust domains (admins).

use std::sync::Arc;

use spinel_proto::spire::api::server::bundle::v1::{
    batch_create_federated_bundle_response, batch_delete_federated_bundle_response,
    batch_set_federated_bundle_response, batch_update_federated_bundle_response,
    bundle_server::Bundle, AppendBundleRequest, BatchCreateFederatedBundleRequest,
    BatchCreateFederatedBundleResponse, BatchDeleteFederatedBundleRequest,
    BatchDeleteFederatedBundleResponse, BatchSetFederatedBundleRequest,
    BatchSetFederatedBundleResponse, BatchUpdateFederatedBundleRequest,
    BatchUpdateFederatedBundleResponse, CountBundlesRequest, CountBundlesResponse,
    GetBundleRequest, GetFederatedBundleRequest, ListFederatedBundlesRequest,
    ListFederatedBundlesResponse, PublishJwtAuthorityRequest, PublishJwtAuthorityResponse,
    PublishWitAuthorityRequest, PublishWitAuthorityResponse,
};
use spinel_proto::spire::api::types;
use tonic::{Code, Request, Response, Status};

use super::auth::{method, Caller};
use super::convert::{bundle_to_proto, paginate};
use super::error::{ok_status, ApiError, ApiResult};
use super::{validate, ApiState};
use crate::datastore::{DataStoreError, EntryFilter, StoredBundle};

/// The Bundle service.
#[derive(Debug, Clone)]
pub struct BundleService {
    state: Arc<ApiState>,
}

/// What `BatchDeleteFederatedBundle` does to entries federating with a
/// deleted bundle (SPIRE's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeleteMode {
    /// Refuse while any entry federates with it.
    Restrict,
    /// Delete those entries too.
    Delete,
    /// Remove the trust domain from those entries.
    Dissociate,
}

impl BundleService {
    /// The service over `state`.
    pub fn new(state: Arc<ApiState>) -> Self {
        BundleService { state }
    }

    fn own_td(&self) -> &str {
        self.state.trust_domain.as_str()
    }

    /// Our own bundle: the stored copy (which `AppendBundle` extends), or
    /// the CA's if none is stored yet.
    /// While the database cannot be reached: the CA's copy, the stored
    /// bundle as last read.
    async fn own_bundle(&self) -> ApiResult<StoredBundle> {
        let stored = match self.state.datastore.get_bundle(self.own_td()).await {
            Ok(stored) => stored,
            Err(DataStoreError::Unavailable(reason)) => {
                tracing::debug!(%reason, "database unavailable: serving the bundle as last read");
                None
            }
            Err(e) => return Err(ApiError::datastore("failed to fetch bundle", e)),
        };
        Ok(stored.unwrap_or_else(|| StoredBundle::from(&self.state.ca.bundle())))
    }

    /// A federated trust domain name from a request (never our own).
    fn federated_td(&self, input: &str, action: &str) -> ApiResult<String> {
        let td = validate::federated_trust_domain(input)
            .map_err(|e| ApiError::invalid("malformed trust domain", e))?;
        super::audit::note_entity(&td);
        if td == self.own_td() {
            return Err(ApiError::invalid_msg(format!(
                "{action} a federated bundle for the server's own trust domain is not allowed"
            )));
        }
        Ok(td)
    }

    fn federated_bundle(&self, b: &types::Bundle, action: &str) -> ApiResult<StoredBundle> {
        self.federated_td(&b.trust_domain, action)?;
        validate::bundle(b).map_err(|e| ApiError::invalid("failed to convert bundle", e))
    }

    async fn create(&self, b: &types::Bundle) -> ApiResult<StoredBundle> {
        let bundle = self.federated_bundle(b, "creating")?;
        let ds = &self.state.datastore;
        if ds
            .get_bundle(&bundle.trust_domain)
            .await
            .map_err(|e| ApiError::datastore("failed to fetch bundle", e))?
            .is_some()
        {
            return Err(ApiError::new(Code::AlreadyExists, "bundle already exists"));
        }
        ds.set_bundle(bundle.clone())
            .await
            .map_err(|e| ApiError::datastore("failed to create bundle", e))?;
        tracing::info!(trust_domain = %bundle.trust_domain, "federated bundle created");
        Ok(bundle)
    }

    async fn update(
        &self,
        b: &types::Bundle,
        mask: Option<&types::BundleMask>,
    ) -> ApiResult<StoredBundle> {
        let update = self.federated_bundle(b, "updating")?;
        let ds = &self.state.datastore;
        let mut stored = ds
            .get_bundle(&update.trust_domain)
            .await
            .map_err(|e| ApiError::datastore("failed to fetch bundle", e))?
            .ok_or_else(|| ApiError::not_found("bundle not found"))?;
        let all = types::BundleMask {
            x509_authorities: true,
            jwt_authorities: true,
            refresh_hint: true,
            sequence_number: true,
            wit_authorities: true,
        };
        let m = mask.unwrap_or(&all);
        if m.x509_authorities {
            stored.x509_authorities = update.x509_authorities;
        }
        if m.jwt_authorities {
            stored.jwt_authorities = update.jwt_authorities;
        }
        if m.refresh_hint {
            stored.refresh_hint = update.refresh_hint;
        }
        if m.sequence_number {
            stored.sequence_number = update.sequence_number;
        }
        ds.set_bundle(stored.clone())
            .await
            .map_err(|e| ApiError::datastore("failed to update bundle", e))?;
        tracing::info!(trust_domain = %stored.trust_domain, "federated bundle updated");
        Ok(stored)
    }

    async fn set(&self, b: &types::Bundle) -> ApiResult<StoredBundle> {
        let bundle = self.federated_bundle(b, "setting")?;
        self.state
            .datastore
            .set_bundle(bundle.clone())
            .await
            .map_err(|e| ApiError::datastore("failed to set bundle", e))?;
        tracing::info!(trust_domain = %bundle.trust_domain, "federated bundle set");
        Ok(bundle)
    }

    async fn delete(&self, input: &str, mode: DeleteMode) -> ApiResult<String> {
        let td = self.federated_td(input, "deleting")?;
        let ds = &self.state.datastore;
        let filter = EntryFilter {
            federates_with: Some(td.clone()),
            ..Default::default()
        };
        let entries = ds
            .list_entries(&filter)
            .await
            .map_err(|e| ApiError::datastore("failed to list entries", e))?;
        if !entries.is_empty() {
            match mode {
                DeleteMode::Restrict => {
                    return Err(ApiError::new(
                        Code::FailedPrecondition,
                        format!(
                            "failed to delete bundle: cannot delete bundle; federated with {} registration entries",
                            entries.len()
                        ),
                    ))
                }
                DeleteMode::Delete => {
                    for e in entries {
                        ds.delete_entry(&e.id)
                            .await
                            .map_err(|err| ApiError::datastore("failed to delete federated entry", err))?;
                    }
                }
                DeleteMode::Dissociate => {
                    for mut e in entries {
                        e.federates_with.retain(|t| *t != td);
                        ds.update_entry(e)
                            .await
                            .map_err(|err| ApiError::datastore("failed to dissociate entry", err))?;
                    }
                }
            }
        }
        match ds.delete_bundle(&td).await {
            Ok(_) => {
                tracing::info!(trust_domain = %td, "federated bundle deleted");
                Ok(td)
            }
            Err(DataStoreError::NotFound { .. }) => Err(ApiError::not_found("bundle not found")),
            Err(e) => Err(ApiError::datastore("failed to delete bundle", e)),
        }
    }
}

fn status_of<T>(result: &ApiResult<T>) -> types::Status {
    match result {
        Ok(_) => ok_status(),
        Err(e) => e.to_proto(),
    }
}

#[tonic::async_trait]
impl Bundle for BundleService {
    async fn count_bundles(
        &self,
        request: Request<CountBundlesRequest>,
    ) -> Result<Response<CountBundlesResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::COUNT_BUNDLES)
            .await?;
        let bundles = self
            .state
            .datastore
            .list_bundles()
            .await
            .map_err(|e| ApiError::datastore("failed to count bundles", e))?;
        Ok(Response::new(CountBundlesResponse {
            count: i32::try_from(bundles.len()).unwrap_or(i32::MAX),
        }))
    }

    async fn get_bundle(
        &self,
        request: Request<GetBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        let caller = self
            .state
            .authorize(request.extensions(), method::GET_BUNDLE)
            .await?;
        super::audit::note_entity(self.own_td());
        // Agents ask every sync round: answered from what the change
        // refresher read when nothing was written through this server since
        // (a local admin reads the store).
        let settled = match caller {
            Caller::Local => None,
            _ => self.state.changes.settled().and_then(|s| s.bundle),
        };
        let bundle = match settled {
            Some(bundle) => bundle,
            None => Arc::new(self.own_bundle().await?),
        };
        let mut bundle = bundle_to_proto(&bundle, request.get_ref().output_mask.as_ref());
        super::localauthority::mark_tainted(&self.state.ca, &mut bundle);
        Ok(Response::new(bundle))
    }

    async fn append_bundle(
        &self,
        request: Request<AppendBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        self.state
            .authorize(request.extensions(), method::APPEND_BUNDLE)
            .await?;
        super::audit::note_entity(self.own_td());
        let req = request.into_inner();
        if req.x509_authorities.is_empty() && req.jwt_authorities.is_empty() {
            return Err(ApiError::invalid_msg("no authorities to append").into());
        }
        let mut x509 = Vec::with_capacity(req.x509_authorities.len());
        for (i, cert) in req.x509_authorities.iter().enumerate() {
            validate::x509_authority(&cert.asn1).map_err(|e| {
                ApiError::invalid("failed to convert X.509 authority", format!("{i}: {e}"))
            })?;
            x509.push(cert.asn1.clone());
        }
        let mut jwt = Vec::with_capacity(req.jwt_authorities.len());
        for (i, key) in req.jwt_authorities.iter().enumerate() {
            jwt.push(validate::jwt_authority(key).map_err(|e| {
                ApiError::invalid("failed to convert JWT authority", format!("{i}: {e}"))
            })?);
        }
        // Read-modify-write as one compare-and-swap: another server on the
        // same database may change the bundle at the same time.
        let fallback = StoredBundle::from(&self.state.ca.bundle());
        let bundle = self
            .state
            .datastore
            .update_bundle(self.own_td(), &|current| {
                let mut bundle = current.unwrap_or_else(|| fallback.clone());
                for cert in &x509 {
                    if !bundle.x509_authorities.contains(cert) {
                        bundle.x509_authorities.push(cert.clone());
                    }
                }
                for key in &jwt {
                    if !bundle
                        .jwt_authorities
                        .iter()
                        .any(|k| k.key_id == key.key_id)
                    {
                        bundle.jwt_authorities.push(key.clone());
                    }
                }
                bundle.sequence_number = bundle.sequence_number.saturating_add(1);
                Some(bundle)
            })
            .await
            .map_err(|e| ApiError::datastore("failed to append bundle", e))?
            .unwrap_or(fallback);
        tracing::info!("authorities appended to the trust bundle");
        Ok(Response::new(bundle_to_proto(
            &bundle,
            req.output_mask.as_ref(),
        )))
    }

    async fn publish_jwt_authority(
        &self,
        request: Request<PublishJwtAuthorityRequest>,
    ) -> Result<Response<PublishJwtAuthorityResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::PUBLISH_JWT_AUTHORITY)
            .await?;
        Err(Status::unimplemented(
            "publishing JWT authorities (downstream servers) is not supported",
        ))
    }

    async fn publish_wit_authority(
        &self,
        request: Request<PublishWitAuthorityRequest>,
    ) -> Result<Response<PublishWitAuthorityResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::PUBLISH_WIT_AUTHORITY)
            .await?;
        Err(Status::unimplemented(
            "publishing WIT authorities is not supported",
        ))
    }

    async fn list_federated_bundles(
        &self,
        request: Request<ListFederatedBundlesRequest>,
    ) -> Result<Response<ListFederatedBundlesResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::LIST_FEDERATED_BUNDLES)
            .await?;
        let req = request.into_inner();
        let own = self.own_td().to_owned();
        let bundles: Vec<StoredBundle> = self
            .state
            .datastore
            .list_bundles()
            .await
            .map_err(|e| ApiError::datastore("failed to list bundles", e))?
            .into_iter()
            .filter(|b| b.trust_domain != own)
            .collect();
        let (page, next_page_token) =
            paginate(bundles, req.page_size, &req.page_token, |b| &b.trust_domain);
        Ok(Response::new(ListFederatedBundlesResponse {
            bundles: page
                .iter()
                .map(|b| bundle_to_proto(b, req.output_mask.as_ref()))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_federated_bundle(
        &self,
        request: Request<GetFederatedBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        self.state
            .authorize(request.extensions(), method::GET_FEDERATED_BUNDLE)
            .await?;
        let req = request.into_inner();
        let td = self.federated_td(&req.trust_domain, "getting")?;
        let bundle = self
            .state
            .datastore
            .get_bundle(&td)
            .await
            .map_err(|e| ApiError::datastore("failed to fetch bundle", e))?
            .ok_or_else(|| ApiError::not_found("bundle not found"))?;
        Ok(Response::new(bundle_to_proto(
            &bundle,
            req.output_mask.as_ref(),
        )))
    }

    async fn batch_create_federated_bundle(
        &self,
        request: Request<BatchCreateFederatedBundleRequest>,
    ) -> Result<Response<BatchCreateFederatedBundleResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::BATCH_CREATE_FEDERATED_BUNDLE)
            .await?;
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.bundle.len());
        for b in &req.bundle {
            let r = self.create(b).await;
            results.push(batch_create_federated_bundle_response::Result {
                status: Some(status_of(&r)),
                bundle: r
                    .ok()
                    .map(|b| bundle_to_proto(&b, req.output_mask.as_ref())),
            });
        }
        Ok(Response::new(BatchCreateFederatedBundleResponse {
            results,
        }))
    }

    async fn batch_update_federated_bundle(
        &self,
        request: Request<BatchUpdateFederatedBundleRequest>,
    ) -> Result<Response<BatchUpdateFederatedBundleResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::BATCH_UPDATE_FEDERATED_BUNDLE)
            .await?;
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.bundle.len());
        for b in &req.bundle {
            let r = self.update(b, req.input_mask.as_ref()).await;
            results.push(batch_update_federated_bundle_response::Result {
                status: Some(status_of(&r)),
                bundle: r
                    .ok()
                    .map(|b| bundle_to_proto(&b, req.output_mask.as_ref())),
            });
        }
        Ok(Response::new(BatchUpdateFederatedBundleResponse {
            results,
        }))
    }

    async fn batch_set_federated_bundle(
        &self,
        request: Request<BatchSetFederatedBundleRequest>,
    ) -> Result<Response<BatchSetFederatedBundleResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::BATCH_SET_FEDERATED_BUNDLE)
            .await?;
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.bundle.len());
        for b in &req.bundle {
            let r = self.set(b).await;
            results.push(batch_set_federated_bundle_response::Result {
                status: Some(status_of(&r)),
                bundle: r
                    .ok()
                    .map(|b| bundle_to_proto(&b, req.output_mask.as_ref())),
            });
        }
        Ok(Response::new(BatchSetFederatedBundleResponse { results }))
    }

    async fn batch_delete_federated_bundle(
        &self,
        request: Request<BatchDeleteFederatedBundleRequest>,
    ) -> Result<Response<BatchDeleteFederatedBundleResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::BATCH_DELETE_FEDERATED_BUNDLE)
            .await?;
        let req = request.into_inner();
        let mode = match req.mode {
            1 => DeleteMode::Delete,
            2 => DeleteMode::Dissociate,
            _ => DeleteMode::Restrict,
        };
        let mut results = Vec::with_capacity(req.trust_domains.len());
        for td in &req.trust_domains {
            let r = self.delete(td, mode).await;
            results.push(batch_delete_federated_bundle_response::Result {
                status: Some(status_of(&r)),
                trust_domain: r.unwrap_or_else(|_| td.clone()),
            });
        }
        Ok(Response::new(BatchDeleteFederatedBundleResponse {
            results,
        }))
    }
}
