//! The trust domain's stored bundle, shared by every server on one
//! datastore.
//!
//! Each server keeps its own CA and JWT keys (keys never enter the
//! datastore), so the bundle agents and workloads trust is the union of
//! every server's authorities, plus what an operator appended (`bundle
//! append`). No server owns the stored bundle: each merges its own part
//! into it ([`merge`], through [`DataStore::update_bundle`], a
//! compare-and-swap), taking out only what it published before and no
//! longer has, and what has expired. The result is what the server trusts
//! and serves ([`to_trust_bundle`]), so an agent SVID signed by another
//! server is accepted here.
//!
//! [`DataStore::update_bundle`]: crate::datastore::DataStore::update_bundle

use std::time::SystemTime;

use spinel_spiffe::bundle::JwtAuthority;
use spinel_spiffe::clock::to_unix_seconds;
use spinel_spiffe::{TrustBundle, TrustDomain};

use super::authority::Published;
use crate::datastore::{StoredBundle, StoredJwtKey};

/// The stored bundle after this server's change: `current` without what
/// this server `withdrew` and without expired authorities, plus every
/// authority of `own` it lacks. `None` when that changes nothing; a change
/// bumps the sequence number.
pub(super) fn merge(
    current: Option<StoredBundle>,
    own: &TrustBundle,
    withdrawn: &Published,
    now: SystemTime,
) -> Option<StoredBundle> {
    let now = to_unix_seconds(now);
    let existed = current.is_some();
    let before = current.unwrap_or_else(|| StoredBundle {
        trust_domain: own.trust_domain.as_str().to_owned(),
        x509_authorities: Vec::new(),
        jwt_authorities: Vec::new(),
        refresh_hint: own.refresh_hint,
        sequence_number: 0,
    });
    let mut x509: Vec<Vec<u8>> = before
        .x509_authorities
        .iter()
        .filter(|der| !withdrawn.x509.contains(der) && !expired_x509(der, now))
        .cloned()
        .collect();
    for der in &own.x509_authorities {
        if !x509.contains(der) {
            x509.push(der.clone());
        }
    }
    let mut jwt: Vec<StoredJwtKey> = before
        .jwt_authorities
        .iter()
        .filter(|k| !withdrawn.jwt.contains(&k.key_id) && (k.expires_at == 0 || k.expires_at > now))
        .cloned()
        .collect();
    for key in &own.jwt_authorities {
        let key = StoredJwtKey {
            key_id: key.key_id.clone(),
            public_key: key.public_key.clone(),
            expires_at: key.expires_at,
        };
        match jwt.iter_mut().find(|k| k.key_id == key.key_id) {
            Some(stored) => *stored = key,
            None => jwt.push(key),
        }
    }
    if existed && x509 == before.x509_authorities && jwt == before.jwt_authorities {
        return None;
    }
    Some(StoredBundle {
        x509_authorities: x509,
        jwt_authorities: jwt,
        sequence_number: before.sequence_number.saturating_add(1),
        ..before
    })
}

/// Whether the certificate's NotAfter has passed. A certificate that does
/// not parse is kept: only an operator put it there, and only one may take
/// it out.
fn expired_x509(der: &[u8], now: i64) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert.validity().not_after.timestamp() <= now)
        .unwrap_or(false)
}

/// The stored bundle as the server serves and trusts it.
pub(super) fn to_trust_bundle(stored: &StoredBundle, trust_domain: &TrustDomain) -> TrustBundle {
    let mut bundle = TrustBundle::new(trust_domain.clone());
    bundle.x509_authorities = stored.x509_authorities.clone();
    bundle.jwt_authorities = stored
        .jwt_authorities
        .iter()
        .map(|k| JwtAuthority {
            key_id: k.key_id.clone(),
            public_key: k.public_key.clone(),
            expires_at: k.expires_at,
        })
        .collect();
    bundle.sequence = stored.sequence_number;
    bundle.refresh_hint = stored.refresh_hint;
    bundle
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn cert(days: u32) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 1, 1 + u8::try_from(days).unwrap());
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn at(days: u64) -> SystemTime {
        // 2026-01-01T00:00:00Z plus `days` days.
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + days * 86_400)
    }

    fn own(x509: &[&Vec<u8>], kids: &[&str]) -> TrustBundle {
        let mut b = TrustBundle::new(td());
        b.x509_authorities = x509.iter().map(|c| (*c).clone()).collect();
        b.jwt_authorities = kids
            .iter()
            .map(|kid| JwtAuthority {
                key_id: (*kid).to_owned(),
                public_key: vec![1, 2, 3],
                expires_at: 0,
            })
            .collect();
        b
    }

    #[test]
    fn two_servers_share_one_bundle_and_each_withdraws_only_its_own() {
        let (a1, a2, b1, appended) = (cert(20), cert(20), cert(20), cert(20));
        let none = Published::default();
        let first = merge(None, &own(&[&a1], &["ka"]), &none, at(1)).unwrap();
        assert_eq!(first.sequence_number, 1);
        let mut with_append = first.clone();
        with_append.x509_authorities.push(appended.clone());
        let both = merge(Some(with_append), &own(&[&b1], &["kb"]), &none, at(1)).unwrap();
        assert_eq!(
            both.x509_authorities,
            [a1.clone(), appended.clone(), b1.clone()]
        );
        assert_eq!(both.jwt_authorities.len(), 2);
        // Nothing new: no write.
        assert!(merge(Some(both.clone()), &own(&[&a1], &["ka"]), &none, at(1)).is_none());
        // Server A rotated and revoked a1: only a1 and its key leave.
        let withdrawn = Published {
            x509: vec![a1.clone()],
            jwt: vec!["ka".into()],
        };
        let after = merge(Some(both), &own(&[&a2], &["ka2"]), &withdrawn, at(2)).unwrap();
        assert_eq!(after.x509_authorities, [appended, b1, a2]);
        let kids: Vec<_> = after
            .jwt_authorities
            .iter()
            .map(|k| k.key_id.as_str())
            .collect();
        assert_eq!(kids, ["kb", "ka2"]);
        assert_eq!(after.sequence_number, 3);
    }

    #[test]
    fn expired_authorities_of_any_server_leave() {
        let (short, long) = (cert(2), cert(20));
        let none = Published::default();
        let stored = merge(None, &own(&[&short, &long], &[]), &none, at(1)).unwrap();
        let later = merge(Some(stored), &own(&[&long], &[]), &none, at(5)).unwrap();
        assert_eq!(later.x509_authorities, [long]);
    }
}
