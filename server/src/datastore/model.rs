//! Records kept by the datastore. IDs are stored in their string form and
//! validated at the API edge before they get here.

use serde::{Deserialize, Serialize};
use spinel_spiffe::{Selector, TrustBundle};

/// A registration entry: which identity (`spiffe_id`) goes to which
/// workloads (`selectors`) under which parent (an agent or node alias).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RegistrationEntry {
    /// Globally unique entry ID.
    pub id: String,
    /// The SPIFFE ID handed out.
    pub spiffe_id: String,
    /// The agent (or `spiffe://<td>/spire/server` for node aliases) it is delegated to.
    pub parent_id: String,
    /// Selectors (`type`, `value`), all of which a caller must have.
    pub selectors: Vec<StoredSelector>,
    /// X509-SVID TTL in seconds; 0 means the server default.
    pub x509_svid_ttl: i32,
    /// JWT-SVID TTL in seconds; 0 means the server default.
    pub jwt_svid_ttl: i32,
    /// Trust domain names whose bundles the workload also gets.
    pub federates_with: Vec<String>,
    /// The identity may call admin APIs.
    pub admin: bool,
    /// The identity is a downstream server.
    pub downstream: bool,
    /// Unix seconds after which the entry is void; 0 for never.
    pub expires_at: i64,
    /// DNS SANs for X509-SVIDs; the first is also the subject CN.
    pub dns_names: Vec<String>,
    /// Bumped on every update.
    pub revision_number: i64,
    /// The SVID may be exported to a store.
    pub store_svid: bool,
    /// Operator guidance for picking among several SVIDs.
    pub hint: String,
    /// Unix seconds when the entry was created.
    pub created_at: i64,
}

/// A selector as stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StoredSelector {
    /// The selector type, e.g. `unix`.
    pub kind: String,
    /// The value, e.g. `uid:1000`.
    pub value: String,
}

impl From<&Selector> for StoredSelector {
    fn from(s: &Selector) -> Self {
        StoredSelector {
            kind: s.kind.clone(),
            value: s.value.clone(),
        }
    }
}

impl From<&StoredSelector> for Selector {
    fn from(s: &StoredSelector) -> Self {
        Selector {
            kind: s.kind.clone(),
            value: s.value.clone(),
        }
    }
}

/// Which entries [`super::DataStore::list_entries`] returns. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    /// Only entries with this SPIFFE ID.
    pub spiffe_id: Option<String>,
    /// Only entries with this parent ID.
    pub parent_id: Option<String>,
    /// Only entries whose selectors relate to these as `selector_match` says.
    pub selectors: Option<(Vec<StoredSelector>, SelectorMatch)>,
    /// Only entries that federate with this trust domain.
    pub federates_with: Option<String>,
    /// Only entries with this hint.
    pub hint: Option<String>,
    /// Only entries with `downstream` equal to this.
    pub downstream: Option<bool>,
}

/// How a selector filter compares with an entry's selectors (SPIRE's `SelectorMatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SelectorMatch {
    /// The entry's selectors are exactly the given set.
    #[default]
    Exact,
    /// The entry's selectors are a subset of the given set.
    Subset,
    /// The entry's selectors are a superset of the given set.
    Superset,
    /// The entry's selectors and the given set share at least one selector.
    Any,
}

/// An attested agent (SPIRE's "attested node").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AttestedAgent {
    /// The agent's SPIFFE ID.
    pub spiffe_id: String,
    /// The node attestor that admitted it, e.g. `join_token`.
    pub attestation_type: String,
    /// Serial number (decimal) of the agent's current X509-SVID.
    pub cert_serial_number: String,
    /// Its expiry (Unix seconds).
    pub cert_not_after: i64,
    /// Serial number of the SVID being rotated in, until the agent uses it.
    pub new_cert_serial_number: String,
    /// Its expiry (Unix seconds).
    pub new_cert_not_after: i64,
    /// Node selectors from attestation.
    pub selectors: Vec<StoredSelector>,
    /// A banned agent is refused everywhere until deleted.
    pub banned: bool,
    /// The attestor allows the agent to attest again with fresh evidence.
    pub can_reattest: bool,
}

/// A join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// The secret value.
    pub value: String,
    /// Unix seconds after which it is void.
    pub expires_at: i64,
}

/// A trust domain's bundle as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBundle {
    /// Trust domain name, e.g. `example.org`.
    pub trust_domain: String,
    /// CA certificates, DER.
    pub x509_authorities: Vec<Vec<u8>>,
    /// JWT keys.
    pub jwt_authorities: Vec<StoredJwtKey>,
    /// Refresh hint in seconds.
    pub refresh_hint: i64,
    /// Sequence number, bumped on every change.
    pub sequence_number: u64,
}

impl From<&TrustBundle> for StoredBundle {
    /// A bundle as the CA or a federation fetch holds it, as stored.
    fn from(b: &TrustBundle) -> Self {
        StoredBundle {
            trust_domain: b.trust_domain.as_str().to_owned(),
            x509_authorities: b.x509_authorities.clone(),
            jwt_authorities: b
                .jwt_authorities
                .iter()
                .map(|a| StoredJwtKey {
                    key_id: a.key_id.clone(),
                    public_key: a.public_key.clone(),
                    expires_at: a.expires_at,
                })
                .collect(),
            refresh_hint: b.refresh_hint,
            sequence_number: b.sequence,
        }
    }
}

/// A JWT signing public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredJwtKey {
    /// Key ID.
    pub key_id: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// Unix seconds; 0 if none.
    pub expires_at: i64,
}

/// A federation relationship: where and how the bundle of a foreign trust
/// domain is fetched (SPIRE's `FederationRelationship`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFederationRelationship {
    /// The foreign trust domain name, e.g. `other.org`.
    pub trust_domain: String,
    /// The URL of its bundle endpoint (`https://...`).
    pub bundle_endpoint_url: String,
    /// `https_web` or `https_spiffe`.
    pub profile: String,
    /// For `https_spiffe`: the SPIFFE ID the endpoint must present.
    pub endpoint_spiffe_id: String,
}

impl RegistrationEntry {
    /// What makes two entries "similar" (SPIRE refuses a second entry with
    /// the same parent, SPIFFE ID and selector set): those three, the
    /// selectors sorted and de-duplicated, each part length-prefixed (u32,
    /// big-endian) so parts never run together. The sled backend keys its
    /// `similar` index with it (these bytes are on disk: never change
    /// them); the SQL backend stores its SHA-256.
    pub fn similarity_key(&self) -> Vec<u8> {
        let mut selectors: Vec<_> = self.selectors.iter().collect();
        selectors.sort();
        selectors.dedup();
        let mut key = Vec::new();
        let mut part = |bytes: &[u8]| {
            // Longer than 4 GiB cannot reach a store; saturate rather than
            // wrap so a key never aliases another.
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            key.extend_from_slice(&len.to_be_bytes());
            key.extend_from_slice(bytes);
        };
        part(self.parent_id.as_bytes());
        part(self.spiffe_id.as_bytes());
        for s in selectors {
            part(s.kind.as_bytes());
            part(s.value.as_bytes());
        }
        key
    }
}

impl EntryFilter {
    /// Whether `entry` passes every field of the filter (for backends that
    /// filter records after an index lookup).
    pub fn matches(&self, entry: &RegistrationEntry) -> bool {
        let equal =
            |wanted: &Option<String>, have: &str| wanted.as_deref().is_none_or(|w| w == have);
        equal(&self.spiffe_id, &entry.spiffe_id)
            && equal(&self.parent_id, &entry.parent_id)
            && equal(&self.hint, &entry.hint)
            && self.downstream.is_none_or(|d| d == entry.downstream)
            && self
                .federates_with
                .as_ref()
                .is_none_or(|td| entry.federates_with.contains(td))
            && self
                .selectors
                .as_ref()
                .is_none_or(|(given, how)| how.matches(&entry.selectors, given))
    }
}

impl SelectorMatch {
    /// Whether an entry with selectors `entry` matches the `given` set.
    pub fn matches(self, entry: &[StoredSelector], given: &[StoredSelector]) -> bool {
        use std::collections::BTreeSet;
        let have: BTreeSet<&StoredSelector> = entry.iter().collect();
        let given: BTreeSet<&StoredSelector> = given.iter().collect();
        match self {
            SelectorMatch::Exact => have == given,
            SelectorMatch::Subset => have.is_subset(&given),
            SelectorMatch::Superset => have.is_superset(&given),
            SelectorMatch::Any => !have.is_disjoint(&given),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(parent: &str, spiffe_id: &str, selectors: &[(&str, &str)]) -> RegistrationEntry {
        RegistrationEntry {
            parent_id: parent.into(),
            spiffe_id: spiffe_id.into(),
            selectors: selectors
                .iter()
                .map(|(k, v)| StoredSelector {
                    kind: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn similarity_key_ignores_order_and_repeats() {
        let a = entry("p", "s", &[("unix", "uid:1"), ("unix", "gid:1")]);
        let b = entry(
            "p",
            "s",
            &[("unix", "gid:1"), ("unix", "uid:1"), ("unix", "gid:1")],
        );
        assert_eq!(a.similarity_key(), b.similarity_key());
    }

    #[test]
    fn similarity_key_parts_cannot_run_together() {
        let a = entry("p", "s", &[("unix", "uid:1")]);
        let b = entry("p", "s", &[("unix:uid", "1")]);
        assert_ne!(a.similarity_key(), b.similarity_key());
        let c = entry("ab", "c", &[]);
        let d = entry("a", "bc", &[]);
        assert_ne!(c.similarity_key(), d.similarity_key());
    }

    #[test]
    fn similarity_key_bytes_are_the_ones_on_disk() {
        let key = entry("p", "s", &[("unix", "uid:1")]).similarity_key();
        assert_eq!(
            key,
            b"\0\0\0\x01p\0\0\0\x01s\0\0\0\x04unix\0\0\0\x05uid:1".to_vec()
        );
    }
}
