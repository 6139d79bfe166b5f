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
    /// The entry's SVID grants access to the server's admin API (SPIRE's
    /// `admin`): never handed to a delegate.
    pub admin: bool,
    /// The entry may mint downstream CAs (SPIRE's `downstream`): never
    /// handed to a delegate.
    pub downstream: bool,
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

    /// A JWT-SVID for each of `entries` with the same `audience`, in the
    /// order of `entries`, fetched concurrently ([`JWT_FETCHES_IN_FLIGHT`]
    /// at a time) rather than one after another. The first failure, in
    /// that order, is returned with the entry it belongs to.
    async fn fetch_jwt_svids<'e>(
        &self,
        entries: &[&'e CachedEntry],
        audience: &[String],
    ) -> Result<Vec<String>, (&'e CachedEntry, JwtSvidError)> {
        use futures::future::BoxFuture;
        use futures::stream::{self, StreamExt, TryStreamExt};
        type Fetch<'f, 'e> = BoxFuture<'f, Result<String, (&'e CachedEntry, JwtSvidError)>>;
        // Boxed, so that the stream's type names no closure (which would
        // trip the compiler's Send check of this async fn).
        let fetches: Vec<Fetch<'_, 'e>> = entries
            .iter()
            .map(|&entry| -> Fetch<'_, 'e> {
                Box::pin(async move {
                    self.fetch_jwt_svid(entry, audience)
                        .await
                        .map_err(|e| (entry, e))
                })
            })
            .collect();
        stream::iter(fetches)
            .buffered(JWT_FETCHES_IN_FLIGHT)
            .try_collect()
            .await
    }
}

/// The most JWT-SVIDs [`JwtSvidSource::fetch_jwt_svids`] asks for at once:
/// a caller with a hundred identities costs about three server round
/// trips, not a hundred, without flooding the server's connection.
pub const JWT_FETCHES_IN_FLIGHT: usize = 32;

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
                admin: false,
                downstream: false,
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

    /// Answers after a delay that shrinks with the entry's number (so
    /// answers arrive out of order), fails entries named `bad*`, and
    /// counts how many fetches run at once.
    #[derive(Debug, Default)]
    struct SlowJwt {
        running: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl JwtSvidSource for SlowJwt {
        async fn fetch_jwt_svid(
            &self,
            entry: &CachedEntry,
            audience: &[String],
        ) -> Result<String, JwtSvidError> {
            use std::sync::atomic::Ordering::SeqCst;
            self.calls.fetch_add(1, SeqCst);
            let now = self.running.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            let n: u64 = entry
                .id
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(1000 - n)).await;
            self.running.fetch_sub(1, SeqCst);
            if entry.id.starts_with("bad") {
                return Err(JwtSvidError::Invalid(entry.id.clone()));
            }
            Ok(format!("{}:{}", entry.id, audience.join(",")))
        }
    }

    fn entry(id: &str) -> CachedEntry {
        identity(id, &[]).entry.clone()
    }

    #[tokio::test(start_paused = true)]
    async fn jwt_svids_for_many_entries_come_concurrently_in_order() {
        let source = SlowJwt::default();
        let entries: Vec<CachedEntry> = (0..121).map(|i| entry(&format!("e{i}"))).collect();
        let refs: Vec<&CachedEntry> = entries.iter().collect();
        let tokens = source
            .fetch_jwt_svids(&refs, &["aud".to_owned()])
            .await
            .unwrap();
        let expected: Vec<String> = (0..121).map(|i| format!("e{i}:aud")).collect();
        assert_eq!(tokens, expected);
        let most = source.most.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(most, JWT_FETCHES_IN_FLIGHT);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_failure_in_order_is_reported() {
        let source = SlowJwt::default();
        // bad5 answers before bad3 (shorter delay), but bad3 comes first.
        let entries = [entry("e1"), entry("bad3"), entry("bad5"), entry("e7")];
        let refs: Vec<&CachedEntry> = entries.iter().collect();
        let (failed, error) = source
            .fetch_jwt_svids(&refs, &["aud".to_owned()])
            .await
            .unwrap_err();
        assert_eq!(failed.id, "bad3");
        assert!(matches!(error, JwtSvidError::Invalid(_)));
    }
}
