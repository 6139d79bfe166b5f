//! The agent's cache: every identity the agent holds, and the bundles.
//!
//! The sync side ([`crate::manager`]) writes a new [`Snapshot`] whenever
//! entries, SVIDs or bundles change; the Workload API side reads the latest
//! snapshot and waits on [`Cache::subscribe`] to stream changes. Snapshots
//! are immutable and shared (`Arc`), so a reader never sees a half-applied
//! update and a workload stream costs no copy.
//!
//! JWT-SVIDs are per audience, so they are fetched on demand through the
//! [`JwtSvidSource`] seam rather than kept here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use spinel_spiffe::{selector, Selector, SpiffeId, TrustBundle, TrustDomain};
use tokio::sync::watch;
use zeroize::Zeroizing;

/// A registration entry as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEntry {
    /// Entry ID.
    pub id: String,
    /// The identity handed out.
    pub spiffe_id: SpiffeId,
    /// Selectors a workload must all have.
    pub selectors: Vec<Selector>,
    /// Trust domains whose bundles the workload also gets.
    pub federates_with: Vec<TrustDomain>,
    /// Hint for workloads choosing among SVIDs.
    pub hint: String,
    /// Revision; a changed revision means a new SVID is needed.
    pub revision_number: i64,
}

/// An X509-SVID with its private key.
pub struct X509SvidMaterial {
    /// Leaf first, DER.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 DER; zeroed on drop and never printed.
    pub private_key: Zeroizing<Vec<u8>>,
    /// NotBefore of the leaf.
    pub not_before: SystemTime,
    /// NotAfter of the leaf.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for X509SvidMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509SvidMaterial")
            .field("chain_len", &self.chain.len())
            .field("private_key", &"<redacted>")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// An entry and its current X509-SVID.
#[derive(Debug)]
pub struct Identity {
    /// The entry.
    pub entry: CachedEntry,
    /// Its SVID.
    pub svid: X509SvidMaterial,
}

/// Everything the Workload API serves, at one moment.
#[derive(Debug)]
pub struct Snapshot {
    /// The agent's own trust domain bundle.
    pub bundle: TrustBundle,
    /// Bundles of other trust domains, for entries that federate with them.
    pub federated: BTreeMap<TrustDomain, TrustBundle>,
    /// Identities by entry ID.
    pub identities: BTreeMap<String, Arc<Identity>>,
    /// Bumped on every change.
    pub generation: u64,
    /// False until the first sync with the server has completed.
    pub ready: bool,
}

impl Snapshot {
    /// Identities whose entry selectors are all in `attested`, ordered by entry ID.
    pub fn matching(&self, attested: &BTreeSet<Selector>) -> Vec<Arc<Identity>> {
        self.identities
            .values()
            .filter(|i| selector::is_subset(&i.entry.selectors, attested))
            .cloned()
            .collect()
    }

    /// Bundles to give a workload holding `identities`: the federated
    /// bundles its entries name that the agent has.
    pub fn federated_for(
        &self,
        identities: &[Arc<Identity>],
    ) -> BTreeMap<TrustDomain, TrustBundle> {
        let mut out = BTreeMap::new();
        for td in identities
            .iter()
            .flat_map(|i| i.entry.federates_with.iter())
        {
            if let Some(b) = self.federated.get(td) {
                out.insert(td.clone(), b.clone());
            }
        }
        out
    }
}

/// The cache: the latest snapshot and a way to wait for the next.
#[derive(Debug, Clone)]
pub struct Cache {
    tx: Arc<watch::Sender<Arc<Snapshot>>>,
}

impl Cache {
    /// An empty, not-ready cache for `trust_domain`.
    pub fn new(trust_domain: TrustDomain) -> Self {
        let empty = Snapshot {
            bundle: TrustBundle::new(trust_domain),
            federated: BTreeMap::new(),
            identities: BTreeMap::new(),
            generation: 0,
            ready: false,
        };
        Cache {
            tx: Arc::new(watch::Sender::new(Arc::new(empty))),
        }
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// A receiver that is notified of every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Publishes a new snapshot built from the current one by `change`.
    /// The generation is bumped and the snapshot marked ready.
    pub fn publish(&self, change: impl FnOnce(&Snapshot) -> Snapshot) {
        self.tx.send_modify(|current| {
            let mut next = change(current);
            next.generation = current.generation + 1;
            next.ready = true;
            *current = Arc::new(next);
        });
    }
}

/// Why a JWT-SVID could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtSvidError {
    /// The server could not be reached or refused; the workload may retry.
    #[error("server unavailable: {0}")]
    Unavailable(String),
    /// The request was refused as invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Where JWT-SVIDs come from (the manager, which asks the server and
/// caches them per entry and audience until half their lifetime).
#[async_trait]
pub trait JwtSvidSource: Send + Sync + std::fmt::Debug + 'static {
    /// A JWT-SVID for `entry` with `audience` (non-empty).
    async fn fetch_jwt_svid(
        &self,
        entry: &CachedEntry,
        audience: &[String],
    ) -> Result<String, JwtSvidError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: &str, selectors: &[&str]) -> Arc<Identity> {
        Arc::new(Identity {
            entry: CachedEntry {
                id: id.into(),
                spiffe_id: SpiffeId::new(format!("spiffe://example.org/{id}")).unwrap(),
                selectors: selectors
                    .iter()
                    .map(|s| Selector::parse(s).unwrap())
                    .collect(),
                federates_with: vec![],
                hint: String::new(),
                revision_number: 0,
            },
            svid: X509SvidMaterial {
                chain: vec![],
                private_key: Zeroizing::new(vec![1, 2, 3]),
                not_before: SystemTime::UNIX_EPOCH,
                not_after: SystemTime::UNIX_EPOCH,
            },
        })
    }

    #[tokio::test]
    async fn publish_notifies_and_matches() {
        let cache = Cache::new(TrustDomain::new("example.org").unwrap());
        let mut rx = cache.subscribe();
        assert!(!cache.snapshot().ready);
        cache.publish(|s| Snapshot {
            bundle: s.bundle.clone(),
            federated: BTreeMap::new(),
            identities: [
                identity("a", &["unix:uid:1"]),
                identity("b", &["unix:uid:1", "unix:gid:2"]),
            ]
            .into_iter()
            .map(|i| (i.entry.id.clone(), i))
            .collect(),
            generation: 0,
            ready: false,
        });
        rx.changed().await.unwrap();
        let snap = rx.borrow_and_update().clone();
        assert!(snap.ready);
        assert_eq!(snap.generation, 1);
        let attested: BTreeSet<_> = [Selector::parse("unix:uid:1").unwrap()].into();
        let m = snap.matching(&attested);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].entry.id, "a");
        assert!(!format!("{:?}", m[0]).contains("[1, 2, 3]"));
    }
}
