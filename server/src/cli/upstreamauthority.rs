//! `spinel-server upstreamauthority taint|revoke -subjectKeyID <SKID>`:
//! SPIRE's commands for an upstream authority's X.509 CA, through
//! `spire.api.server.localauthority.v1.LocalAuthority`. The commands and
//! flags are SPIRE's; the server answers `Unimplemented` for now (see
//! docs/compatibility.md), and the CLI reports it as SPIRE's would.

use spinel_proto::spire::api::server::localauthority::v1::local_authority_client::LocalAuthorityClient;
use spinel_proto::spire::api::server::localauthority::v1::{
    RevokeX509UpstreamAuthorityRequest, TaintX509UpstreamAuthorityRequest,
};

use super::admin_client::{connect_admin, AdminArgs, AdminClientError, OutputFormat};
use super::output::print_proto_json;

/// `upstreamauthority` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum UpstreamAuthorityCommand {
    /// Taints an X.509 upstream authority: what it signed is replaced.
    Taint(SkidArgs),
    /// Revokes a tainted X.509 upstream authority: it leaves the bundle.
    Revoke(SkidArgs),
}

/// `-subjectKeyID`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct SkidArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The X.509 Subject Key Identifier (or SKID) of the upstream authority's CA certificate.
    #[arg(long = "subjectKeyID", value_name = "SKID")]
    pub subject_key_id: Option<String>,
}

impl SkidArgs {
    fn skid(&self) -> Result<String, AdminClientError> {
        match self.subject_key_id.as_deref() {
            Some(s) if !s.is_empty() => Ok(s.to_owned()),
            _ => Err(AdminClientError::usage(
                "the Subject Key ID of the X.509 upstream authority is required",
            )),
        }
    }
}

const PKG: &str = "spire.api.server.localauthority.v1";

/// Runs an `upstreamauthority` subcommand.
pub async fn run(cmd: UpstreamAuthorityCommand) -> anyhow::Result<()> {
    match cmd {
        UpstreamAuthorityCommand::Taint(args) => {
            let skid = args.skid()?;
            let r = LocalAuthorityClient::new(connect_admin(&args.common.socket_path).await?)
                .taint_x509_upstream_authority(TaintX509UpstreamAuthorityRequest {
                    subject_key_id: skid,
                })
                .await
                .map_err(|s| {
                    AdminClientError::rpc_while("could not taint X.509 upstream authority", s)
                })?
                .into_inner();
            match args.common.output {
                OutputFormat::Pretty => println!(
                    "Tainted X.509 upstream authority:\n  Subject Key ID: {}",
                    r.upstream_authority_subject_key_id
                ),
                OutputFormat::Json => {
                    print_proto_json(&r, &format!("{PKG}.TaintX509UpstreamAuthorityResponse"))?
                }
            }
        }
        UpstreamAuthorityCommand::Revoke(args) => {
            let skid = args.skid()?;
            let r = LocalAuthorityClient::new(connect_admin(&args.common.socket_path).await?)
                .revoke_x509_upstream_authority(RevokeX509UpstreamAuthorityRequest {
                    subject_key_id: skid,
                })
                .await
                .map_err(|s| {
                    AdminClientError::rpc_while("could not revoke X.509 upstream authority", s)
                })?
                .into_inner();
            match args.common.output {
                OutputFormat::Pretty => println!(
                    "Revoked X.509 upstream authority:\n  Subject Key ID: {}",
                    r.upstream_authority_subject_key_id
                ),
                OutputFormat::Json => {
                    print_proto_json(&r, &format!("{PKG}.RevokeX509UpstreamAuthorityResponse"))?
                }
            }
        }
    }
    Ok(())
}
