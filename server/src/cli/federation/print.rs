//! SPIRE's pretty layout of federation relationships.

use spinel_proto::spire::api::types::{
    federation_relationship::BundleEndpointProfile, FederationRelationship,
};

use crate::cli::output::pluralize;

/// One relationship, as `federation show` prints it (aligned labels).
pub fn format_relationship(r: &FederationRelationship) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        out.push_str(&format!("{label:<26}: {value}\n"));
    };
    line("Trust domain", &r.trust_domain);
    line("Bundle endpoint URL", &r.bundle_endpoint_url);
    match &r.bundle_endpoint_profile {
        Some(BundleEndpointProfile::HttpsWeb(_)) => line("Bundle endpoint profile", "https_web"),
        Some(BundleEndpointProfile::HttpsSpiffe(p)) => {
            line("Bundle endpoint profile", "https_spiffe");
            line("Endpoint SPIFFE ID", &p.endpoint_spiffe_id);
        }
        None => {}
    }
    out
}

/// `Found N federation relationship(s)` and each one after a blank line.
pub fn format_list(relationships: &[FederationRelationship]) -> String {
    let n = relationships.len();
    let mut out = format!(
        "{}\n",
        pluralize(
            &format!("Found {n} "),
            "federation relationship",
            "federation relationships",
            n
        )
    );
    for r in relationships {
        out.push('\n');
        out.push_str(&format_relationship(r));
    }
    out
}

/// `federation show`: SPIRE's header naming the trust domain asked for,
/// then the relationship.
pub fn format_show(trust_domain: &str, relationship: &FederationRelationship) -> String {
    let mut out = format!("Found a federation relationship with trust domain {trust_domain}:\n\n");
    out.push_str(&format_relationship(relationship));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use spinel_proto::spire::api::types::HttpsspiffeProfile;

    #[test]
    fn pretty_layout() {
        let r = FederationRelationship {
            trust_domain: "other.org".into(),
            bundle_endpoint_url: "https://127.0.0.1:8443".into(),
            bundle_endpoint_profile: Some(BundleEndpointProfile::HttpsSpiffe(HttpsspiffeProfile {
                endpoint_spiffe_id: "spiffe://other.org/spire/server".into(),
            })),
            trust_domain_bundle: None,
        };
        let text = format_list(&[r]);
        assert_eq!(
            text,
            "Found 1 federation relationship\n\n\
             Trust domain              : other.org\n\
             Bundle endpoint URL       : https://127.0.0.1:8443\n\
             Bundle endpoint profile   : https_spiffe\n\
             Endpoint SPIFFE ID        : spiffe://other.org/spire/server\n"
        );
        assert!(format_show("other.org", &r_again()).starts_with(
            "Found a federation relationship with trust domain other.org:\n\n\
             Trust domain              : other.org\n"
        ));
    }

    fn r_again() -> FederationRelationship {
        FederationRelationship {
            trust_domain: "other.org".into(),
            ..Default::default()
        }
    }
}
