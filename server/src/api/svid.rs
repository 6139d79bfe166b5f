//! `spire.api.server.svid.v1.SVID`: SVIDs for agents' entries, and minted
//! SVIDs for admins.
//!
//! For agents (invariants 1 and 2): an SVID is only signed for an entry the
//! calling agent is authorized for (anything else is `NotFound`, the same
//! answer as for an entry that does not exist), and its SPIFFE ID, DNS names
//! and TTL come from the entry; the CSR contributes only its public key,
//! after its signature is verified.

use std::sync::Arc;
use std::time::Duration;

use spinel_proto::spire::api::server::svid::v1::{
    batch_new_x509svid_response, svid_server::Svid, BatchNewWitsvidRequest,
    BatchNewWitsvidResponse, BatchNewX509svidRequest, BatchNewX509svidResponse, MintJwtsvidRequest,
    MintJwtsvidResponse, MintWitsvidRequest, MintWitsvidResponse, MintX509svidRequest,
    MintX509svidResponse, NewDownstreamX509caRequest, NewDownstreamX509caResponse,
    NewJwtsvidRequest, NewJwtsvidResponse, NewX509svidParams,
};
use spinel_proto::spire::api::types;
use spinel_spiffe::{clock, SpiffeId};
use tonic::{Code, Request, Response, Status};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::auth::method;
use super::authorized::AuthorizedSet;
use super::convert::{id_to_proto, x509_svid_to_proto};
use super::entry::EntryService;
use super::error::{ok_status, ApiError, ApiResult};
use super::{validate, ApiState};
use crate::ca::{verify_csr, X509SvidParams};
use crate::datastore::RegistrationEntry;

/// Below this many SVIDs per blocking task, a batch is not split further
/// (a CSR check and a signature take ~0.1 ms; a task hand-off ~10 us).
const PER_TASK_MIN: usize = 16;

/// The SVID service.
#[derive(Debug, Clone)]
pub struct SvidService {
    state: Arc<ApiState>,
}

impl SvidService {
    /// The service over `state`.
    pub fn new(state: Arc<ApiState>) -> Self {
        SvidService { state }
    }

    fn new_x509(&self, set: &AuthorizedSet, p: &NewX509svidParams) -> ApiResult<types::X509svid> {
        if p.entry_id.is_empty() {
            return Err(ApiError::invalid_msg("missing entry ID"));
        }
        if p.csr.is_empty() {
            return Err(ApiError::invalid_msg("missing CSR"));
        }
        let entry = set
            .get(&p.entry_id)
            .ok_or_else(|| ApiError::not_found("entry not found or not authorized"))?;
        let params = x509_params_for_entry(entry, &p.csr)?;
        let spiffe_id = params.spiffe_id.clone();
        let svid = self
            .state
            .ca
            .sign_x509_svid(params)
            .map_err(|e| ApiError::internal("failed to sign X509-SVID", e))?;
        Ok(x509_svid_to_proto(&svid, &spiffe_id, &entry.hint))
    }

    /// Signs a batch on every core: the batch is cut into one part per core,
    /// each part signed on the blocking pool, the answers put back in
    /// request order. Small batches are signed in place.
    async fn sign_batch(
        &self,
        set: Arc<AuthorizedSet>,
        params: Vec<NewX509svidParams>,
    ) -> Result<Vec<batch_new_x509svid_response::Result>, Status> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        if params.len() < 2 * PER_TASK_MIN || cores == 1 {
            return Ok(params.iter().map(|p| self.result_for(&set, p)).collect());
        }
        let part = params.len().div_ceil(cores).max(PER_TASK_MIN);
        let mut params = params.into_iter();
        let mut tasks = Vec::new();
        loop {
            let chunk: Vec<NewX509svidParams> = params.by_ref().take(part).collect();
            if chunk.is_empty() {
                break;
            }
            let service = self.clone();
            let set = set.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                chunk
                    .iter()
                    .map(|p| service.result_for(&set, p))
                    .collect::<Vec<_>>()
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.extend(task.await.map_err(|e| {
                tracing::error!(error = %e, "an X509-SVID signing task failed");
                Status::internal("failed to sign X509-SVIDs")
            })?);
        }
        Ok(results)
    }

    /// One item of `BatchNewX509SVID`: its SVID or its own error.
    fn result_for(
        &self,
        set: &AuthorizedSet,
        p: &NewX509svidParams,
    ) -> batch_new_x509svid_response::Result {
        match self.new_x509(set, p) {
            Ok(svid) => batch_new_x509svid_response::Result {
                status: Some(ok_status()),
                svid: Some(svid),
            },
            Err(e) => batch_new_x509svid_response::Result {
                status: Some(e.to_proto()),
                svid: None,
            },
        }
    }

    fn jwt(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: Option<Duration>,
        hint: &str,
    ) -> ApiResult<types::Jwtsvid> {
        if audience.is_empty() || audience.iter().any(String::is_empty) {
            return Err(ApiError::invalid_msg("at least one audience is required"));
        }
        let svid = self
            .state
            .ca
            .sign_jwt_svid(id, audience, ttl)
            .map_err(|e| match e {
                crate::ca::CaError::InvalidRequest(r) => ApiError::invalid_msg(r),
                other => ApiError::internal("failed to sign JWT-SVID", other),
            })?;
        Ok(types::Jwtsvid {
            token: svid.token,
            id: Some(id_to_proto(id)),
            expires_at: clock::to_unix_seconds(svid.expires_at),
            issued_at: clock::to_unix_seconds(svid.issued_at),
            hint: hint.to_owned(),
        })
    }

    fn mint_x509(&self, req: &MintX509svidRequest) -> ApiResult<types::X509svid> {
        if req.csr.is_empty() {
            return Err(ApiError::invalid_msg("missing CSR"));
        }
        if req.ttl < 0 {
            return Err(ApiError::invalid_msg("ttl must not be negative"));
        }
        let public_key = verify_csr(&req.csr).map_err(|e| ApiError::invalid("invalid CSR", e))?;
        let (uris, dns_names) =
            csr_names(&req.csr).map_err(|e| ApiError::invalid("malformed CSR", e))?;
        let [uri] = uris.as_slice() else {
            return Err(if uris.is_empty() {
                ApiError::invalid_msg("CSR URI SAN is required")
            } else {
                ApiError::invalid_msg("only one URI SAN is expected")
            });
        };
        let spiffe_id = spinel_spiffe::id::parse_id(uri)
            .map_err(|e| ApiError::invalid("CSR URI SAN is invalid", e))?;
        super::audit::note_entity(&spiffe_id.to_string());
        let td = &self.state.trust_domain;
        if !spiffe_id.is_member_of(td) || spiffe_id.path().is_empty() {
            return Err(ApiError::invalid(
                "CSR URI SAN is invalid",
                format!("\"{spiffe_id}\" is not a member of trust domain \"{td}\""),
            ));
        }
        for name in &dns_names {
            validate::dns_name(name)
                .map_err(|e| ApiError::invalid("CSR DNS name is invalid", e))?;
        }
        let svid = self
            .state
            .ca
            .sign_x509_svid(X509SvidParams {
                spiffe_id: spiffe_id.clone(),
                public_key,
                dns_names,
                ttl: ttl(req.ttl),
            })
            .map_err(|e| ApiError::internal("failed to sign X509-SVID", e))?;
        tracing::info!(spiffe_id = %spiffe_id, "X509-SVID minted");
        Ok(x509_svid_to_proto(&svid, &spiffe_id, ""))
    }
}

/// What an agent's X509-SVID for `entry` is made of: the SPIFFE ID, DNS
/// names and TTL of the entry, and only the public key of `csr`, after its
/// signature is verified (invariants 1 and 2). Public for the fuzz target
/// `csr_issue`, which drives the issue policy through it.
pub fn x509_params_for_entry(entry: &RegistrationEntry, csr: &[u8]) -> ApiResult<X509SvidParams> {
    let public_key = verify_csr(csr).map_err(|e| ApiError::invalid("invalid CSR", e))?;
    let spiffe_id = spinel_spiffe::id::parse_id(&entry.spiffe_id)
        .map_err(|e| ApiError::internal("entry has malformed SPIFFE ID", e))?;
    Ok(X509SvidParams {
        spiffe_id,
        public_key,
        dns_names: entry.dns_names.clone(),
        ttl: ttl(entry.x509_svid_ttl),
    })
}

/// A TTL in seconds from the API; 0 means the default.
fn ttl(seconds: i32) -> Option<Duration> {
    u64::try_from(seconds)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// The URI and DNS SANs a CSR asks for (only `MintX509SVID` honours them).
fn csr_names(der: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    let (_, csr) = X509CertificationRequest::from_der(der).map_err(|e| e.to_string())?;
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::URI(u) => uris.push((*u).to_owned()),
                    GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                    _ => {}
                }
            }
        }
    }
    Ok((uris, dns))
}

fn unimplemented(what: &str) -> Status {
    Status::new(Code::Unimplemented, format!("{what} is not supported"))
}

#[tonic::async_trait]
impl Svid for SvidService {
    async fn mint_x509svid(
        &self,
        request: Request<MintX509svidRequest>,
    ) -> Result<Response<MintX509svidResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::MINT_X509_SVID)
            .await?;
        let svid = self.mint_x509(request.get_ref())?;
        Ok(Response::new(MintX509svidResponse { svid: Some(svid) }))
    }

    async fn mint_jwtsvid(
        &self,
        request: Request<MintJwtsvidRequest>,
    ) -> Result<Response<MintJwtsvidResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::MINT_JWT_SVID)
            .await?;
        let req = request.into_inner();
        let id = validate::member_id(&self.state.trust_domain, req.id.as_ref())
            .map_err(|e| ApiError::invalid("invalid SPIFFE ID", e))?;
        super::audit::note_entity(&id.to_string());
        if req.ttl < 0 {
            return Err(ApiError::invalid_msg("ttl must not be negative").into());
        }
        let svid = self.jwt(&id, &req.audience, ttl(req.ttl), "")?;
        tracing::info!(spiffe_id = %id, "JWT-SVID minted");
        Ok(Response::new(MintJwtsvidResponse { svid: Some(svid) }))
    }

    async fn mint_witsvid(
        &self,
        request: Request<MintWitsvidRequest>,
    ) -> Result<Response<MintWitsvidResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::MINT_WIT_SVID)
            .await?;
        Err(unimplemented("WIT-SVID minting"))
    }

    async fn batch_new_x509svid(
        &self,
        request: Request<BatchNewX509svidRequest>,
    ) -> Result<Response<BatchNewX509svidResponse>, Status> {
        let caller = self
            .state
            .authorize(request.extensions(), method::BATCH_NEW_X509_SVID)
            .await?;
        let req = request.into_inner();
        if req.params.is_empty() {
            return Err(ApiError::invalid_msg("missing parameters").into());
        }
        for p in req.params.iter().filter(|p| !p.entry_id.is_empty()) {
            super::audit::note_entity(&p.entry_id);
        }
        let set = EntryService::authorized(&self.state, &caller).await?;
        let results = self.sign_batch(set, req.params).await?;
        Ok(Response::new(BatchNewX509svidResponse { results }))
    }

    async fn new_jwtsvid(
        &self,
        request: Request<NewJwtsvidRequest>,
    ) -> Result<Response<NewJwtsvidResponse>, Status> {
        let caller = self
            .state
            .authorize(request.extensions(), method::NEW_JWT_SVID)
            .await?;
        let req = request.into_inner();
        if req.entry_id.is_empty() {
            return Err(ApiError::invalid_msg("missing entry ID").into());
        }
        super::audit::note_entity(&req.entry_id);
        let set = EntryService::authorized(&self.state, &caller).await?;
        let entry = set
            .get(&req.entry_id)
            .ok_or_else(|| ApiError::not_found("entry not found or not authorized"))?;
        let id = spinel_spiffe::id::parse_id(&entry.spiffe_id)
            .map_err(|e| ApiError::internal("entry has malformed SPIFFE ID", e))?;
        let svid = self.jwt(&id, &req.audience, ttl(entry.jwt_svid_ttl), &entry.hint)?;
        Ok(Response::new(NewJwtsvidResponse { svid: Some(svid) }))
    }

    async fn batch_new_witsvid(
        &self,
        request: Request<BatchNewWitsvidRequest>,
    ) -> Result<Response<BatchNewWitsvidResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::BATCH_NEW_WIT_SVID)
            .await?;
        Err(unimplemented("WIT-SVID issuance"))
    }

    async fn new_downstream_x509ca(
        &self,
        request: Request<NewDownstreamX509caRequest>,
    ) -> Result<Response<NewDownstreamX509caResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::NEW_DOWNSTREAM_X509_CA)
            .await?;
        Err(unimplemented("downstream CA signing"))
    }
}
