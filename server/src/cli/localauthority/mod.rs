//! `spinel-server localauthority x509|jwt show|prepare|activate|taint|revoke`:
//! manual rotation of the server's X.509 CA and JWT key through the
//! `spire.api.server.localauthority.v1.LocalAuthority` API, with SPIRE's
//! flags (`-authorityID`, `-socketPath`, `-output json`) and output.
//!
//! The order is SPIRE's: `prepare` (published, not used), `activate`
//! (signs; the previous one becomes old), `taint` the old one (agents
//! replace what it signed), then `revoke` it (removed from the bundle).

mod print;

use spinel_proto::spire::api::server::localauthority::v1::{
    local_authority_client::LocalAuthorityClient, ActivateJwtAuthorityRequest,
    ActivateX509AuthorityRequest, GetJwtAuthorityStateRequest, GetX509AuthorityStateRequest,
    PrepareJwtAuthorityRequest, PrepareX509AuthorityRequest, RevokeJwtAuthorityRequest,
    RevokeX509AuthorityRequest, TaintJwtAuthorityRequest, TaintX509AuthorityRequest,
};
use tonic::transport::Channel;

use super::admin_client::{connect_admin, AdminArgs, AdminClientError, OutputFormat};
use super::output::print_proto_json;

pub use print::{format_one, format_state, Kind};

/// `localauthority` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LocalAuthorityCommand {
    /// Manages the X.509 authorities (CAs).
    #[command(subcommand)]
    X509(AuthorityCommand),
    /// Manages the JWT authorities (signing keys).
    #[command(subcommand)]
    Jwt(AuthorityCommand),
}

/// What to do with one kind of authority.
#[derive(Debug, clap::Subcommand)]
pub enum AuthorityCommand {
    /// Shows the active, prepared and old authority.
    Show(CommonArgs),
    /// Prepares (makes and publishes) the next authority.
    Prepare(CommonArgs),
    /// Activates the prepared authority.
    Activate(IdArgs),
    /// Taints the old authority: SVIDs it signed are replaced at once.
    Taint(IdArgs),
    /// Revokes the tainted old authority: it leaves the bundle.
    Revoke(IdArgs),
}

/// `show` and `prepare` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub common: AdminArgs,
}

/// `activate`, `taint` and `revoke` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct IdArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The authority ID (X.509: subject key ID; JWT: key ID).
    #[arg(long = "authorityID", value_name = "ID")]
    pub authority_id: Option<String>,
}

impl IdArgs {
    fn id(&self) -> Result<String, AdminClientError> {
        match self.authority_id.as_deref() {
            Some(id) if !id.is_empty() => Ok(id.to_owned()),
            _ => Err(AdminClientError::usage("an authority ID is required")),
        }
    }
}

async fn client(common: &AdminArgs) -> Result<LocalAuthorityClient<Channel>, AdminClientError> {
    Ok(LocalAuthorityClient::new(
        connect_admin(&common.socket_path).await?,
    ))
}

const PKG: &str = "spire.api.server.localauthority.v1";

/// Runs a `localauthority` subcommand.
pub async fn run(cmd: LocalAuthorityCommand) -> anyhow::Result<()> {
    match cmd {
        LocalAuthorityCommand::X509(cmd) => x509(cmd).await?,
        LocalAuthorityCommand::Jwt(cmd) => jwt(cmd).await?,
    }
    Ok(())
}

fn emit<M: prost::Message>(
    output: OutputFormat,
    msg: &M,
    name: &str,
    pretty: impl FnOnce(&M) -> String,
) -> Result<(), AdminClientError> {
    match output {
        OutputFormat::Json => print_proto_json(msg, &format!("{PKG}.{name}")),
        OutputFormat::Pretty => {
            print!("{}", pretty(msg));
            Ok(())
        }
    }
}

async fn x509(cmd: AuthorityCommand) -> Result<(), AdminClientError> {
    let k = Kind::X509;
    match cmd {
        AuthorityCommand::Show(a) => {
            let r = client(&a.common)
                .await?
                .get_x509_authority_state(GetX509AuthorityStateRequest {})
                .await
                .map_err(AdminClientError::rpc)?
                .into_inner();
            emit(a.common.output, &r, "GetX509AuthorityStateResponse", |r| {
                format_state(k, r.active.as_ref(), r.prepared.as_ref(), r.old.as_ref())
            })
        }
        AuthorityCommand::Prepare(a) => {
            let r = client(&a.common)
                .await?
                .prepare_x509_authority(PrepareX509AuthorityRequest {})
                .await
                .map_err(AdminClientError::rpc)?
                .into_inner();
            emit(a.common.output, &r, "PrepareX509AuthorityResponse", |r| {
                format_one("Prepared", k, r.prepared_authority.as_ref())
            })
        }
        AuthorityCommand::Activate(a) => {
            let authority_id = a.id()?;
            let r = client(&a.common)
                .await?
                .activate_x509_authority(ActivateX509AuthorityRequest { authority_id })
                .await
                .map_err(AdminClientError::rpc)?
                .into_inner();
            emit(a.common.output, &r, "ActivateX509AuthorityResponse", |r| {
                format_one("Activated", k, r.activated_authority.as_ref())
            })
        }
        AuthorityCommand::Taint(a) => {
            let authority_id = a.id()?;
            let r = client(&a.common)
                .await?
                .taint_x509_authority(TaintX509AuthorityRequest { authority_id })
                .await
                .map_err(AdminClientError::rpc)?
                .into_inner();
            emit(a.common.output, &r, "TaintX509AuthorityResponse", |r| {
                format_one("Tainted", k, r.tainted_authority.as_ref())
            })
        }
        AuthorityCommand::Revoke(a) => {
            let authority_id = a.id()?;
            let r = client(&a.common)
                .await?
                .revoke_x509_authority(RevokeX509AuthorityRequest { authority_id })
                .await
                .map_err(AdminClientError::rpc)?
                .into_inner();
            emit(a.common.output, &r, "RevokeX509AuthorityResponse", |r| {
                format_one("Revoked", k, r.revoked_authority.as_ref())
            })
        }
    }
}

async fn jwt(cmd: AuthorityCommand) -> Result<(), AdminClientError> {
    let k = Kind::Jwt;
    match cmd {
        AuthorityCommand::Show(a) => {
            let r = client(&a.common)
                .await?
                .get_jwt_authority_state(GetJwtAuthorityStateRequest {})
                .await
                .map_err(AdminClientError::rpc)?
                .into_inner();
            emit(a.common.output, &r, "GetJWTAuthorityStateResponse", |r| {
                format_state(k, r.active.as_ref(), r.prepared.as_ref(), r.old.as_ref())
            })
        }
        AuthorityCommand::Prepare(a) => {
            let r = client(&a.common)
                .await?
                .prepare_jwt_authority(PrepareJwtAuthorityRequest {})
                .await
                .map_err(AdminClientError::rpc)?
                .into_inner();
            emit(a.common.output, &r, "PrepareJWTAuthorityResponse", |r| {
                format_one("Prepared", k, r.prepared_authority.as_ref())
            })
        }
        AuthorityCommand::Activate(a) => {
            let authority_id = a.id()?;
            let r = client(&a.common)
                .await?
                .activate_jwt_authority(ActivateJwtAuthorityRequest { authority_id })
                .await
                .map_err(AdminClientError::rpc)?
                .into_inner();
            emit(a.common.output, &r, "ActivateJWTAuthorityResponse", |r| {
                format_one("Activated", k, r.activated_authority.as_ref())
            })
        }
        AuthorityCommand::Taint(a) => {
            let authority_id = a.id()?;
            let r = client(&a.common)
                .await?
                .taint_jwt_authority(TaintJwtAuthorityRequest { authority_id })
                .await
                .map_err(AdminClientError::rpc)?
                .into_inner();
            emit(a.common.output, &r, "TaintJWTAuthorityResponse", |r| {
                format_one("Tainted", k, r.tainted_authority.as_ref())
            })
        }
        AuthorityCommand::Revoke(a) => {
            let authority_id = a.id()?;
            let r = client(&a.common)
                .await?
                .revoke_jwt_authority(RevokeJwtAuthorityRequest { authority_id })
                .await
                .map_err(AdminClientError::rpc)?
                .into_inner();
            emit(a.common.output, &r, "RevokeJWTAuthorityResponse", |r| {
                format_one("Revoked", k, r.revoked_authority.as_ref())
            })
        }
    }
}

#[cfg(test)]
mod tests;
