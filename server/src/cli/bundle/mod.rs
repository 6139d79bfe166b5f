//! `spinel-server bundle show|list|set|delete|count`: the server's own
//! trust bundle and federated bundles through the server's
//! `spire.api.server.bundle.v1.Bundle` API, in SPIRE's formats: PEM (the
//! X.509 authorities) or SPIFFE bundle JSON (indented by four spaces).

use std::io::Read;
use std::path::PathBuf;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use spinel_proto::spire::api::server::bundle::v1::{
    batch_delete_federated_bundle_request::Mode, bundle_client::BundleClient,
    BatchDeleteFederatedBundleRequest, BatchDeleteFederatedBundleResponse,
    BatchSetFederatedBundleRequest, BatchSetFederatedBundleResponse, CountBundlesRequest,
    GetBundleRequest, GetFederatedBundleRequest, ListFederatedBundlesRequest,
    ListFederatedBundlesResponse,
};
use spinel_proto::spire::api::types::{Bundle, JwtKey, X509Certificate};
use spinel_spiffe::bundle::{pem_encode, TrustBundle};
use spinel_spiffe::id::TrustDomain;
use tonic::transport::Channel;

use super::admin_client::{connect_admin, parse_td, AdminArgs, AdminClientError, OutputFormat};
use super::output::{pluralize, print_proto_json};

/// `bundle` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Prints the server's own trust bundle.
    Show(ShowArgs),
    /// Lists federated bundles.
    List(ListArgs),
    /// Creates or updates a federated bundle.
    Set(SetArgs),
    /// Deletes a federated bundle.
    Delete(DeleteArgs),
    /// Counts bundles.
    Count(CountArgs),
}

/// `-format`: how a bundle is read or printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFormat {
    /// PEM X.509 CA certificates.
    Pem,
    /// SPIFFE bundle JSON (JWKS with X.509 and JWT authorities).
    Spiffe,
}

fn parse_format(value: &str) -> Result<BundleFormat, String> {
    match value.to_ascii_lowercase().as_str() {
        "" | "pem" => Ok(BundleFormat::Pem),
        "spiffe" => Ok(BundleFormat::Spiffe),
        _ => Err(format!("invalid format: {value:?} (pem or spiffe)")),
    }
}

fn parse_mode(value: &str) -> Result<Mode, String> {
    match value {
        "" | "restrict" => Ok(Mode::Restrict),
        "dissociate" => Ok(Mode::Dissociate),
        "delete" => Ok(Mode::Delete),
        _ => Err(format!(
            "unsupported mode {value:?} (restrict, dissociate or delete)"
        )),
    }
}

/// `bundle show` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The format to show the bundle in (pretty output only): pem or spiffe.
    #[arg(long = "format", value_name = "FORMAT", default_value = "pem", value_parser = parse_format)]
    pub format: BundleFormat,
}

/// `bundle list` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Only the bundle of this trust domain.
    #[arg(long = "id", value_name = "TRUST_DOMAIN", value_parser = parse_td)]
    pub id: Option<TrustDomain>,
    /// The format to list bundles in (pretty output only): pem or spiffe.
    #[arg(long = "format", value_name = "FORMAT", default_value = "pem", value_parser = parse_format)]
    pub format: BundleFormat,
}

/// `bundle set` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct SetArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The trust domain of the bundle (`spiffe://other.org` or `other.org`).
    #[arg(long = "id", value_name = "TRUST_DOMAIN", value_parser = parse_td)]
    pub id: Option<TrustDomain>,
    /// Path to the bundle data; stdin when absent or `-`.
    #[arg(long = "path", value_name = "FILE")]
    pub path: Option<PathBuf>,
    /// The format of the bundle data: pem or spiffe.
    #[arg(long = "format", value_name = "FORMAT", default_value = "pem", value_parser = parse_format)]
    pub format: BundleFormat,
}

/// `bundle delete` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The trust domain of the bundle.
    #[arg(long = "id", value_name = "TRUST_DOMAIN", value_parser = parse_td)]
    pub id: Option<TrustDomain>,
    /// What happens to entries federated with it: restrict (refuse if any), dissociate or delete.
    #[arg(long = "mode", value_name = "MODE", default_value = "restrict", value_parser = parse_mode)]
    pub mode: Mode,
}

/// `bundle count` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CountArgs {
    #[command(flatten)]
    pub common: AdminArgs,
}

/// Runs a `bundle` subcommand.
pub async fn run(cmd: BundleCommand) -> anyhow::Result<()> {
    match cmd {
        BundleCommand::Show(args) => show(&args).await?,
        BundleCommand::List(args) => list(&args).await?,
        BundleCommand::Set(args) => set(&args).await?,
        BundleCommand::Delete(args) => delete(&args).await?,
        BundleCommand::Count(args) => count(&args).await?,
    }
    Ok(())
}

async fn client(common: &AdminArgs) -> Result<BundleClient<Channel>, AdminClientError> {
    Ok(BundleClient::new(connect_admin(&common.socket_path).await?))
}

const HEADER_RULE: &str = "****************************************";

/// A bundle in `format`, as `bundle show` prints it; `header` adds the
/// trust-domain banner of `bundle list`.
pub fn format_bundle(
    bundle: &Bundle,
    format: BundleFormat,
    header: bool,
) -> Result<String, AdminClientError> {
    let mut out = String::new();
    if header {
        out.push_str(&format!(
            "{HEADER_RULE}\n* {}\n{HEADER_RULE}\n",
            bundle.trust_domain
        ));
    }
    match format {
        BundleFormat::Pem => {
            for cert in &bundle.x509_authorities {
                out.push_str(&pem_encode("CERTIFICATE", &cert.asn1));
            }
        }
        BundleFormat::Spiffe => {
            let json = bundle_from_proto(bundle)?
                .to_json()
                .map_err(|e| AdminClientError::Output(e.to_string()))?;
            out.push_str(&indent4(&json)?);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Re-indents JSON by four spaces, as SPIRE prints bundles.
fn indent4(json: &str) -> Result<String, AdminClientError> {
    use serde::Serialize;
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| AdminClientError::Output(e.to_string()))?;
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value
        .serialize(&mut ser)
        .map_err(|e| AdminClientError::Output(e.to_string()))?;
    String::from_utf8(buf).map_err(|e| AdminClientError::Output(e.to_string()))
}

fn bundle_from_proto(bundle: &Bundle) -> Result<TrustBundle, AdminClientError> {
    let td = parse_td(&bundle.trust_domain).map_err(|e| {
        AdminClientError::Output(format!(
            "the server sent a bundle with a bad trust domain: {e}"
        ))
    })?;
    Ok(spinel_proto::bundle::to_trust_bundle(&td, bundle))
}

/// Parses bundle data read for `bundle set`.
pub fn parse_bundle(
    data: &[u8],
    format: BundleFormat,
    td: &TrustDomain,
) -> Result<Bundle, AdminClientError> {
    let bad = |reason: String| AdminClientError::Input {
        source_name: "-path".to_owned(),
        reason,
    };
    match format {
        BundleFormat::Pem => {
            let mut x509_authorities = Vec::new();
            for cert in CertificateDer::pem_slice_iter(data) {
                let cert = cert.map_err(|e| bad(format!("unable to parse bundle data: {e}")))?;
                x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
                    bad(format!(
                        "unable to parse bundle data: certificate {}: {e}",
                        x509_authorities.len() + 1
                    ))
                })?;
                x509_authorities.push(X509Certificate {
                    asn1: cert.as_ref().to_vec(),
                    tainted: false,
                });
            }
            if x509_authorities.is_empty() {
                return Err(bad(
                    "unable to parse bundle data: no PEM certificates found".to_owned(),
                ));
            }
            Ok(Bundle {
                trust_domain: td.to_string(),
                x509_authorities,
                ..Default::default()
            })
        }
        BundleFormat::Spiffe => {
            let parsed = TrustBundle::from_json(td.clone(), data)
                .map_err(|e| bad(format!("unable to parse to spiffe bundle: {e}")))?;
            Ok(Bundle {
                trust_domain: td.to_string(),
                x509_authorities: parsed
                    .x509_authorities
                    .into_iter()
                    .map(|asn1| X509Certificate {
                        asn1,
                        tainted: false,
                    })
                    .collect(),
                jwt_authorities: parsed
                    .jwt_authorities
                    .into_iter()
                    .map(|a| JwtKey {
                        public_key: a.public_key,
                        key_id: a.key_id,
                        expires_at: a.expires_at,
                        tainted: false,
                    })
                    .collect(),
                refresh_hint: parsed.refresh_hint,
                sequence_number: parsed.sequence,
                wit_authorities: Vec::new(),
            })
        }
    }
}

async fn show(args: &ShowArgs) -> Result<(), AdminClientError> {
    let bundle = client(&args.common)
        .await?
        .get_bundle(GetBundleRequest { output_mask: None })
        .await
        .map_err(AdminClientError::rpc)?
        .into_inner();
    match args.common.output {
        OutputFormat::Pretty => print!("{}", format_bundle(&bundle, args.format, false)?),
        OutputFormat::Json => print_proto_json(&bundle, "spire.api.types.Bundle")?,
    }
    Ok(())
}

/// `bundle list`'s pretty output: each bundle under its banner, separated
/// by a blank line.
pub fn format_list(
    resp: &ListFederatedBundlesResponse,
    format: BundleFormat,
) -> Result<String, AdminClientError> {
    let mut out = String::new();
    for (i, bundle) in resp.bundles.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format_bundle(bundle, format, true)?);
    }
    Ok(out)
}

async fn list(args: &ListArgs) -> Result<(), AdminClientError> {
    let mut client = client(&args.common).await?;
    if let Some(td) = &args.id {
        let bundle = client
            .get_federated_bundle(GetFederatedBundleRequest {
                trust_domain: td.to_string(),
                output_mask: None,
            })
            .await
            .map_err(AdminClientError::rpc)?
            .into_inner();
        match args.common.output {
            OutputFormat::Pretty => print!("{}", format_bundle(&bundle, args.format, false)?),
            OutputFormat::Json => print_proto_json(&bundle, "spire.api.types.Bundle")?,
        }
        return Ok(());
    }
    let mut resp = ListFederatedBundlesResponse::default();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_federated_bundles(ListFederatedBundlesRequest {
                output_mask: None,
                page_size: 0,
                page_token,
            })
            .await
            .map_err(AdminClientError::rpc)?
            .into_inner();
        resp.bundles.extend(page.bundles);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    match args.common.output {
        OutputFormat::Pretty => print!("{}", format_list(&resp, args.format)?),
        OutputFormat::Json => print_proto_json(
            &resp,
            "spire.api.server.bundle.v1.ListFederatedBundlesResponse",
        )?,
    }
    Ok(())
}

/// The one result of a `bundle set`: `Ok(())` or the server's refusal.
pub fn set_outcome(resp: &BatchSetFederatedBundleResponse) -> Result<(), AdminClientError> {
    let status = resp.results.first().and_then(|r| r.status.as_ref());
    match status {
        Some(s) if s.code == 0 => Ok(()),
        Some(s) => Err(AdminClientError::BatchFailed(format!(
            "failed to set federated bundle: {}",
            s.message
        ))),
        None => Err(AdminClientError::BatchFailed(
            "failed to set federated bundle: the server sent no result".to_owned(),
        )),
    }
}

async fn set(args: &SetArgs) -> Result<(), AdminClientError> {
    let Some(td) = &args.id else {
        return Err(AdminClientError::usage("id flag is required (-id)"));
    };
    let mut data = Vec::new();
    let read = match args.path.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(path) => std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut data)),
        None => std::io::stdin().lock().read_to_end(&mut data),
    };
    read.map_err(|e| AdminClientError::Input {
        source_name: match &args.path {
            Some(p) => format!("-path {}", p.display()),
            None => "stdin".to_owned(),
        },
        reason: format!("unable to load bundle data: {e}"),
    })?;
    let bundle = parse_bundle(&data, args.format, td)?;
    let resp = client(&args.common)
        .await?
        .batch_set_federated_bundle(BatchSetFederatedBundleRequest {
            bundle: vec![bundle],
            output_mask: None,
        })
        .await
        .map_err(|s| AdminClientError::rpc_while("failed to set federated bundle", s))?
        .into_inner();
    match args.common.output {
        OutputFormat::Pretty => {
            set_outcome(&resp)?;
            println!("bundle set.");
            Ok(())
        }
        OutputFormat::Json => {
            print_proto_json(
                &resp,
                "spire.api.server.bundle.v1.BatchSetFederatedBundleResponse",
            )?;
            set_outcome(&resp)
        }
    }
}

/// The one result of a `bundle delete`: `Ok(())` or the server's refusal.
pub fn delete_outcome(resp: &BatchDeleteFederatedBundleResponse) -> Result<(), AdminClientError> {
    match resp.results.first() {
        Some(r) if r.status.as_ref().is_none_or(|s| s.code == 0) => Ok(()),
        Some(r) => Err(AdminClientError::BatchFailed(format!(
            "failed to delete federated bundle {:?}: {}",
            r.trust_domain,
            r.status
                .as_ref()
                .map(|s| s.message.as_str())
                .unwrap_or_default()
        ))),
        None => Err(AdminClientError::BatchFailed(
            "failed to delete federated bundle: the server sent no result".to_owned(),
        )),
    }
}

async fn delete(args: &DeleteArgs) -> Result<(), AdminClientError> {
    let Some(td) = &args.id else {
        return Err(AdminClientError::usage("id is required (-id)"));
    };
    let resp = client(&args.common)
        .await?
        .batch_delete_federated_bundle(BatchDeleteFederatedBundleRequest {
            trust_domains: vec![td.to_string()],
            mode: args.mode as i32,
        })
        .await
        .map_err(|s| AdminClientError::rpc_while("failed to delete federated bundle", s))?
        .into_inner();
    match args.common.output {
        OutputFormat::Pretty => {
            delete_outcome(&resp)?;
            println!("bundle deleted.");
            Ok(())
        }
        OutputFormat::Json => {
            print_proto_json(
                &resp,
                "spire.api.server.bundle.v1.BatchDeleteFederatedBundleResponse",
            )?;
            delete_outcome(&resp)
        }
    }
}

async fn count(args: &CountArgs) -> Result<(), AdminClientError> {
    let resp = client(&args.common)
        .await?
        .count_bundles(CountBundlesRequest {})
        .await
        .map_err(AdminClientError::rpc)?
        .into_inner();
    match args.common.output {
        OutputFormat::Pretty => {
            let n = usize::try_from(resp.count).unwrap_or(0);
            println!(
                "{}",
                pluralize(&format!("{} ", resp.count), "bundle", "bundles", n)
            );
        }
        OutputFormat::Json => {
            print_proto_json(&resp, "spire.api.server.bundle.v1.CountBundlesResponse")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
