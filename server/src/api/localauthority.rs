//! `spire.api.server.localauthority.v1.LocalAuthority`: manual rotation of
//! the server's X.509 CA and JWT key (admins only).
//!
//! Each call maps to one operation of [`crate::ca::Ca`], which journals the
//! change before this service answers. Out-of-order requests are refused:
//! a wrong or missing authority ID is `InvalidArgument`, an operation the
//! state does not allow (nothing prepared, already tainted, not tainted)
//! is `FailedPrecondition`. WIT authorities and upstream taint/revoke are
//! `Unimplemented`.
//!
//! [`mark_tainted`] sets the `tainted` flags of the bundle that
//! `GetBundle` serves, which is how agents learn that they must replace
//! the SVIDs a tainted authority signed.

use std::sync::Arc;

use spinel_proto::spire::api::server::localauthority::v1::{
    local_authority_server::LocalAuthority, ActivateJwtAuthorityRequest,
    ActivateJwtAuthorityResponse, ActivateWitAuthorityRequest, ActivateWitAuthorityResponse,
    ActivateX509AuthorityRequest, ActivateX509AuthorityResponse, AuthorityState,
    GetJwtAuthorityStateRequest, GetJwtAuthorityStateResponse, GetWitAuthorityStateRequest,
    GetWitAuthorityStateResponse, GetX509AuthorityStateRequest, GetX509AuthorityStateResponse,
    PrepareJwtAuthorityRequest, PrepareJwtAuthorityResponse, PrepareWitAuthorityRequest,
    PrepareWitAuthorityResponse, PrepareX509AuthorityRequest, PrepareX509AuthorityResponse,
    RevokeJwtAuthorityRequest, RevokeJwtAuthorityResponse, RevokeWitAuthorityRequest,
    RevokeWitAuthorityResponse, RevokeX509AuthorityRequest, RevokeX509AuthorityResponse,
    RevokeX509UpstreamAuthorityRequest, RevokeX509UpstreamAuthorityResponse,
    TaintJwtAuthorityRequest, TaintJwtAuthorityResponse, TaintWitAuthorityRequest,
    TaintWitAuthorityResponse, TaintX509AuthorityRequest, TaintX509AuthorityResponse,
    TaintX509UpstreamAuthorityRequest, TaintX509UpstreamAuthorityResponse,
};
use spinel_proto::spire::api::types;
use spinel_spiffe::clock::to_unix_seconds;
use tonic::{Code, Request, Response, Status};

use super::error::ApiError;
use super::ApiState;
use crate::ca::{AuthorityInfo, AuthorityKind, Ca, CaError};

const PREFIX: &str = "/spire.api.server.localauthority.v1.LocalAuthority/";

/// Full gRPC paths of the methods (all admin-only by the method table).
mod path {
    pub use crate::api::method::{
        ACTIVATE_JWT_AUTHORITY as ACTIVATE_JWT, ACTIVATE_X509_AUTHORITY as ACTIVATE_X509,
        GET_JWT_AUTHORITY_STATE as GET_JWT, GET_X509_AUTHORITY_STATE as GET_X509,
        PREPARE_JWT_AUTHORITY as PREPARE_JWT, PREPARE_X509_AUTHORITY as PREPARE_X509,
        REVOKE_JWT_AUTHORITY as REVOKE_JWT, REVOKE_X509_AUTHORITY as REVOKE_X509,
        REVOKE_X509_UPSTREAM_AUTHORITY as REVOKE_UPSTREAM, TAINT_JWT_AUTHORITY as TAINT_JWT,
        TAINT_X509_AUTHORITY as TAINT_X509, TAINT_X509_UPSTREAM_AUTHORITY as TAINT_UPSTREAM,
    };
    /// What the WIT methods are authorized as (all refused as unsupported).
    pub const WIT: &str = "/spire.api.server.localauthority.v1.LocalAuthority/WIT";
}

/// The LocalAuthority service.
#[derive(Debug, Clone)]
pub struct LocalAuthorityService {
    state: Arc<ApiState>,
}

impl LocalAuthorityService {
    /// The service over `state`.
    pub fn new(state: Arc<ApiState>) -> Self {
        LocalAuthorityService { state }
    }

    async fn admin<T>(&self, request: &Request<T>, method: &'static str) -> Result<(), Status> {
        debug_assert!(method.starts_with(PREFIX));
        self.state.authorize(request.extensions(), method).await?;
        Ok(())
    }

    fn ca(&self) -> &Ca {
        &self.state.ca
    }
}

fn to_proto(info: &AuthorityInfo) -> AuthorityState {
    AuthorityState {
        authority_id: info.authority_id.clone(),
        expires_at: to_unix_seconds(info.expires_at),
        upstream_authority_subject_key_id: info.upstream_authority_subject_key_id.clone(),
    }
}

/// A CA refusal or failure as the caller sees it, prefixed with what was
/// being done (`"unable to taint X.509 authority: ..."`).
fn refused(what: &str, kind: AuthorityKind, err: CaError) -> Status {
    let kind = match kind {
        AuthorityKind::X509 => "X.509",
        AuthorityKind::Jwt => "JWT",
    };
    let msg = format!("unable to {what} {kind} authority");
    match err {
        CaError::InvalidAuthority(_) => ApiError::invalid(&msg, err),
        CaError::OutOfOrder(_) => ApiError::new(Code::FailedPrecondition, format!("{msg}: {err}")),
        other => ApiError::internal(&msg, other),
    }
    .into()
}

fn wit() -> Status {
    Status::unimplemented("WIT authorities are not supported")
}

type States = (
    Option<AuthorityState>,
    Option<AuthorityState>,
    Option<AuthorityState>,
);

impl LocalAuthorityService {
    fn states(&self, kind: AuthorityKind) -> Result<States, Status> {
        let s = self
            .ca()
            .authority_state(kind)
            .map_err(|e| refused("read", kind, e))?;
        Ok((
            Some(to_proto(&s.active)),
            s.prepared.as_ref().map(to_proto),
            s.old.as_ref().map(to_proto),
        ))
    }

    async fn prepare(&self, kind: AuthorityKind) -> Result<Option<AuthorityState>, Status> {
        let info = self
            .ca()
            .prepare_authority(kind)
            .await
            .map_err(|e| refused("prepare", kind, e))?;
        let state = to_proto(&info);
        super::audit::note_entity(&state.authority_id);
        Ok(Some(state))
    }

    async fn activate(
        &self,
        kind: AuthorityKind,
        id: &str,
    ) -> Result<Option<AuthorityState>, Status> {
        note_authority(id);
        let info = self
            .ca()
            .activate_authority(kind, id)
            .await
            .map_err(|e| refused("activate", kind, e))?;
        Ok(Some(to_proto(&info)))
    }

    async fn taint(&self, kind: AuthorityKind, id: &str) -> Result<Option<AuthorityState>, Status> {
        note_authority(id);
        let info = self
            .ca()
            .taint_authority(kind, id)
            .await
            .map_err(|e| refused("taint", kind, e))?;
        Ok(Some(to_proto(&info)))
    }

    async fn revoke(
        &self,
        kind: AuthorityKind,
        id: &str,
    ) -> Result<Option<AuthorityState>, Status> {
        note_authority(id);
        let info = self
            .ca()
            .revoke_authority(kind, id)
            .await
            .map_err(|e| refused("revoke", kind, e))?;
        Ok(Some(to_proto(&info)))
    }
}

/// Notes the authority a call names (an authority ID, or an upstream
/// authority's subject key ID) for the audit line.
fn note_authority(id: &str) {
    if !id.is_empty() {
        super::audit::note_entity(id);
    }
}

/// Sets the `tainted` flag on the authorities of `bundle` (our own trust
/// domain's) that `ca` has tainted.
pub fn mark_tainted(ca: &Ca, bundle: &mut types::Bundle) {
    let x509 = ca.tainted_x509_authorities();
    for cert in &mut bundle.x509_authorities {
        cert.tainted = x509.contains(&cert.asn1);
    }
    let jwt = ca.tainted_jwt_authorities();
    for key in &mut bundle.jwt_authorities {
        key.tainted = jwt.contains(&key.key_id);
    }
}

#[tonic::async_trait]
impl LocalAuthority for LocalAuthorityService {
    async fn get_jwt_authority_state(
        &self,
        request: Request<GetJwtAuthorityStateRequest>,
    ) -> Result<Response<GetJwtAuthorityStateResponse>, Status> {
        self.admin(&request, path::GET_JWT).await?;
        let (active, prepared, old) = self.states(AuthorityKind::Jwt)?;
        Ok(Response::new(GetJwtAuthorityStateResponse {
            active,
            prepared,
            old,
        }))
    }

    async fn prepare_jwt_authority(
        &self,
        request: Request<PrepareJwtAuthorityRequest>,
    ) -> Result<Response<PrepareJwtAuthorityResponse>, Status> {
        self.admin(&request, path::PREPARE_JWT).await?;
        Ok(Response::new(PrepareJwtAuthorityResponse {
            prepared_authority: self.prepare(AuthorityKind::Jwt).await?,
        }))
    }

    async fn activate_jwt_authority(
        &self,
        request: Request<ActivateJwtAuthorityRequest>,
    ) -> Result<Response<ActivateJwtAuthorityResponse>, Status> {
        self.admin(&request, path::ACTIVATE_JWT).await?;
        let id = &request.get_ref().authority_id;
        Ok(Response::new(ActivateJwtAuthorityResponse {
            activated_authority: self.activate(AuthorityKind::Jwt, id).await?,
        }))
    }

    async fn taint_jwt_authority(
        &self,
        request: Request<TaintJwtAuthorityRequest>,
    ) -> Result<Response<TaintJwtAuthorityResponse>, Status> {
        self.admin(&request, path::TAINT_JWT).await?;
        let id = &request.get_ref().authority_id;
        Ok(Response::new(TaintJwtAuthorityResponse {
            tainted_authority: self.taint(AuthorityKind::Jwt, id).await?,
        }))
    }

    async fn revoke_jwt_authority(
        &self,
        request: Request<RevokeJwtAuthorityRequest>,
    ) -> Result<Response<RevokeJwtAuthorityResponse>, Status> {
        self.admin(&request, path::REVOKE_JWT).await?;
        let id = &request.get_ref().authority_id;
        Ok(Response::new(RevokeJwtAuthorityResponse {
            revoked_authority: self.revoke(AuthorityKind::Jwt, id).await?,
        }))
    }

    async fn get_x509_authority_state(
        &self,
        request: Request<GetX509AuthorityStateRequest>,
    ) -> Result<Response<GetX509AuthorityStateResponse>, Status> {
        self.admin(&request, path::GET_X509).await?;
        let (active, prepared, old) = self.states(AuthorityKind::X509)?;
        Ok(Response::new(GetX509AuthorityStateResponse {
            active,
            prepared,
            old,
        }))
    }

    async fn prepare_x509_authority(
        &self,
        request: Request<PrepareX509AuthorityRequest>,
    ) -> Result<Response<PrepareX509AuthorityResponse>, Status> {
        self.admin(&request, path::PREPARE_X509).await?;
        Ok(Response::new(PrepareX509AuthorityResponse {
            prepared_authority: self.prepare(AuthorityKind::X509).await?,
        }))
    }

    async fn activate_x509_authority(
        &self,
        request: Request<ActivateX509AuthorityRequest>,
    ) -> Result<Response<ActivateX509AuthorityResponse>, Status> {
        self.admin(&request, path::ACTIVATE_X509).await?;
        let id = &request.get_ref().authority_id;
        Ok(Response::new(ActivateX509AuthorityResponse {
            activated_authority: self.activate(AuthorityKind::X509, id).await?,
        }))
    }

    async fn taint_x509_authority(
        &self,
        request: Request<TaintX509AuthorityRequest>,
    ) -> Result<Response<TaintX509AuthorityResponse>, Status> {
        self.admin(&request, path::TAINT_X509).await?;
        let id = &request.get_ref().authority_id;
        Ok(Response::new(TaintX509AuthorityResponse {
            tainted_authority: self.taint(AuthorityKind::X509, id).await?,
        }))
    }

    async fn taint_x509_upstream_authority(
        &self,
        request: Request<TaintX509UpstreamAuthorityRequest>,
    ) -> Result<Response<TaintX509UpstreamAuthorityResponse>, Status> {
        self.admin(&request, path::TAINT_UPSTREAM).await?;
        note_authority(&request.get_ref().subject_key_id);
        Err(Status::unimplemented(
            "tainting an upstream authority is not supported yet",
        ))
    }

    async fn revoke_x509_authority(
        &self,
        request: Request<RevokeX509AuthorityRequest>,
    ) -> Result<Response<RevokeX509AuthorityResponse>, Status> {
        self.admin(&request, path::REVOKE_X509).await?;
        let id = &request.get_ref().authority_id;
        Ok(Response::new(RevokeX509AuthorityResponse {
            revoked_authority: self.revoke(AuthorityKind::X509, id).await?,
        }))
    }

    async fn revoke_x509_upstream_authority(
        &self,
        request: Request<RevokeX509UpstreamAuthorityRequest>,
    ) -> Result<Response<RevokeX509UpstreamAuthorityResponse>, Status> {
        self.admin(&request, path::REVOKE_UPSTREAM).await?;
        note_authority(&request.get_ref().subject_key_id);
        Err(Status::unimplemented(
            "revoking an upstream authority is not supported yet",
        ))
    }

    async fn get_wit_authority_state(
        &self,
        request: Request<GetWitAuthorityStateRequest>,
    ) -> Result<Response<GetWitAuthorityStateResponse>, Status> {
        self.admin(&request, path::WIT).await?;
        Err(wit())
    }

    async fn prepare_wit_authority(
        &self,
        request: Request<PrepareWitAuthorityRequest>,
    ) -> Result<Response<PrepareWitAuthorityResponse>, Status> {
        self.admin(&request, path::WIT).await?;
        Err(wit())
    }

    async fn activate_wit_authority(
        &self,
        request: Request<ActivateWitAuthorityRequest>,
    ) -> Result<Response<ActivateWitAuthorityResponse>, Status> {
        self.admin(&request, path::WIT).await?;
        Err(wit())
    }

    async fn taint_wit_authority(
        &self,
        request: Request<TaintWitAuthorityRequest>,
    ) -> Result<Response<TaintWitAuthorityResponse>, Status> {
        self.admin(&request, path::WIT).await?;
        Err(wit())
    }

    async fn revoke_wit_authority(
        &self,
        request: Request<RevokeWitAuthorityRequest>,
    ) -> Result<Response<RevokeWitAuthorityResponse>, Status> {
        self.admin(&request, path::WIT).await?;
        Err(wit())
    }
}
