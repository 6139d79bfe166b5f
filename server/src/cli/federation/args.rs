//! The flags of `spinel-server federation`, checked as clap reads them,
//! and the relationships they (or a `-data` file) describe.

use std::path::PathBuf;

use spinel_proto::spire::api::server::trustdomain::v1::ListFederationRelationshipsResponse;
use spinel_proto::spire::api::types::{
    federation_relationship::BundleEndpointProfile, FederationRelationship, HttpsWebProfile,
    HttpsspiffeProfile,
};
use spinel_spiffe::id::{SpiffeId, TrustDomain};

use crate::cli::admin_client::{parse_spiffe_id, parse_td, AdminArgs, AdminClientError};
use crate::cli::bundle::{parse_bundle, BundleFormat};

/// `-bundleEndpointProfile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileFlag {
    /// `https_web`.
    HttpsWeb,
    /// `https_spiffe`.
    HttpsSpiffe,
}

fn parse_profile(value: &str) -> Result<ProfileFlag, String> {
    match value {
        "https_web" => Ok(ProfileFlag::HttpsWeb),
        "https_spiffe" => Ok(ProfileFlag::HttpsSpiffe),
        _ => Err(format!(
            "unknown bundle endpoint profile type: {value:?} (https_web or https_spiffe)"
        )),
    }
}

fn parse_bundle_format(value: &str) -> Result<BundleFormat, String> {
    match value.to_ascii_lowercase().as_str() {
        "" | "pem" => Ok(BundleFormat::Pem),
        "spiffe" => Ok(BundleFormat::Spiffe),
        _ => Err(format!("invalid format: {value:?} (pem or spiffe)")),
    }
}

/// `federation create` / `update` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct RelationshipArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Name of the trust domain to federate with (e.g. example.org).
    #[arg(long = "trustDomain", value_name = "TRUST_DOMAIN", value_parser = parse_td)]
    pub trust_domain: Option<TrustDomain>,
    /// URL of the SPIFFE bundle endpoint that provides the trust bundle (must use the HTTPS protocol).
    #[arg(long = "bundleEndpointURL", value_name = "URL")]
    pub bundle_endpoint_url: Option<String>,
    /// Endpoint profile type (either "https_web" or "https_spiffe").
    #[arg(long = "bundleEndpointProfile", value_name = "PROFILE", default_value = "https_spiffe", value_parser = parse_profile)]
    pub profile: ProfileFlag,
    /// SPIFFE ID of the SPIFFE bundle endpoint server (https_spiffe only).
    #[arg(long = "endpointSpiffeID", value_name = "ID", value_parser = parse_spiffe_id)]
    pub endpoint_spiffe_id: Option<SpiffeId>,
    /// Path to the trust domain bundle data (optional).
    #[arg(long = "trustDomainBundlePath", value_name = "FILE")]
    pub bundle_path: Option<PathBuf>,
    /// The format of the bundle data (optional): pem or spiffe.
    #[arg(long = "trustDomainBundleFormat", value_name = "FORMAT", default_value = "pem", value_parser = parse_bundle_format)]
    pub bundle_format: BundleFormat,
    /// Path to a file of relationships in JSON (`{"federation_relationships": [...]}`,
    /// as `-output json` prints them); `-` reads stdin. Replaces the other flags.
    #[arg(long = "data", value_name = "FILE")]
    pub data: Option<PathBuf>,
}

/// `federation list` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: AdminArgs,
}

/// `federation show` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The trust domain name of the federation relationship to show.
    #[arg(long = "trustDomain", value_name = "TRUST_DOMAIN", value_parser = parse_td)]
    pub trust_domain: Option<TrustDomain>,
}

/// `federation delete` / `refresh` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct IdArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The trust domain name of the federation relationship.
    #[arg(long = "id", value_name = "TRUST_DOMAIN", value_parser = parse_td)]
    pub id: Option<TrustDomain>,
}

/// Relationships from SPIRE's `-data` JSON (protobuf JSON of a message with
/// a `federation_relationships` list).
pub fn parse_data(data: &[u8]) -> Result<Vec<FederationRelationship>, AdminClientError> {
    use prost_reflect::{DescriptorPool, DynamicMessage};
    let bad = |reason: String| AdminClientError::Input {
        source_name: "-data".to_owned(),
        reason,
    };
    let pool = DescriptorPool::decode(spinel_proto::FILE_DESCRIPTOR_SET)
        .map_err(|e| bad(format!("protobuf descriptors: {e}")))?;
    let desc = pool
        .get_message_by_name("spire.api.server.trustdomain.v1.ListFederationRelationshipsResponse")
        .ok_or_else(|| bad("protobuf descriptor missing".into()))?;
    let mut de = serde_json::Deserializer::from_slice(data);
    let dynamic = DynamicMessage::deserialize(desc, &mut de)
        .map_err(|e| bad(format!("cannot parse the relationships JSON: {e}")))?;
    let list: ListFederationRelationshipsResponse = dynamic
        .transcode_to()
        .map_err(|e| bad(format!("cannot parse the relationships JSON: {e}")))?;
    if list.federation_relationships.is_empty() {
        return Err(bad("no federation_relationships in the file".into()));
    }
    Ok(list.federation_relationships)
}

impl RelationshipArgs {
    /// The relationships to send: from `-data`, or the one of the flags.
    pub fn relationships(&self) -> Result<Vec<FederationRelationship>, AdminClientError> {
        let Some(path) = &self.data else {
            return Ok(vec![self.relationship()?]);
        };
        let mut data = Vec::new();
        let read = if path.as_os_str() == "-" {
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut data)
        } else {
            std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut data))
        };
        read.map_err(|e| AdminClientError::Input {
            source_name: format!("-data {}", path.display()),
            reason: e.to_string(),
        })?;
        parse_data(&data)
    }

    /// The relationship the flags describe (checked before any connection).
    pub fn relationship(&self) -> Result<FederationRelationship, AdminClientError> {
        let Some(td) = &self.trust_domain else {
            return Err(AdminClientError::usage(
                "trust domain is required (-trustDomain)",
            ));
        };
        let Some(url) = &self.bundle_endpoint_url else {
            return Err(AdminClientError::usage(
                "bundle endpoint URL is required (-bundleEndpointURL)",
            ));
        };
        crate::config::check_https_url(url).map_err(|e| {
            AdminClientError::usage(format!("cannot parse bundle endpoint URL: {e}"))
        })?;
        let profile = match self.profile {
            ProfileFlag::HttpsWeb => BundleEndpointProfile::HttpsWeb(HttpsWebProfile {}),
            ProfileFlag::HttpsSpiffe => {
                let Some(id) = &self.endpoint_spiffe_id else {
                    return Err(AdminClientError::usage(
                        "endpoint SPIFFE ID is required if 'https_spiffe' endpoint profile is set (-endpointSpiffeID)",
                    ));
                };
                BundleEndpointProfile::HttpsSpiffe(HttpsspiffeProfile {
                    endpoint_spiffe_id: id.to_string(),
                })
            }
        };
        let bundle = match &self.bundle_path {
            Some(path) => {
                let data = std::fs::read(path).map_err(|e| AdminClientError::Input {
                    source_name: format!("-trustDomainBundlePath {}", path.display()),
                    reason: format!("cannot read bundle file: {e}"),
                })?;
                Some(parse_bundle(&data, self.bundle_format, td)?)
            }
            None => None,
        };
        Ok(FederationRelationship {
            trust_domain: td.as_str().to_owned(),
            bundle_endpoint_url: url.clone(),
            bundle_endpoint_profile: Some(profile),
            trust_domain_bundle: bundle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_is_protobuf_json() {
        let data = br#"{"federation_relationships": [{
            "trust_domain": "server.org",
            "bundle_endpoint_url": "https://host:8440",
            "https_spiffe": {"endpoint_spiffe_id": "spiffe://server.org/spire/server"}
        }, {
            "trust_domain": "web.org",
            "bundle_endpoint_url": "https://web.org",
            "https_web": {}
        }]}"#;
        let rels = parse_data(data).unwrap();
        assert_eq!(rels.len(), 2);
        assert_eq!(rels[0].trust_domain, "server.org");
        assert!(matches!(
            &rels[0].bundle_endpoint_profile,
            Some(BundleEndpointProfile::HttpsSpiffe(p)) if p.endpoint_spiffe_id == "spiffe://server.org/spire/server"
        ));
        assert!(matches!(
            rels[1].bundle_endpoint_profile,
            Some(BundleEndpointProfile::HttpsWeb(_))
        ));
        assert!(parse_data(b"{}").is_err());
        assert!(parse_data(b"not json").is_err());
    }
}
