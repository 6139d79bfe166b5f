//! The Delegated Identity API's messages, built from a cache snapshot.
//!
//! Map keys are trust domain IDs (`spiffe://example.org`), as SPIRE's
//! agent sends them. The bundle messages are the same for every delegate:
//! [`BundleMessages`] builds each once per snapshot and every stream shares
//! it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use spinel_proto::spire::api::agent::delegatedidentity::v1::{
    SubscribeToJwtBundlesResponse, SubscribeToX509BundlesResponse, SubscribeToX509sviDsResponse,
    X509svidWithKey,
};
use spinel_proto::spire::api::types;
use spinel_spiffe::SpiffeId;
use tonic::Status;

use crate::cache::{Identity, Snapshot};

/// A SPIFFE ID as `spire.api.types.SPIFFEID` (trust domain name and path).
pub(crate) fn id_proto(id: &SpiffeId) -> types::Spiffeid {
    types::Spiffeid {
        trust_domain: id.trust_domain_name().to_owned(),
        path: id.path().to_owned(),
    }
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_seconds(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What one X509-SVID stream sends: the identities served (kept, not
/// copied: the snapshot's own `Arc`s, so that comparing them by address
/// is sound) and the trust domains they federate with.
#[derive(Debug, Default)]
pub(crate) struct X509Set {
    pub identities: Vec<Arc<Identity>>,
    pub federates_with: Vec<String>,
}

impl X509Set {
    /// The set for `identities` (already filtered to the servable ones)
    /// from `snapshot`.
    pub(crate) fn of(snapshot: &Snapshot, identities: Vec<Arc<Identity>>) -> X509Set {
        // The trust domains named by the entries whose bundles the agent
        // has (as `Snapshot::federated_for`, without copying the bundles),
        // sorted and without duplicates.
        let federates_with: BTreeSet<String> = identities
            .iter()
            .flat_map(|i| i.entry.federates_with.iter())
            .filter(|td| snapshot.federated.contains_key(*td))
            .map(|td| td.id_string())
            .collect();
        let federates_with = federates_with.into_iter().collect();
        X509Set {
            identities,
            federates_with,
        }
    }

    /// True when `other` holds the same SVIDs and trust domains.
    pub(crate) fn same_as(&self, other: &X509Set) -> bool {
        self.federates_with == other.federates_with
            && self.identities.len() == other.identities.len()
            && self
                .identities
                .iter()
                .zip(&other.identities)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// When the first of its SVIDs expires.
    pub(crate) fn expires(&self) -> Option<SystemTime> {
        self.identities.iter().map(|i| i.svid.not_after).min()
    }

    /// The message.
    pub(crate) fn message(&self) -> SubscribeToX509sviDsResponse {
        SubscribeToX509sviDsResponse {
            x509_svids: self
                .identities
                .iter()
                .map(|i| X509svidWithKey {
                    x509_svid: Some(types::X509svid {
                        cert_chain: i.svid.chain.clone(),
                        id: Some(id_proto(&i.entry.spiffe_id)),
                        expires_at: unix_seconds(i.svid.not_after),
                        hint: i.entry.hint.clone(),
                    }),
                    x509_svid_key: i.svid.private_key.to_vec(),
                })
                .collect(),
            federates_with: self.federates_with.clone(),
        }
    }
}

/// The bundle messages of the latest snapshot asked about, shared by
/// every stream.
#[derive(Debug, Default)]
pub(crate) struct BundleMessages {
    x509: Mutex<Option<(u64, Arc<SubscribeToX509BundlesResponse>)>>,
    jwt: Mutex<Option<(u64, Arc<SubscribeToJwtBundlesResponse>)>>,
}

fn cached<T>(
    slot: &Mutex<Option<(u64, Arc<T>)>>,
    generation: u64,
    build: impl FnOnce() -> Result<T, Status>,
) -> Result<Arc<T>, Status> {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((at, message)) = slot.as_ref() {
        if *at == generation {
            return Ok(message.clone());
        }
    }
    let message = Arc::new(build()?);
    // An older snapshot (a slow stream) does not replace a newer one.
    if slot.as_ref().is_none_or(|(at, _)| *at < generation) {
        *slot = Some((generation, message.clone()));
    }
    Ok(message)
}

impl BundleMessages {
    /// Every X.509 bundle the agent holds (its own and the federated ones).
    pub(crate) fn x509(
        &self,
        snapshot: &Snapshot,
    ) -> Result<Arc<SubscribeToX509BundlesResponse>, Status> {
        cached(&self.x509, snapshot.generation, || {
            Ok(SubscribeToX509BundlesResponse {
                ca_certificates: std::iter::once(&snapshot.bundle)
                    .chain(snapshot.federated.values())
                    .map(|b| (b.trust_domain.id_string(), b.x509_der_concat()))
                    .collect(),
            })
        })
    }

    /// Every JWT bundle the agent holds, as JWKS documents.
    pub(crate) fn jwt(
        &self,
        snapshot: &Snapshot,
    ) -> Result<Arc<SubscribeToJwtBundlesResponse>, Status> {
        cached(&self.jwt, snapshot.generation, || {
            let mut bundles = HashMap::new();
            for b in std::iter::once(&snapshot.bundle).chain(snapshot.federated.values()) {
                let jwks = b.to_jwks_json().map_err(|e| {
                    tracing::error!(trust_domain = %b.trust_domain, error = %e, "cannot encode a JWT bundle");
                    Status::internal(format!(
                        "the JWT bundle of {} cannot be encoded",
                        b.trust_domain
                    ))
                })?;
                bundles.insert(b.trust_domain.id_string(), jwks.into_bytes());
            }
            Ok(SubscribeToJwtBundlesResponse { bundles })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use spinel_spiffe::{Selector, TrustBundle, TrustDomain};
    use zeroize::Zeroizing;

    use super::*;
    use crate::cache::{CachedEntry, X509SvidMaterial};

    fn td(name: &str) -> TrustDomain {
        spinel_spiffe::id::parse_trust_domain(name).unwrap()
    }

    fn identity(path: &str, federates_with: &[&str]) -> Arc<Identity> {
        Arc::new(Identity {
            entry: CachedEntry {
                id: path.into(),
                spiffe_id: SpiffeId::new(format!("spiffe://example.org/{path}")).unwrap(),
                selectors: vec![Selector::parse("unix:uid:1").unwrap()],
                federates_with: federates_with.iter().map(|t| td(t)).collect(),
                hint: "h".into(),
                revision_number: 0,
                admin: false,
                downstream: false,
            },
            svid: X509SvidMaterial {
                chain: vec![vec![1, 2], vec![3]],
                private_key: Zeroizing::new(vec![9]),
                not_before: SystemTime::UNIX_EPOCH,
                not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            },
        })
    }

    fn snapshot(generation: u64, federated: &[&str]) -> Snapshot {
        let mut own = TrustBundle::new(td("example.org"));
        own.x509_authorities = vec![vec![7]];
        Snapshot {
            bundle: own,
            federated: federated
                .iter()
                .map(|t| (td(t), TrustBundle::new(td(t))))
                .collect::<BTreeMap<_, _>>(),
            identities: BTreeMap::new(),
            generation,
            ready: true,
        }
    }

    #[test]
    fn an_x509_set_names_the_federated_domains_the_agent_has() {
        let snap = snapshot(1, &["b.org", "a.org"]);
        let web = identity("web", &["b.org", "missing.org"]);
        let db = identity("db", &["a.org", "b.org"]);
        let set = X509Set::of(&snap, vec![web.clone(), db.clone()]);
        assert_eq!(set.federates_with, ["spiffe://a.org", "spiffe://b.org"]);
        let message = set.message();
        let svid = message.x509_svids[0].x509_svid.as_ref().unwrap();
        assert_eq!(svid.cert_chain, [vec![1, 2], vec![3]]);
        assert_eq!(svid.expires_at, 100);
        assert_eq!(svid.hint, "h");
        let id = svid.id.as_ref().unwrap();
        assert_eq!(
            (id.trust_domain.as_str(), id.path.as_str()),
            ("example.org", "/web")
        );
        assert_eq!(message.x509_svids[0].x509_svid_key, [9]);
        // The same identities are the same set; another Arc is not.
        assert!(set.same_as(&X509Set::of(&snap, vec![web.clone(), db])));
        assert!(!set.same_as(&X509Set::of(&snap, vec![web, identity("db", &[])])));
    }

    #[test]
    fn bundle_messages_are_built_once_per_snapshot() {
        let messages = BundleMessages::default();
        let one = snapshot(1, &["a.org"]);
        let first = messages.x509(&one).unwrap();
        assert!(Arc::ptr_eq(&first, &messages.x509(&one).unwrap()));
        assert_eq!(first.ca_certificates["spiffe://example.org"], [7]);
        assert!(first.ca_certificates.contains_key("spiffe://a.org"));
        let two = snapshot(2, &[]);
        let second = messages.x509(&two).unwrap();
        assert!(!second.ca_certificates.contains_key("spiffe://a.org"));
        // A slow stream still on the older snapshot does not evict the newer.
        messages.x509(&one).unwrap();
        assert!(Arc::ptr_eq(&second, &messages.x509(&two).unwrap()));
        let jwt = messages.jwt(&two).unwrap();
        let jwks: serde_json::Value =
            serde_json::from_slice(&jwt.bundles["spiffe://example.org"]).unwrap();
        assert!(jwks["keys"].is_array(), "{jwks}");
    }
}
