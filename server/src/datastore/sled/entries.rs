//! Registration entries: writes in one transaction with their index rows and
//! counters; reads through an index when the filter names a parent or a
//! SPIFFE ID.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;

use ::sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use ::sled::{Transactional, Tree};

use super::codec::{
    backend, decode, decode_u64, encode, encode_u64, id_from_index_key, index_key, index_prefix,
    similar_key,
};
use super::{
    Trees, BY_PARENT, BY_SPIFFE_ID, CHANGES, CHANGES_FLOOR_KEY, CHANGES_KEPT, ENTRIES,
    ENTRIES_COUNT_KEY, ENTRIES_REVISION_KEY, META,
};
use crate::datastore::lineage::check_parent_cycle;
use crate::datastore::{DataStoreError, EntryFilter, RegistrationEntry, Result};

/// Index rows carry everything in their key.
const NO_VALUE: &[u8] = &[];

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

fn entry_exists(id: &[u8]) -> ConflictableTransactionError<DataStoreError> {
    abort(already_exists(id))
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
    by_parent: &'a TransactionalTree,
    by_spiffe_id: &'a TransactionalTree,
    similar: &'a TransactionalTree,
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
        decode(ENTRIES, id.as_bytes(), &bytes).map_err(abort)
    }

    /// Refuses `entry` if another entry (not `entry.id`) is similar to it.
    fn check_similar(&self, entry: &RegistrationEntry, similar: &[u8]) -> TxResult<()> {
        match self.similar.get(similar)? {
            Some(other) if other.as_ref() != entry.id.as_bytes() => Err(entry_exists(&other)),
            _ => Ok(()),
        }
    }

    fn put(&self, entry: &RegistrationEntry, similar: &[u8]) -> TxResult<()> {
        let value = encode("entry", entry).map_err(abort)?;
        self.entries.insert(entry.id.as_bytes(), value)?;
        self.by_parent
            .insert(index_key(&entry.parent_id, &entry.id), NO_VALUE)?;
        self.by_spiffe_id
            .insert(index_key(&entry.spiffe_id, &entry.id), NO_VALUE)?;
        self.similar.insert(similar, entry.id.as_bytes())?;
        Ok(())
    }

    fn unindex(&self, entry: &RegistrationEntry) -> TxResult<()> {
        self.by_parent
            .remove(index_key(&entry.parent_id, &entry.id))?;
        self.by_spiffe_id
            .remove(index_key(&entry.spiffe_id, &entry.id))?;
        self.similar.remove(similar_key(entry))?;
        Ok(())
    }

    /// Bumps the revision counter once per ID of `ids`, files each entry in
    /// the change log under its own new revision (in order), and moves the
    /// entry count by `added`.
    fn bump<'i>(&self, ids: impl IntoIterator<Item = &'i str>, added: i64) -> TxResult<()> {
        let read = |key: &[u8]| -> TxResult<u64> {
            let bytes = self.meta.get(key)?;
            decode_u64(META, key, bytes.as_deref()).map_err(abort)
        };
        let mut revision = read(ENTRIES_REVISION_KEY)?;
        for id in ids {
            revision = revision.saturating_add(1);
            self.changes
                .insert(&encode_u64(revision)[..], id.as_bytes())?;
        }
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
    /// In call order, each with its `similar_key`.
    entries: Vec<(RegistrationEntry, Vec<u8>)>,
    ids: HashSet<String>,
    /// similar key -> entry ID.
    similar: HashMap<Vec<u8>, String>,
    /// SPIFFE ID -> (entry ID, parent ID), as `Trees::parents_of`.
    parents: HashMap<String, Vec<(String, String)>>,
}

impl Accepted {
    fn push(&mut self, entry: RegistrationEntry, similar: Vec<u8>) {
        self.ids.insert(entry.id.clone());
        self.similar.insert(similar.clone(), entry.id.clone());
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
        (
            &self.entries,
            &self.by_parent,
            &self.by_spiffe_id,
            &self.similar,
            &self.meta,
            &self.changes,
        )
            .transaction(
                |(entries, by_parent, by_spiffe_id, similar, meta, changes)| {
                    f(&EntryTx {
                        entries,
                        by_parent,
                        by_spiffe_id,
                        similar,
                        meta,
                        changes,
                    })
                },
            )
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => backend("entry transaction", e),
            })
    }

    /// Serializes entry creates and updates (see `Trees::entry_writes`). A
    /// panic while it was held left no partial write (the transaction is
    /// all or nothing), so a poisoned lock is taken over.
    fn lock_entry_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.entry_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `(entry ID, parent ID)` of the entries whose SPIFFE ID is `id`.
    fn parents_of(&self, id: &str) -> Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        self.walk_index(&self.by_spiffe_id, BY_SPIFFE_ID, id, None, &mut |e| {
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
    /// in one transaction, each with its own revision in the change log:
    /// a crash leaves all of them or none. The outer `Err` (the write
    /// failed) means none was created.
    ///
    /// The checks read the store outside the transaction (sled's
    /// transactions cannot scan, and hold sled's global lock while they
    /// run). That is safe under `entry_writes`: every write that adds an
    /// entry or an index row holds it, and a delete in between only
    /// removes what a check may have relied on to refuse an entry.
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
        self.entry_tx(|tx| {
            for (entry, similar) in &accepted.entries {
                tx.put(entry, similar)?;
            }
            tx.bump(accepted.entries.iter().map(|(e, _)| e.id.as_str()), added)
        })?;
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
        let similar = similar_key(&entry);
        if let Some(other) = accepted.similar.get(&similar) {
            return Err(already_exists(other.as_bytes()));
        }
        let read = |e| backend("reading entries", e);
        if let Some(other) = self.similar.get(&similar).map_err(read)? {
            return Err(already_exists(&other));
        }
        if accepted.ids.contains(&entry.id)
            || self
                .entries
                .contains_key(entry.id.as_bytes())
                .map_err(read)?
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
        self.entry_tx(|tx| {
            let old = tx.existing(&entry.id)?;
            let mut next = entry.clone();
            next.created_at = old.created_at;
            next.revision_number = old.revision_number.saturating_add(1);
            let similar = similar_key(&next);
            tx.check_similar(&next, &similar)?;
            tx.unindex(&old)?;
            tx.put(&next, &similar)?;
            tx.bump([next.id.as_str()], 0)?;
            Ok(next)
        })
        .and_then(|next| self.prune_changes().map(|()| next))
    }

    pub(super) fn delete_entry(&self, id: &str) -> Result<RegistrationEntry> {
        self.entry_tx(|tx| {
            let old = tx.existing(id)?;
            tx.entries.remove(id.as_bytes())?;
            tx.unindex(&old)?;
            tx.bump([id], -1)?;
            Ok(old)
        })
        .and_then(|old| self.prune_changes().map(|()| old))
    }

    pub(super) fn get_entry(&self, id: &str) -> Result<Option<RegistrationEntry>> {
        match self
            .entries
            .get(id.as_bytes())
            .map_err(|e| backend("reading entries", e))?
        {
            Some(bytes) => decode(ENTRIES, id.as_bytes(), &bytes).map(Some),
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
            self.walk_index(&self.by_parent, BY_PARENT, parent_id, after, &mut keep)?;
        } else if let Some(spiffe_id) = &filter.spiffe_id {
            self.walk_index(
                &self.by_spiffe_id,
                BY_SPIFFE_ID,
                spiffe_id,
                after,
                &mut keep,
            )?;
        } else {
            let start = match after {
                Some(after) => Bound::Excluded(after.as_bytes().to_vec()),
                None => Bound::Unbounded,
            };
            for item in self.entries.range((start, Bound::Unbounded)) {
                let (key, bytes) = item.map_err(|e| backend("reading entries", e))?;
                if !keep(decode(ENTRIES, &key, &bytes)?) {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Feeds `keep` the entries an index lists under `value` whose ID sorts
    /// after `after`, in ID order, until it answers false. The caller
    /// filters again: an entry changed since its index row was read may no
    /// longer match.
    fn walk_index(
        &self,
        index: &Tree,
        name: &str,
        value: &str,
        after: Option<&str>,
        keep: &mut dyn FnMut(RegistrationEntry) -> bool,
    ) -> Result<()> {
        let prefix = index_prefix(value);
        let rows: Box<dyn Iterator<Item = ::sled::Result<(::sled::IVec, ::sled::IVec)>>> =
            match after {
                Some(after) => {
                    let mut start = prefix.clone();
                    start.extend_from_slice(after.as_bytes());
                    Box::new(
                        index
                            .range((Bound::Excluded(start), Bound::Unbounded))
                            .take_while(|row| {
                                row.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix))
                            }),
                    )
                }
                None => Box::new(index.scan_prefix(&prefix)),
            };
        for row in rows {
            let (key, _) = row.map_err(|e| backend(&format!("reading {name}"), e))?;
            let id = id_from_index_key(&prefix, &key);
            // Gone since the row was read: a concurrent delete.
            if let Some(bytes) = self
                .entries
                .get(id)
                .map_err(|e| backend("reading entries", e))?
            {
                if !keep(decode(ENTRIES, id, &bytes)?) {
                    break;
                }
            }
        }
        Ok(())
    }

    pub(super) fn all_entries(&self) -> Result<Vec<RegistrationEntry>> {
        self.entries
            .iter()
            .map(|item| {
                let (key, bytes) = item.map_err(|e| backend("reading entries", e))?;
                decode(ENTRIES, &key, &bytes)
            })
            .collect()
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
            let (key, id) = row.map_err(|e| backend("reading the entry change log", e))?;
            let id = String::from_utf8(id.to_vec()).map_err(|_| DataStoreError::Corrupt {
                location: format!("{CHANGES} {key:?}"),
                reason: "entry ID is not UTF-8".into(),
            })?;
            ids.insert(id);
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
    /// Derives every index row and the entry count from the entry records
    /// (for a store written before the layout was versioned). Not one
    /// transaction: it runs before the store is in use, and a crash midway
    /// leaves the store unversioned, so the next open runs it again.
    pub(super) fn rebuild_entry_indexes(&self) -> Result<()> {
        let entries = self.all_entries()?;
        for index in [&self.by_parent, &self.by_spiffe_id, &self.similar] {
            index
                .clear()
                .map_err(|e| backend("clearing an entry index", e))?;
        }
        let write = |tree: &Tree, key: Vec<u8>, value: &[u8]| {
            tree.insert(key, value)
                .map(drop)
                .map_err(|e| backend("rebuilding entry indexes", e))
        };
        for entry in &entries {
            write(
                &self.by_parent,
                index_key(&entry.parent_id, &entry.id),
                NO_VALUE,
            )?;
            write(
                &self.by_spiffe_id,
                index_key(&entry.spiffe_id, &entry.id),
                NO_VALUE,
            )?;
            let similar = similar_key(entry);
            let taken = self
                .similar
                .contains_key(&similar)
                .map_err(|e| backend("rebuilding entry indexes", e))?;
            if taken {
                tracing::warn!(entry_id = %entry.id, "entry duplicates an earlier one");
            } else {
                write(&self.similar, similar, entry.id.as_bytes())?;
            }
        }
        let count = u64::try_from(entries.len()).unwrap_or(u64::MAX);
        let revision = self.entries_revision()?.saturating_add(1);
        write(&self.meta, ENTRIES_COUNT_KEY.to_vec(), &encode_u64(count))?;
        write(
            &self.meta,
            ENTRIES_REVISION_KEY.to_vec(),
            &encode_u64(revision),
        )?;
        // No change before this revision is in the log.
        write(
            &self.meta,
            CHANGES_FLOOR_KEY.to_vec(),
            &encode_u64(revision),
        )
    }
}
