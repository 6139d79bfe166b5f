//! Conversions between the wire types (`spire.api.types`) and the
//! datastore's records, and output masks. Inputs from callers are validated
//! in [`super::validate`]; what is converted here from the datastore is
//! trusted (it was validated on the way in).

use spinel_proto::spire::api::types;
use spinel_spiffe::{id, SpiffeId};

use crate::datastore::{AttestedAgent, RegistrationEntry, StoredBundle, StoredSelector};

/// The wire form of a parsed SPIFFE ID.
pub fn id_to_proto(id: &SpiffeId) -> types::Spiffeid {
    types::Spiffeid {
        trust_domain: id.trust_domain_name().to_owned(),
        path: id.path().to_owned(),
    }
}

/// The wire form of a SPIFFE ID as stored (`spiffe://td/path`).
pub fn stored_id_to_proto(stored: &str) -> types::Spiffeid {
    let rest = stored.strip_prefix("spiffe://").unwrap_or(stored);
    let (td, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    types::Spiffeid {
        trust_domain: td.to_owned(),
        path: path.to_owned(),
    }
}

/// Parses a wire SPIFFE ID strictly (see [`id::parse_id`]).
pub fn id_from_proto(proto: Option<&types::Spiffeid>) -> Result<SpiffeId, String> {
    let proto = proto.ok_or("request must specify SPIFFE ID")?;
    if proto.trust_domain.is_empty() {
        return Err("trust domain is missing".into());
    }
    let td = id::parse_trust_domain(&proto.trust_domain).map_err(|e| e.to_string())?;
    if td.as_str() != proto.trust_domain {
        return Err(format!(
            "trust domain {:?} must be a bare name",
            proto.trust_domain
        ));
    }
    if !proto.path.is_empty() && !proto.path.starts_with('/') {
        return Err(format!(
            "path {:?} must be empty or start with a slash",
            proto.path
        ));
    }
    id::parse_id(&format!("spiffe://{}{}", proto.trust_domain, proto.path))
        .map_err(|e| e.to_string())
}

/// The wire form of a stored selector.
pub fn selector_to_proto(s: &StoredSelector) -> types::Selector {
    types::Selector {
        r#type: s.kind.clone(),
        value: s.value.clone(),
    }
}

/// The wire form of an entry, with every field.
pub fn entry_to_proto(e: &RegistrationEntry) -> types::Entry {
    types::Entry {
        id: e.id.clone(),
        spiffe_id: Some(stored_id_to_proto(&e.spiffe_id)),
        parent_id: Some(stored_id_to_proto(&e.parent_id)),
        selectors: e.selectors.iter().map(selector_to_proto).collect(),
        x509_svid_ttl: e.x509_svid_ttl,
        federates_with: e.federates_with.clone(),
        admin: e.admin,
        downstream: e.downstream,
        expires_at: e.expires_at,
        dns_names: e.dns_names.clone(),
        revision_number: e.revision_number,
        store_svid: e.store_svid,
        jwt_svid_ttl: e.jwt_svid_ttl,
        hint: e.hint.clone(),
        created_at: e.created_at,
        additional_attributes: None,
    }
}

/// The entry mask with every field set (what an absent mask means).
pub const ALL_ENTRY_FIELDS: types::EntryMask = types::EntryMask {
    spiffe_id: true,
    parent_id: true,
    selectors: true,
    x509_svid_ttl: true,
    federates_with: true,
    admin: true,
    downstream: true,
    expires_at: true,
    dns_names: true,
    revision_number: true,
    store_svid: true,
    jwt_svid_ttl: true,
    hint: true,
    created_at: true,
    additional_attributes: true,
};

/// Clears the fields of `e` that `mask` leaves out (`id` always stays).
pub fn mask_entry(e: &mut types::Entry, mask: Option<&types::EntryMask>) {
    let Some(m) = mask else { return };
    if !m.spiffe_id {
        e.spiffe_id = None;
    }
    if !m.parent_id {
        e.parent_id = None;
    }
    if !m.selectors {
        e.selectors.clear();
    }
    if !m.x509_svid_ttl {
        e.x509_svid_ttl = 0;
    }
    if !m.federates_with {
        e.federates_with.clear();
    }
    if !m.admin {
        e.admin = false;
    }
    if !m.downstream {
        e.downstream = false;
    }
    if !m.expires_at {
        e.expires_at = 0;
    }
    if !m.dns_names {
        e.dns_names.clear();
    }
    if !m.revision_number {
        e.revision_number = 0;
    }
    if !m.store_svid {
        e.store_svid = false;
    }
    if !m.jwt_svid_ttl {
        e.jwt_svid_ttl = 0;
    }
    if !m.hint {
        e.hint.clear();
    }
    if !m.created_at {
        e.created_at = 0;
    }
    if !m.additional_attributes {
        e.additional_attributes = None;
    }
}

/// The wire form of an entry, masked.
pub fn entry_to_proto_masked(
    e: &RegistrationEntry,
    mask: Option<&types::EntryMask>,
) -> types::Entry {
    let mut out = entry_to_proto(e);
    mask_entry(&mut out, mask);
    out
}

/// The wire form of an agent, masked (`id` always stays).
pub fn agent_to_proto(a: &AttestedAgent, mask: Option<&types::AgentMask>) -> types::Agent {
    let all = types::AgentMask {
        attestation_type: true,
        x509svid_serial_number: true,
        x509svid_expires_at: true,
        selectors: true,
        banned: true,
        can_reattest: true,
        agent_version: true,
    };
    let m = mask.unwrap_or(&all);
    types::Agent {
        id: Some(stored_id_to_proto(&a.spiffe_id)),
        attestation_type: if m.attestation_type {
            a.attestation_type.clone()
        } else {
            String::new()
        },
        x509svid_serial_number: if m.x509svid_serial_number {
            a.cert_serial_number.clone()
        } else {
            String::new()
        },
        x509svid_expires_at: if m.x509svid_expires_at {
            a.cert_not_after
        } else {
            0
        },
        selectors: if m.selectors {
            a.selectors.iter().map(selector_to_proto).collect()
        } else {
            Vec::new()
        },
        banned: m.banned && a.banned,
        can_reattest: m.can_reattest && a.can_reattest,
        agent_version: String::new(),
    }
}

/// The wire form of a stored bundle, masked (`trust_domain` always stays).
pub fn bundle_to_proto(b: &StoredBundle, mask: Option<&types::BundleMask>) -> types::Bundle {
    let all = types::BundleMask {
        x509_authorities: true,
        jwt_authorities: true,
        refresh_hint: true,
        sequence_number: true,
        wit_authorities: true,
    };
    let m = mask.unwrap_or(&all);
    types::Bundle {
        trust_domain: b.trust_domain.clone(),
        x509_authorities: if m.x509_authorities {
            b.x509_authorities
                .iter()
                .map(|der| types::X509Certificate {
                    asn1: der.clone(),
                    tainted: false,
                })
                .collect()
        } else {
            Vec::new()
        },
        jwt_authorities: if m.jwt_authorities {
            b.jwt_authorities
                .iter()
                .map(|k| types::JwtKey {
                    public_key: k.public_key.clone(),
                    key_id: k.key_id.clone(),
                    expires_at: k.expires_at,
                    tainted: false,
                })
                .collect()
        } else {
            Vec::new()
        },
        refresh_hint: if m.refresh_hint { b.refresh_hint } else { 0 },
        sequence_number: if m.sequence_number {
            b.sequence_number
        } else {
            0
        },
        wit_authorities: Vec::new(),
    }
}

/// The wire form of a signed X509-SVID.
pub fn x509_svid_to_proto(
    svid: &crate::ca::X509Svid,
    id: &SpiffeId,
    hint: &str,
) -> types::X509svid {
    types::X509svid {
        cert_chain: svid.chain.clone(),
        id: Some(id_to_proto(id)),
        expires_at: spinel_spiffe::clock::to_unix_seconds(svid.not_after),
        hint: hint.to_owned(),
    }
}

/// How a filter set compares with a record's set (SPIRE's `MatchBehavior`:
/// 0 exact, 1 subset, 2 superset, 3 any).
pub fn set_matches<T: Ord>(
    record: &std::collections::BTreeSet<T>,
    filter: &std::collections::BTreeSet<T>,
    behavior: i32,
) -> bool {
    match behavior {
        1 => record.is_subset(filter),
        2 => record.is_superset(filter),
        3 => record.intersection(filter).next().is_some(),
        _ => record == filter,
    }
}

/// One page of `items` (sorted by `key`): those after `page_token`, at
/// most `page_size` of them (all when 0 or less), and the token of the next
/// page (empty when there is none).
pub fn paginate<T>(
    items: Vec<T>,
    page_size: i32,
    page_token: &str,
    key: impl Fn(&T) -> &str,
) -> (Vec<T>, String) {
    let mut rest: Vec<T> = if page_token.is_empty() {
        items
    } else {
        items.into_iter().filter(|i| key(i) > page_token).collect()
    };
    let size = usize::try_from(page_size).unwrap_or(0);
    if size == 0 || rest.len() <= size {
        return (rest, String::new());
    }
    rest.truncate(size);
    let next = rest.last().map(|i| key(i).to_owned()).unwrap_or_default();
    (rest, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = id::parse_id("spiffe://example.org/a/b").unwrap();
        let p = id_to_proto(&id);
        assert_eq!(p.trust_domain, "example.org");
        assert_eq!(p.path, "/a/b");
        assert_eq!(id_from_proto(Some(&p)).unwrap(), id);
        assert_eq!(stored_id_to_proto("spiffe://example.org/a/b"), p);
        assert_eq!(stored_id_to_proto("spiffe://example.org").path, "");
    }

    #[test]
    fn refuses_smuggled_ids() {
        for (td, path) in [
            ("spiffe://example.org", "/a"),
            ("example.org/x", "/a"),
            ("Example.org", "/a"),
            ("example.org", "a"),
            ("example.org", "/a/../b"),
            ("example.org", "/a/"),
            ("", "/a"),
        ] {
            let p = types::Spiffeid {
                trust_domain: td.into(),
                path: path.into(),
            };
            assert!(id_from_proto(Some(&p)).is_err(), "{td} {path}");
        }
        assert!(id_from_proto(None).is_err());
    }

    #[test]
    fn pages() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (page, next) = paginate(items.clone(), 2, "", |s| s);
        assert_eq!(
            (page, next.as_str()),
            (vec!["a".to_owned(), "b".to_owned()], "b")
        );
        let (page, next) = paginate(items.clone(), 2, "d", |s| s);
        assert_eq!((page, next.as_str()), (vec!["e".to_owned()], ""));
        assert_eq!(paginate(items, 0, "", |s| s).0.len(), 5);
    }

    #[test]
    fn set_matching() {
        let set = |v: &[i32]| v.iter().copied().collect::<std::collections::BTreeSet<_>>();
        assert!(set_matches(&set(&[1, 2]), &set(&[1, 2]), 0));
        assert!(!set_matches(&set(&[1]), &set(&[1, 2]), 0));
        assert!(set_matches(&set(&[1]), &set(&[1, 2]), 1));
        assert!(set_matches(&set(&[1, 2, 3]), &set(&[1, 2]), 2));
        assert!(set_matches(&set(&[3, 2]), &set(&[1, 2]), 3));
        assert!(!set_matches(&set(&[3]), &set(&[1, 2]), 3));
    }

    #[test]
    fn masks_clear_fields_but_keep_id() {
        let e = RegistrationEntry {
            id: "e1".into(),
            spiffe_id: "spiffe://example.org/w".into(),
            parent_id: "spiffe://example.org/p".into(),
            hint: "h".into(),
            ..Default::default()
        };
        let mask = types::EntryMask {
            hint: true,
            ..Default::default()
        };
        let out = entry_to_proto_masked(&e, Some(&mask));
        assert_eq!(out.id, "e1");
        assert_eq!(out.hint, "h");
        assert!(out.spiffe_id.is_none() && out.parent_id.is_none());
        assert!(entry_to_proto_masked(&e, None).spiffe_id.is_some());
    }
}
