//! Which CAs an SVID depends on: tainted authorities (re-sign at once,
//! drop their JWT-SVIDs) and authorities that left the bundle.

use spinel_proto::spire::api::types;

use crate::manager::state::Manager;

/// DER of the X.509 authorities the server flagged as tainted.
pub(crate) fn tainted_authorities(b: &types::Bundle) -> Vec<Vec<u8>> {
    b.x509_authorities
        .iter()
        .filter(|a| a.tainted)
        .map(|a| a.asn1.clone())
        .collect()
}

/// Whether any certificate of `chain` is a tainted authority or was signed
/// by one: such an SVID must be replaced at once, not at half-life.
pub(crate) fn signed_by_tainted(chain: &[Vec<u8>], tainted: &[Vec<u8>]) -> bool {
    !tainted.is_empty() && issued_by_any(chain, tainted)
}

/// Whether any certificate of `chain` is one of `authorities` or was
/// signed by one. An SVID for which this fails against the current bundle
/// (its CA left the bundle, as after a server reinstall or a long outage)
/// chains to nothing a peer trusts and is replaced at once.
pub(crate) fn issued_by_any(chain: &[Vec<u8>], authorities: &[Vec<u8>]) -> bool {
    let parsed: Vec<_> = authorities
        .iter()
        .filter_map(|der| {
            x509_parser::parse_x509_certificate(der)
                .ok()
                .map(|(_, c)| c)
        })
        .collect();
    chain.iter().any(|der| {
        authorities.contains(der)
            || x509_parser::parse_x509_certificate(der).is_ok_and(|(_, cert)| {
                parsed
                    .iter()
                    .any(|ca| cert.verify_signature(Some(ca.public_key())).is_ok())
            })
    })
}

/// Drops cached JWT-SVIDs signed with a JWT key the server flagged as
/// tainted, so the next fetch gets one signed with the active key.
pub(crate) fn drop_tainted_jwts(m: &Manager, b: &types::Bundle) {
    use base64::Engine;
    let tainted: Vec<&str> = b
        .jwt_authorities
        .iter()
        .filter(|k| k.tainted)
        .map(|k| k.key_id.as_str())
        .collect();
    if tainted.is_empty() {
        return;
    }
    let kid_of = |token: &str| -> Option<String> {
        let header = token.split('.').next()?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        value.get("kid")?.as_str().map(str::to_owned)
    };
    if let Ok(mut cache) = m.jwt_cache.lock() {
        cache.retain(|_, (token, _, _)| {
            kid_of(token).is_none_or(|kid| !tainted.contains(&kid.as_str()))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    fn ca() -> (Vec<u8>, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        (der, Issuer::new(params, key))
    }

    fn leaf(issuer: &Issuer<'_, KeyPair>) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        CertificateParams::default()
            .signed_by(&key, issuer)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn an_svid_whose_ca_left_the_bundle_is_not_issued_by_it() {
        let (old_root, old) = ca();
        let (new_root, new) = ca();
        let old_svid = vec![leaf(&old)];
        let new_svid = vec![leaf(&new)];
        let bundle = vec![new_root.clone()];
        assert!(issued_by_any(&new_svid, &bundle));
        assert!(!issued_by_any(&old_svid, &bundle));
        // During a rotation both CAs are in the bundle: nothing to re-sign.
        assert!(issued_by_any(&old_svid, &[old_root.clone(), new_root]));
        // A chain carrying its intermediate counts by it.
        assert!(issued_by_any(
            &[vec![1, 2, 3], old_root.clone()],
            &[old_root]
        ));
        assert!(!signed_by_tainted(&old_svid, &[]));
    }
}
