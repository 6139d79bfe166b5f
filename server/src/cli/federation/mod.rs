//! `spinel-server federation create|list|show|update|delete|refresh`:
//! federation relationships through the server's
//! `spire.api.server.trustdomain.v1.TrustDomain` API, with SPIRE's flags
//! (`-trustDomain`, `-bundleEndpointURL`, `-bundleEndpointProfile
//! https_spiffe|https_web`, `-endpointSpiffeID`, `-trustDomainBundlePath`,
//! `-trustDomainBundleFormat pem|spiffe`; `-id` for delete and refresh) and
//! output (`-output json` prints the response message).

mod args;
mod print;

use spinel_proto::spire::api::server::trustdomain::v1::{
    trust_domain_client::TrustDomainClient, BatchCreateFederationRelationshipRequest,
    BatchDeleteFederationRelationshipRequest, BatchUpdateFederationRelationshipRequest,
    GetFederationRelationshipRequest, ListFederationRelationshipsRequest,
    ListFederationRelationshipsResponse, RefreshBundleRequest,
};
use spinel_proto::spire::api::types::FederationRelationship;
use tonic::transport::Channel;

use super::admin_client::{connect_admin, AdminArgs, AdminClientError, OutputFormat};
use super::output::print_proto_json;

pub use args::{IdArgs, ListArgs, RelationshipArgs, ShowArgs};
pub use print::{format_list, format_relationship, format_show};

/// `federation` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum FederationCommand {
    /// Creates a federation relationship with a foreign trust domain.
    Create(RelationshipArgs),
    /// Lists federation relationships.
    List(ListArgs),
    /// Shows one federation relationship.
    Show(ShowArgs),
    /// Updates a federation relationship.
    Update(RelationshipArgs),
    /// Deletes a federation relationship.
    Delete(IdArgs),
    /// Fetches the bundle of a federated trust domain now.
    Refresh(IdArgs),
}

/// Runs a `federation` subcommand.
pub async fn run(cmd: FederationCommand) -> anyhow::Result<()> {
    match cmd {
        FederationCommand::Create(args) => create(&args).await?,
        FederationCommand::List(args) => list(&args).await?,
        FederationCommand::Show(args) => show(&args).await?,
        FederationCommand::Update(args) => update(&args).await?,
        FederationCommand::Delete(args) => delete(&args).await?,
        FederationCommand::Refresh(args) => refresh(&args).await?,
    }
    Ok(())
}

async fn client(common: &AdminArgs) -> Result<TrustDomainClient<Channel>, AdminClientError> {
    Ok(TrustDomainClient::new(
        connect_admin(&common.socket_path).await?,
    ))
}

/// Prints each successful result (pretty output, after `banner`) and
/// fails naming every refused one.
fn batch_outcome(
    what: &str,
    outcomes: &[(
        Option<&spinel_proto::spire::api::types::Status>,
        Option<&FederationRelationship>,
    )],
    banner: Option<&str>,
) -> Result<(), AdminClientError> {
    if outcomes.is_empty() {
        return batch_failure(what, None);
    }
    let mut failures = Vec::new();
    for (status, relationship) in outcomes {
        match (batch_failure(what, *status), banner) {
            (Err(e), _) => failures.push(e.to_string()),
            (Ok(()), Some(banner)) => {
                println!("{banner}");
                if let Some(r) = relationship {
                    print!("{}", format_relationship(r));
                }
            }
            (Ok(()), None) => {}
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(AdminClientError::BatchFailed(failures.join("; ")))
    }
}

/// The first result's status as an error, if it failed.
fn batch_failure(
    what: &str,
    status: Option<&spinel_proto::spire::api::types::Status>,
) -> Result<(), AdminClientError> {
    match status {
        Some(s) if s.code == 0 => Ok(()),
        Some(s) => Err(AdminClientError::BatchFailed(format!(
            "failed to {what} federation relationship: {}",
            s.message
        ))),
        None => Err(AdminClientError::BatchFailed(format!(
            "failed to {what} federation relationship: the server sent no result"
        ))),
    }
}

async fn create(args: &RelationshipArgs) -> Result<(), AdminClientError> {
    let relationships = args.relationships()?;
    let resp = client(&args.common)
        .await?
        .batch_create_federation_relationship(BatchCreateFederationRelationshipRequest {
            federation_relationships: relationships,
            output_mask: None,
        })
        .await
        .map_err(|s| AdminClientError::rpc_while("failed to create federation relationship", s))?
        .into_inner();
    let outcomes: Vec<_> = resp
        .results
        .iter()
        .map(|r| (r.status.as_ref(), r.federation_relationship.as_ref()))
        .collect();
    if args.common.output == OutputFormat::Json {
        print_proto_json(
            &resp,
            "spire.api.server.trustdomain.v1.BatchCreateFederationRelationshipResponse",
        )?;
        return batch_outcome("create", &outcomes, None);
    }
    batch_outcome(
        "create",
        &outcomes,
        Some("Federation relationship created."),
    )
}

async fn update(args: &RelationshipArgs) -> Result<(), AdminClientError> {
    let relationships = args.relationships()?;
    let resp = client(&args.common)
        .await?
        .batch_update_federation_relationship(BatchUpdateFederationRelationshipRequest {
            federation_relationships: relationships,
            input_mask: None,
            output_mask: None,
        })
        .await
        .map_err(|s| AdminClientError::rpc_while("failed to update federation relationship", s))?
        .into_inner();
    let outcomes: Vec<_> = resp
        .results
        .iter()
        .map(|r| (r.status.as_ref(), r.federation_relationship.as_ref()))
        .collect();
    if args.common.output == OutputFormat::Json {
        print_proto_json(
            &resp,
            "spire.api.server.trustdomain.v1.BatchUpdateFederationRelationshipResponse",
        )?;
        return batch_outcome("update", &outcomes, None);
    }
    batch_outcome(
        "update",
        &outcomes,
        Some("Federation relationship updated."),
    )
}

async fn list(args: &ListArgs) -> Result<(), AdminClientError> {
    let mut client = client(&args.common).await?;
    let mut all = ListFederationRelationshipsResponse::default();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_federation_relationships(ListFederationRelationshipsRequest {
                output_mask: None,
                page_size: 0,
                page_token,
            })
            .await
            .map_err(|s| AdminClientError::rpc_while("error listing federation relationships", s))?
            .into_inner();
        all.federation_relationships
            .extend(page.federation_relationships);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    match args.common.output {
        OutputFormat::Pretty => print!("{}", format_list(&all.federation_relationships)),
        OutputFormat::Json => print_proto_json(
            &all,
            "spire.api.server.trustdomain.v1.ListFederationRelationshipsResponse",
        )?,
    }
    Ok(())
}

async fn show(args: &ShowArgs) -> Result<(), AdminClientError> {
    let Some(td) = &args.trust_domain else {
        return Err(AdminClientError::usage(
            "a trust domain name is required (-trustDomain)",
        ));
    };
    let r = client(&args.common)
        .await?
        .get_federation_relationship(GetFederationRelationshipRequest {
            trust_domain: td.as_str().to_owned(),
            output_mask: None,
        })
        .await
        .map_err(|s| AdminClientError::rpc_while("error showing federation relationship", s))?
        .into_inner();
    match args.common.output {
        OutputFormat::Pretty => print!("{}", format_show(td.as_str(), &r)),
        OutputFormat::Json => print_proto_json(&r, "spire.api.types.FederationRelationship")?,
    }
    Ok(())
}

async fn delete(args: &IdArgs) -> Result<(), AdminClientError> {
    let Some(td) = &args.id else {
        return Err(AdminClientError::usage("id is required (-id)"));
    };
    let resp = client(&args.common)
        .await?
        .batch_delete_federation_relationship(BatchDeleteFederationRelationshipRequest {
            trust_domains: vec![td.as_str().to_owned()],
        })
        .await
        .map_err(|s| AdminClientError::rpc_while("failed to delete federation relationship", s))?
        .into_inner();
    let status = resp.results.first().and_then(|r| r.status.as_ref());
    if args.common.output == OutputFormat::Json {
        print_proto_json(
            &resp,
            "spire.api.server.trustdomain.v1.BatchDeleteFederationRelationshipResponse",
        )?;
        return batch_failure("delete", status);
    }
    batch_failure("delete", status)?;
    println!("federation relationship deleted.");
    Ok(())
}

async fn refresh(args: &IdArgs) -> Result<(), AdminClientError> {
    let Some(td) = &args.id else {
        return Err(AdminClientError::usage("id is required (-id)"));
    };
    client(&args.common)
        .await?
        .refresh_bundle(RefreshBundleRequest {
            trust_domain: td.as_str().to_owned(),
        })
        .await
        .map_err(|s| AdminClientError::rpc_while("failed to refresh bundle", s))?;
    match args.common.output {
        OutputFormat::Pretty => println!("Bundle refreshed"),
        OutputFormat::Json => println!("{{}}"),
    }
    Ok(())
}
