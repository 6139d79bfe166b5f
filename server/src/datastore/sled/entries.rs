//! Registration entries: each write is one sled transaction over the entry
//! records, the change log and the counters; the parent, SPIFFE ID and
//! similarity indexes are in memory ([`super::index`]) and follow every
//! committed write.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use ::sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use ::sled::Transactional;

use super::codec::{
    backend, decode_entry, decode_ids, decode_u64, encode_entry, encode_ids, encode_u64,
};
use super::index::{By, EntryIndex, Similar};
use super::{
    Trees, CHANGES, CHANGES_FLOOR_KEY, CHANGES_KEPT, ENTRIES_COUNT_KEY, ENTRIES_REVISION_KEY, META,
};
use crate::datastore::lineage::check_parent_cycle;
use crate::datastore::{DataStoreError, EntryFilter, RegistrationEntry, Result};

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<DataStoreError>>;

fn abort(e: DataStoreError) -> ConflictableTransactionError<DataStoreError> {
    ConflictableTransactionError::Abort(e)
}

fn already_exists(id: &[u8]) -> DataStoreError {
    DataStoreError::AlreadyExists {
        kind: "entry",
        id: String::from_utf8_lossy(id).into_owned(),
    }
}

fn entry_not_found(id: &str) -> ConflictableTransactionError<DataStoreError> {
    abort(DataStoreError::NotFound {
        kind: "entry",
        id: id.to_owned(),
    })
}

/// The trees an entry write touches, inside one transaction.
struct EntryTx<'a> {
    entries: &'a TransactionalTree,
    meta: &'a TransactionalTree,
    changes: &'a TransactionalTree,
}

impl EntryTx<'_> {
    /// The stored entry `id`, `NotFound` if absent.
    fn existing(&self, id: &str) -> TxResult<RegistrationEntry> {
        let bytes = self
            .entries
            .get(id.as_bytes())?
            .ok_or_else(|| entry_not_found(id))?;
        decode_entry(id.as_bytes(), &bytes).map_err(abort)
    }

    fn put(&self, entry: &RegistrationEntry) -> TxResult<()> {
        let value = encode_entry(entry).map_err(abort)?;
        self.entries.insert(entry.id.as_bytes(), value)?;
        Ok(())
    }

    /// Gives each ID of `ids` its own new revision, in order, files them
    /// in one change-log row under the last of them, and moves the entry
    /// count by `added`.
    fn bump(&self, ids: &[&str], added: i64) -> TxResult<()> {
        let read = |key: &[u8]| -> TxResult<u64> {
            let bytes = self.meta.get(key)?;
            decode_u64(META, key, bytes.as_deref()).map_err(abort)
        };
        let written = u64::try_from(ids.len()).unwrap_or(u64::MAX);
        let revision = read(ENTRIES_REVISION_KEY)?.saturating_add(written);
        self.changes
            .insert(&encode_u64(revision)[..], encode_ids(ids.iter().copied()))?;
        let count = read(ENTRIES_COUNT_KEY)?.saturating_add_signed(added);
        self.meta
            .insert(ENTRIES_REVISION_KEY, &encode_u64(revision)[..])?;
        self.meta
            .insert(ENTRIES_COUNT_KEY, &encode_u64(count)[..])?;
        Ok(())
    }
}

/// The entries of one create call accepted so far: the checks of its later
/// entries must see them, and the store does not hold them yet.
#[derive(Default)]
struct Accepted {
    /// In call order, each with its similarity.
    entries: Vec<(RegistrationEntry, Similar)>,
    ids: HashSet<String>,
    /// Similarity -> entry ID.
    similar: HashMap<Similar, String>,
    /// SPIFFE ID -> (entry ID, parent ID), as `Trees::parents_of`.
    parents: HashMap<String, Vec<(String, String)>>,
}

impl Accepted {
    fn push(&mut self, entry: RegistrationEntry, similar: Similar) {
        self.ids.insert(entry.id.clone());
        self.similar.insert(similar, entry.id.clone());
        self.parents
            .entry(entry.spiffe_id.clone())
            .or_default()
            .push((entry.id.clone(), entry.parent_id.clone()));
        self.entries.push((entry, similar));
    }
}

impl Trees {
    /// Runs `f` as one transaction over the entry trees; retried by sled on
    /// conflict, so `f` must not have side effects outside the trees.
    fn entry_tx<T>(&self, f: impl Fn(&EntryTx<'_>) -> TxResult<T>) -> Result<T> {
        (&self.entries, &self.meta, &self.changes)
            .transaction(|(entries, meta, changes)| {
                f(&EntryTx {
                    entries,
                    meta,
                    changes,
                })
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => backend("entry transaction", e),
            })
    }

    /// Serializes entry writes (see `Trees::entry_writes`). A panic while
    /// it was held left no partial write (the transaction is all or
    /// nothing, and the indexes change only after it), so a poisoned lock
    /// is taken over.
    fn lock_entry_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.entry_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, EntryIndex> {
        // Changed only by whole inserts and removals: a panic cannot leave
        // it half-changed in a way a reader could trip over.
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, EntryIndex> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `(entry ID, parent ID)` of the entries whose SPIFFE ID is `id`.
    fn parents_of(&self, id: &str) -> Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        self.walk_index(By::SpiffeId, id, None, &mut |e| {
            if e.spiffe_id == id {
                found.push((e.id, e.parent_id));
            }
            true
        })?;
        Ok(found)
    }

    pub(super) fn create_entry(
        &self,
        entry: RegistrationEntry,
        now: i64,
    ) -> Result<RegistrationEntry> {
        self.create_entries(vec![entry], now)?
            .pop()
            .unwrap_or_else(|| Err(backend("creating an entry", "no outcome")))
    }

    /// Creates `entries` in order, each checked as a lone create would be
    /// against the store and the entries of the call accepted before it
    /// (a later entry similar to an earlier one is `AlreadyExists`, a
    /// cycle may close inside the call). The accepted entries are written
    /// in one transaction, each with its own revision, in one change-log
    /// row: a crash leaves all of them or none. The outer `Err` (the write
    /// failed) means none was created.
    ///
    /// The checks read the store and the indexes outside the transaction
    /// (sled's transactions cannot scan, and hold sled's global lock while
    /// they run). That is safe under `entry_writes`: every entry write
    /// holds it.
    pub(super) fn create_entries(
        &self,
        entries: Vec<RegistrationEntry>,
        now: i64,
    ) -> Result<Vec<Result<RegistrationEntry>>> {
        let _serialized = self.lock_entry_writes();
        let mut accepted = Accepted::default();
        let outcomes: Vec<Result<RegistrationEntry>> = entries
            .into_iter()
            .map(|entry| self.admit(entry, now, &mut accepted))
            .collect();
        if accepted.entries.is_empty() {
            return Ok(outcomes);
        }
        let added = i64::try_from(accepted.entries.len()).unwrap_or(i64::MAX);
        let ids: Vec<&str> = accepted
            .entries
            .iter()
            .map(|(e, _)| e.id.as_str())
            .collect();
        self.entry_tx(|tx| {
            for (entry, _) in &accepted.entries {
                tx.put(entry)?;
            }
            tx.bump(&ids, added)
        })?;
        let mut index = self.write_index();
        for (entry, similar) in &accepted.entries {
            index.insert_as(entry, *similar);
        }
        drop(index);
        self.prune_changes()?;
        Ok(outcomes)
    }

    /// Checks one entry of a create call and, when it passes, completes it
    /// (ID, `created_at`, revision 0) and adds it to `accepted`.
    fn admit(
        &self,
        mut entry: RegistrationEntry,
        now: i64,
        accepted: &mut Accepted,
    ) -> Result<RegistrationEntry> {
        check_parent_cycle(&entry, |id| {
            let mut found = self.parents_of(id)?;
            if let Some(more) = accepted.parents.get(id) {
                found.extend(more.iter().cloned());
            }
            Ok(found)
        })?;
        if entry.id.is_empty() {
            entry.id = uuid::Uuid::new_v4().to_string();
        }
        if entry.created_at == 0 {
            entry.created_at = now;
        }
        entry.revision_number = 0;
        let similar = Similar::of(&entry);
        if let Some(other) = accepted.similar.get(&similar) {
            return Err(already_exists(other.as_bytes()));
        }
        if let Some(other) = self.read_index().similar(&similar) {
            return Err(already_exists(other.as_bytes()));
        }
        if accepted.ids.contains(&entry.id)
            || self
                .entries
                .contains_key(entry.id.as_bytes())
                .map_err(|e| backend("reading entries", e))?
        {
            return Err(already_exists(entry.id.as_bytes()));
        }
        accepted.push(entry.clone(), similar);
        Ok(entry)
    }

    /// Keeps the stored `created_at`; the revision number is the stored one
    /// plus one, whatever `entry` says.
    pub(super) fn update_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry> {
        let _serialized = self.lock_entry_writes();
        check_parent_cycle(&entry, |id| self.parents_of(id))?;
        let similar = Similar::of(&entry);
        if let Some(other) = self.read_index().similar(&similar) {
            if **other != *entry.id {
                return Err(already_exists(other.as_bytes()));
            }
        }
        let (old, next) = self.entry_tx(|tx| {
            let old = tx.existing(&entry.id)?;
            let mut next = entry.clone();
            next.created_at = old.created_at;
            next.revision_number = old.revision_number.saturating_add(1);
            tx.put(&next)?;
            tx.bump(&[next.id.as_str()], 0)?;
            Ok((old, next))
        })?;
        let mut index = self.write_index();
        index.remove_entry(&old);
        // `next` differs from `entry` only in what similarity ignores.
        index.insert_as(&next, similar);
        drop(index);
        self.prune_changes()?;
        Ok(next)
    }

    pub(super) fn delete_entry(&self, id: &str) -> Result<RegistrationEntry> {
        let _serialized = self.lock_entry_writes();
        let old = self.entry_tx(|tx| {
            let old = tx.existing(id)?;
            tx.entries.remove(id.as_bytes())?;
            tx.bump(&[id], -1)?;
            Ok(old)
        })?;
        self.write_index().remove_entry(&old);
        self.prune_changes()?;
        Ok(old)
    }

    pub(super) fn get_entry(&self, id: &str) -> Result<Option<RegistrationEntry>> {
        match self
            .entries
            .get(id.as_bytes())
            .map_err(|e| backend("reading entries", e))?
        {
            Some(bytes) => decode_entry(id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<RegistrationEntry>> {
        self.list_entries_page(filter, None, usize::MAX)
    }

    /// Walks the narrowest index the filter allows (or the table), in ID
    /// order from just after `after`, decoding entries only until `limit`
    /// of them match.
    pub(super) fn list_entries_page(
        &self,
        filter: &EntryFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RegistrationEntry>> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let mut keep = |entry: RegistrationEntry| {
            if filter.matches(&entry) {
                found.push(entry);
            }
            found.len() < limit
        };
        if let Some(parent_id) = &filter.parent_id {
            self.walk_index(By::Parent, parent_id, after, &mut keep)?;
        } else if let Some(spiffe_id) = &filter.spiffe_id {
            self.walk_index(By::SpiffeId, spiffe_id, after, &mut keep)?;
        } else {
            let start = match after {
                Some(after) => Bound::Excluded(after.as_bytes().to_vec()),
                None => Bound::Unbounded,
            };
            for item in self.entries.range((start, Bound::Unbounded)) {
                let (key, bytes) = item.map_err(|e| backend("reading entries", e))?;
                if !keep(decode_entry(&key, &bytes)?) {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Feeds `keep` the entries an index lists under `value` whose ID sorts
    /// after `after`, in ID order, until it answers false. The index may
    /// list entries of another value with the same hash, and an entry may
    /// have changed since its ID was read: the caller checks what it gets.
    fn walk_index(
        &self,
        by: By,
        value: &str,
        after: Option<&str>,
        keep: &mut dyn FnMut(RegistrationEntry) -> bool,
    ) -> Result<()> {
        /// IDs taken from the index per lock: a page of a large listing
        /// does not copy every ID of the parent.
        const STEP: usize = 256;
        let mut after: Option<Arc<str>> = after.map(Arc::from);
        loop {
            let ids = self.read_index().ids(by, value, after.as_deref(), STEP);
            let Some(last) = ids.last().cloned() else {
                return Ok(());
            };
            for id in &ids {
                // Gone since the index was read: a concurrent delete.
                let Some(bytes) = self
                    .entries
                    .get(id.as_bytes())
                    .map_err(|e| backend("reading entries", e))?
                else {
                    continue;
                };
                if !keep(decode_entry(id.as_bytes(), &bytes)?) {
                    return Ok(());
                }
            }
            if ids.len() < STEP {
                return Ok(());
            }
            after = Some(last);
        }
    }

    pub(super) fn count_entries(&self) -> Result<u64> {
        self.counter(ENTRIES_COUNT_KEY)
    }

    pub(super) fn entries_revision(&self) -> Result<u64> {
        self.counter(ENTRIES_REVISION_KEY)
    }

    fn counter(&self, key: &[u8]) -> Result<u64> {
        let bytes = self.meta.get(key).map_err(|e| backend("reading meta", e))?;
        decode_u64(META, key, bytes.as_deref())
    }
}

/// The entry change log: which entry each revision touched.
impl Trees {
    /// The IDs of the entries created, updated or deleted after `revision`
    /// (each once), or `None` when the log no longer reaches back that far
    /// or `revision` is not one of this store's.
    pub(super) fn entry_changes_since(&self, revision: u64) -> Result<Option<Vec<String>>> {
        if revision > self.entries_revision()? {
            return Ok(None);
        }
        let mut ids = BTreeSet::new();
        let from = encode_u64(revision.saturating_add(1));
        for row in self.changes.range(&from[..]..) {
            let (key, value) = row.map_err(|e| backend("reading the entry change log", e))?;
            // A row holds the IDs of consecutive revisions, the last being
            // its key.
            let last = decode_u64(CHANGES, &key, Some(&key))?;
            let written = decode_ids(CHANGES, &key, &value)?;
            let count = u64::try_from(written.len()).unwrap_or(u64::MAX);
            let first = last.saturating_add(1).saturating_sub(count);
            ids.extend(
                (first..)
                    .zip(written)
                    .filter(|(r, _)| *r > revision)
                    .map(|(_, id)| id),
            );
        }
        // The floor is read after the log: pruning raises it before it
        // removes anything, so a scan that raced a prune is caught here.
        if revision < self.counter(CHANGES_FLOOR_KEY)? {
            return Ok(None);
        }
        Ok(Some(ids.into_iter().collect()))
    }

    /// Keeps the change log at most twice [`CHANGES_KEPT`] long: when it
    /// grows past that, the floor rises to keep the newest `CHANGES_KEPT`
    /// and the older rows go. Cheap otherwise (two key reads).
    pub(super) fn prune_changes(&self) -> Result<()> {
        self.prune_changes_keeping(CHANGES_KEPT)
    }

    /// [`Self::prune_changes`] keeping at least `kept` changes.
    pub(super) fn prune_changes_keeping(&self, kept: u64) -> Result<()> {
        let key_of = |row: Option<(::sled::IVec, ::sled::IVec)>| -> Result<Option<u64>> {
            row.map(|(k, _)| decode_u64(CHANGES, &k, Some(&k)))
                .transpose()
        };
        let read = |e| backend("reading the entry change log", e);
        let (Some(first), Some(last)) = (
            key_of(self.changes.first().map_err(read)?)?,
            key_of(self.changes.last().map_err(read)?)?,
        ) else {
            return Ok(());
        };
        if last.saturating_sub(first) < kept.saturating_mul(2) {
            return Ok(());
        }
        let floor = last.saturating_sub(kept);
        let write = |e| backend("pruning the entry change log", e);
        self.meta
            .insert(CHANGES_FLOOR_KEY, &encode_u64(floor)[..])
            .map_err(write)?;
        for row in self
            .changes
            .range(..&encode_u64(floor.saturating_add(1))[..])
        {
            let (key, _) = row.map_err(read)?;
            self.changes.remove(key).map_err(write)?;
        }
        Ok(())
    }

    /// Starts the change log of a store that has none (new, or written
    /// before the log existed): complete from the current revision on.
    pub(super) fn init_changes(&self) -> Result<bool> {
        let present = self
            .meta
            .contains_key(CHANGES_FLOOR_KEY)
            .map_err(|e| backend("reading meta", e))?;
        if present {
            return Ok(false);
        }
        let revision = self.entries_revision()?;
        self.meta
            .insert(CHANGES_FLOOR_KEY, &encode_u64(revision)[..])
            .map_err(|e| backend("starting the entry change log", e))?;
        Ok(true)
    }
}

impl Trees {
    /// Builds the in-memory indexes from the entry records (at open).
    /// Returns how many entries were indexed.
    pub(super) fn build_index(&self) -> Result<u64> {
        let mut index = EntryIndex::default();
        let mut count = 0u64;
        for item in self.entries.iter() {
            let (key, bytes) = item.map_err(|e| backend("reading entries", e))?;
            let entry = match decode_entry(&key, &bytes) {
                Ok(entry) => entry,
                Err(e) => {
                    // Left out of the indexes, not fatal: reads of it
                    // report it, and the server still starts.
                    tracing::error!(error = %e, "entry record unreadable; not indexed");
                    continue;
                }
            };
            if let Some(first) = index.insert(&entry) {
                tracing::warn!(entry_id = %entry.id, similar_to = %first, "entry duplicates an earlier one");
            }
            count += 1;
        }
        *self.write_index() = index;
        Ok(count)
    }

    /// Sets the entry count to `count` and starts a new revision with an
    /// empty change log (for a store written before the layout was
    /// versioned, whose counters may be missing). Not one transaction: it
    /// runs before the store is in use, and a crash midway leaves the store
    /// unversioned, so the next open runs it again.
    pub(super) fn recount_entries(&self, count: u64) -> Result<()> {
        let write = |key: &[u8], value: u64| {
            self.meta
                .insert(key, &encode_u64(value)[..])
                .map(drop)
                .map_err(|e| backend("recounting entries", e))
        };
        let revision = self.entries_revision()?.saturating_add(1);
        write(ENTRIES_COUNT_KEY, count)?;
        write(ENTRIES_REVISION_KEY, revision)?;
        // No change before this revision is in the log.
        self.restart_changes(revision)
    }

    /// Empties the change log and sets its floor to `revision`: caches
    /// behind it read everything again.
    pub(super) fn restart_changes(&self, revision: u64) -> Result<()> {
        self.changes
            .clear()
            .map_err(|e| backend("clearing the entry change log", e))?;
        self.meta
            .insert(CHANGES_FLOOR_KEY, &encode_u64(revision)[..])
            .map(drop)
            .map_err(|e| backend("restarting the entry change log", e))
    }
}
