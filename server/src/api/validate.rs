//! Validation at the API edge: everything a caller sends is checked here
//! before it reaches the datastore or the CA, with errors that name the
//! field.
//!
//! - SPIFFE IDs are parsed strictly; a workload entry's `spiffe_id` must be
//!   in our trust domain, have a path and stay out of `/spire/...`; its
//!   `parent_id` may be any ID of our trust domain with a path (an agent,
//!   `/spire/server` for node aliases, or another entry's ID), but not its
//!   own SPIFFE ID; longer cycles need the other entries, so the datastore
//!   refuses them (`DataStoreError::ParentCycle`, see `datastore::lineage`).
//!   IDs over 2,048 bytes are refused by the parser.
//! - selectors through [`Selector::new`]; DNS names as hostnames with at
//!   most a leftmost `*` label; TTLs not negative; `federates_with` as
//!   trust domain names; hints up to 1024 bytes.

use spinel_proto::spire::api::types;
use spinel_spiffe::{id, Selector, SpiffeId, TrustDomain};
use x509_parser::prelude::FromDer;

use super::convert::{id_from_proto, ALL_ENTRY_FIELDS};
use crate::datastore::{RegistrationEntry, StoredBundle, StoredJwtKey, StoredSelector};

/// Longest hint SPIRE accepts.
pub const MAX_HINT_LEN: usize = 1024;
/// Longest caller-chosen entry ID.
pub const MAX_ENTRY_ID_LEN: usize = 255;

/// A workload's SPIFFE ID: in `td`, with a path, not reserved.
pub fn workload_id(td: &TrustDomain, proto: Option<&types::Spiffeid>) -> Result<SpiffeId, String> {
    let id = id_from_proto(proto)?;
    id::check_workload_id(&id, td).map_err(|e| e.to_string())?;
    Ok(id)
}

/// Any ID of `td` with a path (parents, filters).
pub fn member_id(td: &TrustDomain, proto: Option<&types::Spiffeid>) -> Result<SpiffeId, String> {
    let id = id_from_proto(proto)?;
    if !id.is_member_of(td) {
        return Err(format!("\"{id}\" is not a member of trust domain \"{td}\""));
    }
    if id.path().is_empty() {
        return Err(format!(
            "\"{id}\" is not a member of trust domain \"{td}\"; path is empty"
        ));
    }
    Ok(id)
}

/// An agent ID of `td` (`/spire/agent/...`).
pub fn agent_id(td: &TrustDomain, proto: Option<&types::Spiffeid>) -> Result<SpiffeId, String> {
    let id = id_from_proto(proto)?;
    if !id.is_member_of(td) {
        return Err(format!("\"{id}\" is not a member of trust domain \"{td}\""));
    }
    if !id::is_agent(&id) {
        return Err(format!(
            "\"{id}\" is not an agent in trust domain \"{td}\"; path is not in the agent namespace"
        ));
    }
    Ok(id)
}

/// One selector.
pub fn selector(proto: &types::Selector) -> Result<StoredSelector, String> {
    let s = Selector::new(proto.r#type.clone(), proto.value.clone()).map_err(|e| e.to_string())?;
    Ok(StoredSelector::from(&s))
}

/// A non-empty selector list, sorted and without duplicates.
pub fn selectors(protos: &[types::Selector]) -> Result<Vec<StoredSelector>, String> {
    if protos.is_empty() {
        return Err("selector list is empty".into());
    }
    let mut out = protos.iter().map(selector).collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// A DNS name for an X509-SVID: ASCII hostname labels (letters, digits,
/// hyphens, not at either end of a label, 1-63 bytes), at most 253 bytes,
/// no trailing dot; a wildcard only as the whole leftmost label.
pub fn dns_name(name: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{name:?}: {why}"));
    if !name.is_ascii() {
        return fail("name must be ascii");
    }
    let stars = name.matches('*').count();
    let rest = match stars {
        0 => name,
        1 => match name.strip_prefix("*.") {
            Some(rest) => rest,
            None => return fail("wildcard must be first label"),
        },
        _ => return fail("too many wildcards"),
    };
    if rest.trim().is_empty() {
        return fail("empty or only whitespace");
    }
    if rest.ends_with('.') {
        return fail("domain ends with dot");
    }
    if name.len() > 253 {
        return fail("name is longer than 253 bytes");
    }
    for label in rest.split('.') {
        if label.is_empty() {
            return fail("empty label");
        }
        if label.len() > 63 {
            return fail("label is longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return fail("label holds a character other than a letter, digit or hyphen");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return fail("label starts or ends with a hyphen");
        }
    }
    Ok(())
}

/// A trust domain name for `federates_with` (name or `spiffe://` form);
/// returns the bare name.
pub fn federated_trust_domain(input: &str) -> Result<String, String> {
    id::parse_trust_domain(input)
        .map(|td| td.as_str().to_owned())
        .map_err(|e| e.to_string())
}

/// A caller-chosen entry ID: printable ASCII without spaces, 1-255 bytes.
pub fn entry_id(input: &str) -> Result<(), String> {
    if input.is_empty() {
        return Err("missing entry ID".into());
    }
    if input.len() > MAX_ENTRY_ID_LEN {
        return Err(format!("entry ID is longer than {MAX_ENTRY_ID_LEN} bytes"));
    }
    if !input.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("entry ID holds characters other than printable ASCII".into());
    }
    Ok(())
}

/// The fields of `e` selected by `mask` (all when `None`), validated. Fields
/// outside the mask keep their defaults; [`merge_entry`] lays them over a
/// stored entry for updates.
pub fn entry(
    td: &TrustDomain,
    e: &types::Entry,
    mask: Option<&types::EntryMask>,
) -> Result<RegistrationEntry, String> {
    let m = mask.unwrap_or(&ALL_ENTRY_FIELDS);
    let mut out = RegistrationEntry {
        id: e.id.clone(),
        ..Default::default()
    };
    if !e.id.is_empty() {
        entry_id(&e.id)?;
    }
    if m.parent_id {
        out.parent_id = member_id(td, e.parent_id.as_ref())
            .map_err(|r| format!("invalid parent ID: {r}"))?
            .to_string();
    }
    if m.spiffe_id {
        out.spiffe_id = workload_id(td, e.spiffe_id.as_ref())
            .map_err(|r| format!("invalid spiffe ID: {r}"))?
            .to_string();
    }
    if m.parent_id && m.spiffe_id {
        not_own_parent(&out)?;
    }
    if m.selectors {
        out.selectors = selectors(&e.selectors)?;
    }
    if m.dns_names {
        for name in &e.dns_names {
            dns_name(name).map_err(|r| format!("invalid DNS name: {r}"))?;
        }
        out.dns_names = e.dns_names.clone();
    }
    if m.federates_with {
        out.federates_with = e
            .federates_with
            .iter()
            .map(|t| {
                federated_trust_domain(t)
                    .map_err(|r| format!("invalid federated trust domain: {r}"))
            })
            .collect::<Result<_, _>>()?;
    }
    if m.x509_svid_ttl {
        if e.x509_svid_ttl < 0 {
            return Err("x509_svid_ttl must not be negative".into());
        }
        out.x509_svid_ttl = e.x509_svid_ttl;
    }
    if m.jwt_svid_ttl {
        if e.jwt_svid_ttl < 0 {
            return Err("jwt_svid_ttl must not be negative".into());
        }
        out.jwt_svid_ttl = e.jwt_svid_ttl;
    }
    if m.expires_at {
        if e.expires_at < 0 {
            return Err("expires_at must not be negative".into());
        }
        out.expires_at = e.expires_at;
    }
    if m.hint {
        if e.hint.len() > MAX_HINT_LEN {
            return Err(format!(
                "hint is too long, max length is {MAX_HINT_LEN} characters"
            ));
        }
        out.hint = e.hint.clone();
    }
    if m.admin {
        out.admin = e.admin;
    }
    if m.downstream {
        out.downstream = e.downstream;
    }
    if m.store_svid {
        out.store_svid = e.store_svid;
    }
    Ok(out)
}

/// `stored` with the fields of `update` selected by `mask` (all when `None`)
/// replacing its own. ID, creation time and revision stay the store's.
pub fn merge_entry(
    stored: &RegistrationEntry,
    update: RegistrationEntry,
    mask: Option<&types::EntryMask>,
) -> RegistrationEntry {
    let m = mask.unwrap_or(&ALL_ENTRY_FIELDS);
    let mut out = stored.clone();
    if m.parent_id {
        out.parent_id = update.parent_id;
    }
    if m.spiffe_id {
        out.spiffe_id = update.spiffe_id;
    }
    if m.selectors {
        out.selectors = update.selectors;
    }
    if m.dns_names {
        out.dns_names = update.dns_names;
    }
    if m.federates_with {
        out.federates_with = update.federates_with;
    }
    if m.x509_svid_ttl {
        out.x509_svid_ttl = update.x509_svid_ttl;
    }
    if m.jwt_svid_ttl {
        out.jwt_svid_ttl = update.jwt_svid_ttl;
    }
    if m.expires_at {
        out.expires_at = update.expires_at;
    }
    if m.hint {
        out.hint = update.hint;
    }
    if m.admin {
        out.admin = update.admin;
    }
    if m.downstream {
        out.downstream = update.downstream;
    }
    if m.store_svid {
        out.store_svid = update.store_svid;
    }
    out
}

/// Refuses an entry whose parent ID is its own SPIFFE ID (the shortest
/// parent cycle).
pub fn not_own_parent(e: &RegistrationEntry) -> Result<(), String> {
    if e.parent_id == e.spiffe_id {
        let which = if e.id.is_empty() {
            String::new()
        } else {
            format!(" {:?}", e.id)
        };
        return Err(format!(
            "entry{which} would be its own parent: parent ID and SPIFFE ID are both {:?} \
             (parent cycle: {0} -> {0})",
            e.spiffe_id
        ));
    }
    Ok(())
}

/// A federated bundle sent by a caller: a valid trust domain, parseable CA
/// certificates, JWT keys with a key ID and a parseable public key.
pub fn bundle(b: &types::Bundle) -> Result<StoredBundle, String> {
    let td = federated_trust_domain(&b.trust_domain)
        .map_err(|r| format!("invalid trust domain: {r}"))?;
    let mut x509 = Vec::with_capacity(b.x509_authorities.len());
    for (i, cert) in b.x509_authorities.iter().enumerate() {
        x509_authority(&cert.asn1).map_err(|r| format!("invalid X.509 authority {i}: {r}"))?;
        x509.push(cert.asn1.clone());
    }
    let mut jwt = Vec::with_capacity(b.jwt_authorities.len());
    for (i, key) in b.jwt_authorities.iter().enumerate() {
        jwt.push(jwt_authority(key).map_err(|r| format!("invalid JWT authority {i}: {r}"))?);
    }
    Ok(StoredBundle {
        trust_domain: td,
        x509_authorities: x509,
        jwt_authorities: jwt,
        refresh_hint: b.refresh_hint.max(0),
        sequence_number: b.sequence_number,
    })
}

/// A CA certificate: one DER certificate and nothing after it.
pub fn x509_authority(der: &[u8]) -> Result<(), String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(()),
        Ok(_) => Err("trailing data after the certificate".into()),
        Err(e) => Err(format!("not a DER certificate: {e}")),
    }
}

/// A JWT signing key: a key ID and a DER SubjectPublicKeyInfo.
pub fn jwt_authority(key: &types::JwtKey) -> Result<StoredJwtKey, String> {
    if key.key_id.is_empty() {
        return Err("missing key ID".into());
    }
    match x509_parser::x509::SubjectPublicKeyInfo::from_der(&key.public_key) {
        Ok(([], _)) => {}
        _ => return Err("public key is not a DER SubjectPublicKeyInfo".into()),
    }
    Ok(StoredJwtKey {
        key_id: key.key_id.clone(),
        public_key: key.public_key.clone(),
        expires_at: key.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        id::parse_trust_domain("example.org").unwrap()
    }

    fn pid(path: &str) -> Option<types::Spiffeid> {
        Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path: path.into(),
        })
    }

    fn good() -> types::Entry {
        types::Entry {
            spiffe_id: pid("/web"),
            parent_id: pid("/spire/agent/join_token/abc"),
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: "uid:1000".into(),
            }],
            dns_names: vec!["web.example.org".into(), "*.web.example.org".into()],
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_good_entry() {
        let e = entry(&td(), &good(), None).unwrap();
        assert_eq!(e.spiffe_id, "spiffe://example.org/web");
        assert_eq!(
            e.parent_id,
            "spiffe://example.org/spire/agent/join_token/abc"
        );
        let mut alias = good();
        alias.parent_id = pid("/spire/server");
        assert!(entry(&td(), &alias, None).is_ok());
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = Box<dyn Fn(&mut types::Entry)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|e| e.spiffe_id = pid("/spire/agent/x")),
                "invalid spiffe ID",
            ),
            (
                Box::new(|e| e.spiffe_id = pid("/a/../b")),
                "invalid spiffe ID",
            ),
            (Box::new(|e| e.parent_id = pid("")), "invalid parent ID"),
            (Box::new(|e| e.selectors.clear()), "selector list is empty"),
            (Box::new(|e| e.selectors[0].value.clear()), "empty value"),
            (
                Box::new(|e| e.dns_names.push("a.*.b".into())),
                "invalid DNS name",
            ),
            (
                Box::new(|e| e.dns_names.push("bad_name.org".into())),
                "invalid DNS name",
            ),
            (
                Box::new(|e| e.federates_with.push("Bad.org".into())),
                "invalid federated trust domain",
            ),
            (Box::new(|e| e.x509_svid_ttl = -1), "x509_svid_ttl"),
            (Box::new(|e| e.jwt_svid_ttl = -1), "jwt_svid_ttl"),
            (Box::new(|e| e.hint = "h".repeat(1025)), "hint is too long"),
            (Box::new(|e| e.id = "has space".into()), "entry ID"),
            (
                Box::new(|e| e.parent_id = pid("/web")),
                "would be its own parent",
            ),
            (
                Box::new(|e| e.spiffe_id = pid(&format!("/{}", "a".repeat(2048)))),
                "the limit is 2048 bytes",
            ),
            (
                Box::new(|e| e.parent_id = pid(&format!("/{}", "a".repeat(2048)))),
                "the limit is 2048 bytes",
            ),
        ];
        for (mutate, want) in cases {
            let mut e = good();
            mutate(&mut e);
            let err = entry(&td(), &e, None).unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn dns_names() {
        for ok in [
            "example.org",
            "*.example.org",
            "a-b.c",
            "localhost",
            "A.example.org",
        ] {
            assert!(dns_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " ",
            "*",
            "a.*.org",
            "**.org",
            "example.org.",
            "-a.org",
            "a..org",
            "é.org",
            "a_b.org",
        ] {
            assert!(dns_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_keeps_unmasked_fields() {
        let stored = entry(&td(), &good(), None).unwrap();
        let mask = types::EntryMask {
            hint: true,
            ..Default::default()
        };
        let update = entry(
            &td(),
            &types::Entry {
                hint: "new".into(),
                ..Default::default()
            },
            Some(&mask),
        )
        .unwrap();
        let merged = merge_entry(&stored, update, Some(&mask));
        assert_eq!(merged.hint, "new");
        assert_eq!(merged.spiffe_id, stored.spiffe_id);
        assert_eq!(merged.selectors, stored.selectors);
    }
}
