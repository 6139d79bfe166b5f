//! A `spire.api.types.Bundle` as a [`TrustBundle`]: the one conversion used
//! by the agent (every sync round's `GetBundle` and `GetFederatedBundle`)
//! and by the server's `bundle` CLI (`bundle show`, `bundle list`).
//!
//! The trust domain is the caller's to decide: the agent uses the one it
//! asked for, the CLI parses the message's own and reports a bad one.
//! Tainted flags are not part of a [`TrustBundle`] and are dropped.

use spinel_spiffe::bundle::JwtAuthority;
use spinel_spiffe::{TrustBundle, TrustDomain};

use crate::spire::api::types;

/// The authorities, sequence number and refresh hint of `b`, as the bundle
/// of `td`.
pub fn to_trust_bundle(td: &TrustDomain, b: &types::Bundle) -> TrustBundle {
    let mut bundle = TrustBundle::new(td.clone());
    bundle.x509_authorities = b.x509_authorities.iter().map(|a| a.asn1.clone()).collect();
    bundle.jwt_authorities = b
        .jwt_authorities
        .iter()
        .map(|k| JwtAuthority {
            key_id: k.key_id.clone(),
            public_key: k.public_key.clone(),
            expires_at: k.expires_at,
        })
        .collect();
    bundle.sequence = b.sequence_number;
    bundle.refresh_hint = b.refresh_hint;
    bundle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_carried_over() {
        let td = spinel_spiffe::id::parse_trust_domain("example.org").unwrap();
        let b = types::Bundle {
            trust_domain: "example.org".into(),
            x509_authorities: vec![types::X509Certificate {
                asn1: vec![1, 2, 3],
                tainted: true,
            }],
            jwt_authorities: vec![types::JwtKey {
                public_key: vec![4, 5],
                key_id: "k1".into(),
                expires_at: 99,
                tainted: false,
            }],
            refresh_hint: 300,
            sequence_number: 7,
            ..Default::default()
        };
        let t = to_trust_bundle(&td, &b);
        assert_eq!(t.trust_domain, td);
        assert_eq!(t.x509_authorities, vec![vec![1, 2, 3]]);
        assert_eq!(t.jwt_authorities.len(), 1);
        assert_eq!(t.jwt_authorities[0].key_id, "k1");
        assert_eq!(t.jwt_authorities[0].public_key, vec![4, 5]);
        assert_eq!(t.jwt_authorities[0].expires_at, 99);
        assert_eq!((t.sequence, t.refresh_hint), (7, 300));
    }
}
