//! The sled store's entry indexes, held in memory: by parent ID, by SPIFFE
//! ID, and by similarity.
//!
//! They are built from the entry records when the store opens and changed
//! after every committed entry write, under the store's entry-write lock.
//! Nothing of them is on disk, so a crash cannot leave them out of step
//! with the records, and an entry write is one sled row (plus its batch's
//! change-log row and counters) instead of five.
//!
//! Memory is kept small for stores of 100,000 entries and more: each entry
//! ID is allocated once and shared by the three indexes; the parent and
//! SPIFFE ID indexes key on a 64-bit hash of the value (with this process's
//! random key), so a lookup yields the entries of that value plus, rarely,
//! those of another value with the same hash, and every caller checks the
//! entries it reads against what it looked for; the similarity index keys
//! on 128 bits of the SHA-256 of the similarity key, where a collision is
//! not a practical concern.

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::datastore::RegistrationEntry;

/// What two similar entries share (see [`RegistrationEntry::similarity_key`]),
/// as 128 bits of its SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Similar([u8; 16]);

impl Similar {
    pub fn of(entry: &RegistrationEntry) -> Self {
        let digest = Sha256::digest(entry.similarity_key());
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        Similar(key)
    }
}

/// Which value an index lookup is by.
#[derive(Debug, Clone, Copy)]
pub(super) enum By {
    Parent,
    SpiffeId,
}

/// The three indexes.
#[derive(Debug, Default)]
pub(super) struct EntryIndex {
    hasher: std::collections::hash_map::RandomState,
    by_parent: BTreeSet<(u64, Arc<str>)>,
    by_spiffe_id: BTreeSet<(u64, Arc<str>)>,
    similar: HashMap<Similar, Arc<str>>,
    /// Every value hashes alike (tests of the callers' checks).
    #[cfg(test)]
    collide: bool,
}

impl EntryIndex {
    /// An index in which every parent and SPIFFE ID has the same hash.
    #[cfg(test)]
    pub fn colliding() -> Self {
        EntryIndex {
            collide: true,
            ..Default::default()
        }
    }

    fn hash(&self, value: &str) -> u64 {
        #[cfg(test)]
        if self.collide {
            return 0;
        }
        self.hasher.hash_one(value)
    }

    fn tree(&self, by: By) -> &BTreeSet<(u64, Arc<str>)> {
        match by {
            By::Parent => &self.by_parent,
            By::SpiffeId => &self.by_spiffe_id,
        }
    }

    /// Adds an entry. Returns the ID of another entry already filed as
    /// similar to it, if any (writes refuse that, so it is seen only when
    /// building from a store that already held duplicates), in which case
    /// the similarity index keeps the earlier one.
    pub fn insert(&mut self, entry: &RegistrationEntry) -> Option<Arc<str>> {
        self.insert_as(entry, Similar::of(entry))
    }

    /// [`Self::insert`] of an entry whose similarity the caller has
    /// already worked out.
    pub fn insert_as(&mut self, entry: &RegistrationEntry, similar: Similar) -> Option<Arc<str>> {
        self.file(&entry.id, &entry.parent_id, &entry.spiffe_id, similar)
    }

    fn file(
        &mut self,
        id: &str,
        parent: &str,
        spiffe_id: &str,
        similar: Similar,
    ) -> Option<Arc<str>> {
        let id: Arc<str> = Arc::from(id);
        self.by_parent.insert((self.hash(parent), id.clone()));
        self.by_spiffe_id.insert((self.hash(spiffe_id), id.clone()));
        match self.similar.entry(similar) {
            std::collections::hash_map::Entry::Occupied(other) => Some(other.get().clone()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(id);
                None
            }
        }
    }

    /// Removes an entry as it was stored.
    pub fn remove_entry(&mut self, entry: &RegistrationEntry) {
        let id: Arc<str> = Arc::from(entry.id.as_str());
        self.by_parent
            .remove(&(self.hash(&entry.parent_id), id.clone()));
        self.by_spiffe_id
            .remove(&(self.hash(&entry.spiffe_id), id.clone()));
        let similar = Similar::of(entry);
        if self.similar.get(&similar).is_some_and(|other| *other == id) {
            self.similar.remove(&similar);
        }
    }

    /// The entry filed as similar to `similar`.
    pub fn similar(&self, similar: &Similar) -> Option<&Arc<str>> {
        self.similar.get(similar)
    }

    /// Up to `max` IDs of entries whose parent or SPIFFE ID (`by`) may be
    /// `value` (see the module docs: callers check), in ID order, starting
    /// after `after`.
    pub fn ids(&self, by: By, value: &str, after: Option<&str>, max: usize) -> Vec<Arc<str>> {
        let hash = self.hash(value);
        let start = match after {
            Some(after) => Bound::Excluded((hash, Arc::from(after))),
            None => Bound::Included((hash, Arc::from(""))),
        };
        self.tree(by)
            .range((start, Bound::Unbounded))
            .take_while(|(h, _)| *h == hash)
            .take(max)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::StoredSelector;

    fn entry(id: &str, parent: &str, spiffe_id: &str) -> RegistrationEntry {
        RegistrationEntry {
            id: id.into(),
            parent_id: parent.into(),
            spiffe_id: spiffe_id.into(),
            selectors: vec![StoredSelector {
                kind: "unix".into(),
                value: format!("uid:{id}"),
            }],
            ..Default::default()
        }
    }

    fn ids(index: &EntryIndex, by: By, value: &str, after: Option<&str>) -> Vec<String> {
        index
            .ids(by, value, after, usize::MAX)
            .iter()
            .map(|id| id.to_string())
            .collect()
    }

    #[test]
    fn lookups_are_in_id_order_from_after() {
        let mut index = EntryIndex::default();
        for id in ["c", "a", "b"] {
            index.insert(&entry(id, "p", &format!("s{id}")));
        }
        index.insert(&entry("d", "q", "sa"));
        assert_eq!(ids(&index, By::Parent, "p", None), ["a", "b", "c"]);
        assert_eq!(ids(&index, By::Parent, "p", Some("a")), ["b", "c"]);
        assert_eq!(ids(&index, By::Parent, "q", None), ["d"]);
        assert_eq!(ids(&index, By::SpiffeId, "sa", None), ["a", "d"]);
        assert!(ids(&index, By::Parent, "none", None).is_empty());
        assert_eq!(index.ids(By::Parent, "p", None, 2).len(), 2);
    }

    #[test]
    fn removal_forgets_every_index() {
        let mut index = EntryIndex::default();
        let a = entry("a", "p", "s");
        index.insert(&a);
        assert_eq!(
            index.similar(&Similar::of(&a)).map(|id| id.to_string()),
            Some("a".into())
        );
        index.remove_entry(&a);
        assert!(index.similar(&Similar::of(&a)).is_none());
        assert!(ids(&index, By::Parent, "p", None).is_empty());
        assert!(ids(&index, By::SpiffeId, "s", None).is_empty());
    }

    #[test]
    fn removing_a_duplicate_keeps_the_similarity_of_the_first() {
        let mut index = EntryIndex::default();
        let first = entry("a", "p", "s");
        let mut second = first.clone();
        second.id = "b".into();
        assert!(index.insert(&first).is_none());
        assert_eq!(index.insert(&second).as_deref(), Some("a"));
        index.remove_entry(&second);
        assert_eq!(
            index.similar(&Similar::of(&first)).map(|s| s.to_string()),
            Some("a".into())
        );
    }
}
