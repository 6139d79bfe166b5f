//! Which identities a caller's selectors get, without testing every entry.
//!
//! [`Snapshot::matching`] tests each identity's selectors against the
//! caller's: one set lookup per entry selector, for every entry the agent
//! holds, on every call. A [`MatchIndex`] is built once per snapshot
//! (selector → the identities that require it, and how many distinct
//! selectors each requires); a call then only counts, for each of its own
//! selectors, the identities that require it: an identity matches when all
//! its selectors were counted. The answer is the same as
//! [`Snapshot::matching`]'s, in the same order (by entry ID).
//!
//! [`Indexes`] keeps the index of the latest snapshot seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use spinel_spiffe::Selector;

use crate::cache::{Identity, Snapshot};

/// The identities of one snapshot by selector.
#[derive(Debug)]
pub(crate) struct MatchIndex {
    generation: u64,
    /// Identities in the snapshot's order (by entry ID).
    identities: Vec<Arc<Identity>>,
    /// How many distinct selectors each identity requires.
    required: Vec<u32>,
    /// Selector → positions in `identities` of those requiring it.
    by_selector: HashMap<Selector, Vec<u32>>,
}

impl MatchIndex {
    /// Indexes `snapshot`.
    pub(crate) fn build(snapshot: &Snapshot) -> MatchIndex {
        let identities: Vec<Arc<Identity>> = snapshot.identities.values().cloned().collect();
        let mut required = Vec::with_capacity(identities.len());
        let mut by_selector: HashMap<Selector, Vec<u32>> = HashMap::new();
        for (at, identity) in (0u32..).zip(&identities) {
            let distinct: BTreeSet<&Selector> = identity.entry.selectors.iter().collect();
            required.push(u32::try_from(distinct.len()).unwrap_or(u32::MAX));
            for s in distinct {
                by_selector.entry(s.clone()).or_default().push(at);
            }
        }
        MatchIndex {
            generation: snapshot.generation,
            identities,
            required,
            by_selector,
        }
    }

    /// Identities whose selectors are all in `attested`, by entry ID (an
    /// identity without selectors matches no one, as in
    /// [`Snapshot::matching`]).
    pub(crate) fn matching(&self, attested: &BTreeSet<Selector>) -> Vec<Arc<Identity>> {
        let mut counted = vec![0u32; self.identities.len()];
        let mut hits = Vec::new();
        for s in attested {
            for at in self.by_selector.get(s).into_iter().flatten() {
                let i = *at as usize;
                if let (Some(n), Some(need)) = (counted.get_mut(i), self.required.get(i)) {
                    *n += 1;
                    if *n == *need {
                        hits.push(*at);
                    }
                }
            }
        }
        hits.sort_unstable();
        hits.iter()
            .filter_map(|at| self.identities.get(*at as usize).cloned())
            .collect()
    }
}

/// The index of the latest snapshot asked about.
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    latest: Mutex<Option<Arc<MatchIndex>>>,
}

impl Indexes {
    /// The index of `snapshot`, built if it is newer than the one kept (an
    /// older snapshot, still in use by a slow call, gets an index of its
    /// own that is not kept).
    pub(crate) fn of(&self, snapshot: &Snapshot) -> Arc<MatchIndex> {
        {
            let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
            match latest.as_ref() {
                Some(index) if index.generation == snapshot.generation => return index.clone(),
                Some(index) if index.generation > snapshot.generation => {
                    return Arc::new(MatchIndex::build(snapshot))
                }
                _ => {}
            }
        }
        let built = Arc::new(MatchIndex::build(snapshot));
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if latest
            .as_ref()
            .is_none_or(|index| index.generation < built.generation)
        {
            *latest = Some(built.clone());
        }
        built
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use spinel_spiffe::{SpiffeId, TrustBundle, TrustDomain};
    use zeroize::Zeroizing;

    use super::*;
    use crate::cache::{CachedEntry, X509SvidMaterial};

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    fn snapshot(generation: u64, entries: &[(&str, &[&str])]) -> Snapshot {
        let identities = entries
            .iter()
            .map(|(id, selectors)| {
                let entry = CachedEntry {
                    id: (*id).into(),
                    spiffe_id: SpiffeId::new(format!("spiffe://example.org/{id}")).unwrap(),
                    selectors: selectors.iter().map(|s| sel(s)).collect(),
                    federates_with: vec![],
                    hint: String::new(),
                    revision_number: 0,
                    admin: false,
                    downstream: false,
                };
                let svid = X509SvidMaterial {
                    chain: vec![],
                    private_key: Zeroizing::new(vec![]),
                    not_before: SystemTime::UNIX_EPOCH,
                    not_after: SystemTime::UNIX_EPOCH,
                };
                ((*id).to_owned(), Arc::new(Identity { entry, svid }))
            })
            .collect();
        Snapshot {
            bundle: TrustBundle::new(TrustDomain::new("example.org").unwrap()),
            federated: BTreeMap::new(),
            identities,
            generation,
            ready: true,
        }
    }

    fn ids(list: &[Arc<Identity>]) -> Vec<String> {
        list.iter().map(|i| i.entry.id.clone()).collect()
    }

    #[test]
    fn same_answer_as_testing_every_entry() {
        let snap = snapshot(
            1,
            &[
                ("a", &["unix:uid:1"]),
                ("b", &["unix:uid:1", "unix:gid:2"]),
                ("c", &["unix:gid:2", "unix:uid:1", "unix:gid:2"]),
                ("d", &["unix:uid:2"]),
                ("e", &[]),
                ("f", &["k8s:ns:x", "unix:uid:1", "unix:gid:3"]),
            ],
        );
        let index = MatchIndex::build(&snap);
        let callers: &[&[&str]] = &[
            &[],
            &["unix:uid:1"],
            &["unix:uid:1", "unix:gid:2"],
            &["unix:gid:2"],
            &["unix:uid:1", "unix:uid:2", "unix:gid:2", "k8s:ns:x"],
            &["unix:uid:1", "unix:gid:3", "k8s:ns:x"],
            &["unix:uid:9"],
        ];
        for caller in callers {
            let attested: BTreeSet<Selector> = caller.iter().map(|s| sel(s)).collect();
            assert_eq!(
                ids(&index.matching(&attested)),
                ids(&snap.matching(&attested)),
                "caller {caller:?}"
            );
        }
        let all: BTreeSet<Selector> = ["unix:uid:1", "unix:uid:2", "unix:gid:2"]
            .iter()
            .map(|s| sel(s))
            .collect();
        assert_eq!(ids(&index.matching(&all)), ["a", "b", "c", "d"]);
    }

    #[test]
    fn kept_per_snapshot() {
        let indexes = Indexes::default();
        let one = snapshot(1, &[("a", &["unix:uid:1"])]);
        let two = snapshot(2, &[("b", &["unix:uid:1"])]);
        let first = indexes.of(&one);
        assert!(Arc::ptr_eq(&first, &indexes.of(&one)));
        let attested: BTreeSet<Selector> = [sel("unix:uid:1")].into();
        assert_eq!(ids(&indexes.of(&two).matching(&attested)), ["b"]);
        // An older snapshot is answered from its own entries.
        assert_eq!(ids(&indexes.of(&one).matching(&attested)), ["a"]);
        assert_eq!(ids(&indexes.of(&two).matching(&attested)), ["b"]);
    }
}
