//! Registration entries and their change log.
//!
//! Every write runs in one transaction that first locks the
//! `entries_revision` counter (see the module docs of `sql`), then checks
//! parent cycles, similar entries and existence, writes the rows, logs one
//! change per written entry, stores the new revision and prunes the log.
//! A refused entry changes nothing; a database error rolls back the whole
//! call.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::{backend, SqlDataStore};
use crate::datastore::lineage::check_parent_cycle;
use crate::datastore::{DataStoreError, EntryFilter, RegistrationEntry, Result};

/// Rows fetched per round trip while a listing filters in memory.
const PAGE_ROWS: i64 = 512;

type Tx = Transaction<'static, Any>;

fn decode_entry(row: &AnyRow) -> Result<RegistrationEntry> {
    let id: String = row
        .try_get("id")
        .map_err(|e| backend("reading entries", e))?;
    let record: String = row
        .try_get("record")
        .map_err(|e| backend("reading entries", e))?;
    serde_json::from_str(&record).map_err(|e| DataStoreError::Corrupt {
        location: format!("entries/{id}"),
        reason: e.to_string(),
    })
}

fn encode_entry(entry: &RegistrationEntry) -> Result<String> {
    serde_json::to_string(entry).map_err(|e| backend("encoding entry record", e))
}

/// The digest that makes two entries "similar" (hex SHA-256 of
/// [`RegistrationEntry::similarity_key`]).
fn similar_key(entry: &RegistrationEntry) -> String {
    ring::digest::digest(&ring::digest::SHA256, &entry.similarity_key())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn to_u64(what: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| DataStoreError::Corrupt {
        location: format!("counters/{what}"),
        reason: format!("negative value {value}"),
    })
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Locks the revision counter for this transaction and returns its value.
async fn lock_revision(tx: &mut Tx) -> Result<i64> {
    sqlx::query("UPDATE counters SET value = value WHERE name = 'entries_revision' RETURNING value")
        .fetch_one(&mut **tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| backend("locking the entry revision", e))
}

/// `(entry ID, parent ID)` of the entries whose SPIFFE ID is `id`.
async fn parents_of(tx: &mut Tx, id: &str) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query("SELECT id, parent_id FROM entries WHERE spiffe_id = $1")
        .bind(id)
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| backend("reading entries", e))?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0)
                    .map_err(|e| backend("reading entries", e))?,
                r.try_get::<String, _>(1)
                    .map_err(|e| backend("reading entries", e))?,
            ))
        })
        .collect()
}

/// Refuses `entry` if writing it would close a parent cycle. The
/// ancestors are read first (the walk up from its parent), then
/// [`check_parent_cycle`] runs on them.
async fn check_cycle(tx: &mut Tx, entry: &RegistrationEntry) -> Result<()> {
    let mut known: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut queue = VecDeque::from([entry.parent_id.clone()]);
    while let Some(id) = queue.pop_front() {
        if known.contains_key(&id) || id == entry.spiffe_id {
            continue;
        }
        let parents = parents_of(tx, &id).await?;
        queue.extend(parents.iter().map(|(_, p)| p.clone()));
        known.insert(id, parents);
    }
    check_parent_cycle(entry, |id| Ok(known.get(id).cloned().unwrap_or_default()))
}

/// The ID of another entry (not `entry.id`) similar to `entry`.
async fn similar_to(tx: &mut Tx, entry: &RegistrationEntry, key: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT id FROM entries WHERE similar_key = $1")
        .bind(key)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| backend("reading entries", e))?;
    let Some(row) = row else { return Ok(None) };
    let id: String = row.try_get(0).map_err(|e| backend("reading entries", e))?;
    Ok((id != entry.id).then_some(id))
}

async fn stored(tx: &mut Tx, id: &str) -> Result<Option<RegistrationEntry>> {
    let row = sqlx::query("SELECT id, record FROM entries WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| backend("reading entries", e))?;
    row.as_ref().map(decode_entry).transpose()
}

async fn log_change(tx: &mut Tx, revision: i64, id: &str) -> Result<()> {
    sqlx::query("INSERT INTO entry_changes (revision, entry_id) VALUES ($1, $2)")
        .bind(revision)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(|e| backend("writing the entry change log", e))
}

/// Stores the new revision, prunes the change log and commits.
async fn finish(mut tx: Tx, revision: i64, kept: u64) -> Result<()> {
    sqlx::query("UPDATE counters SET value = $1 WHERE name = 'entries_revision'")
        .bind(revision)
        .execute(&mut *tx)
        .await
        .map_err(|e| backend("writing the entry revision", e))?;
    prune_changes(&mut tx, revision, kept).await?;
    tx.commit()
        .await
        .map_err(|e| backend("committing an entry write", e))
}

/// Keeps the change log at most twice `kept` long: past that the floor
/// rises to keep the newest `kept` changes and the older rows go, in the
/// same transaction as the write.
async fn prune_changes(tx: &mut Tx, last: i64, kept: u64) -> Result<()> {
    let first: Option<i64> = sqlx::query("SELECT MIN(revision) FROM entry_changes")
        .fetch_one(&mut **tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| backend("reading the entry change log", e))?;
    let Some(first) = first else { return Ok(()) };
    let kept = to_i64(kept);
    if last.saturating_sub(first) < kept.saturating_mul(2) {
        return Ok(());
    }
    let floor = last.saturating_sub(kept);
    sqlx::query("UPDATE counters SET value = $1 WHERE name = 'entry_changes_floor'")
        .bind(floor)
        .execute(&mut **tx)
        .await
        .map_err(|e| backend("pruning the entry change log", e))?;
    sqlx::query("DELETE FROM entry_changes WHERE revision <= $1")
        .bind(floor)
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(|e| backend("pruning the entry change log", e))
}

impl SqlDataStore {
    /// Creates `entries` in one transaction, one outcome each.
    pub(super) async fn create_entries_tx(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<RegistrationEntry>>> {
        let now = self.inner.clock.unix_seconds();
        let mut tx = self.begin_write().await?;
        let mut revision = lock_revision(&mut tx).await?;
        let mut outcomes = Vec::with_capacity(entries.len());
        for entry in entries {
            match create_one(&mut tx, entry, now, revision.saturating_add(1)).await {
                Ok(created) => {
                    revision = revision.saturating_add(1);
                    outcomes.push(Ok(created));
                }
                Err(DataStoreError::Backend(e)) => return Err(DataStoreError::Backend(e)),
                Err(refused) => outcomes.push(Err(refused)),
            }
        }
        finish(tx, revision, self.inner.changes_kept).await?;
        Ok(outcomes)
    }

    pub(super) async fn update_entry_tx(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry> {
        let mut tx = self.begin_write().await?;
        let revision = lock_revision(&mut tx).await?.saturating_add(1);
        let Some(old) = stored(&mut tx, &entry.id).await? else {
            return Err(DataStoreError::NotFound {
                kind: "entry",
                id: entry.id,
            });
        };
        check_cycle(&mut tx, &entry).await?;
        let mut next = entry;
        next.created_at = old.created_at;
        next.revision_number = old.revision_number.saturating_add(1);
        let key = similar_key(&next);
        if let Some(other) = similar_to(&mut tx, &next, &key).await? {
            return Err(DataStoreError::AlreadyExists {
                kind: "entry",
                id: other,
            });
        }
        sqlx::query(
            "UPDATE entries SET spiffe_id = $2, parent_id = $3, similar_key = $4, record = $5 WHERE id = $1",
        )
        .bind(&next.id)
        .bind(&next.spiffe_id)
        .bind(&next.parent_id)
        .bind(&key)
        .bind(encode_entry(&next)?)
        .execute(&mut *tx)
        .await
        .map_err(|e| backend("writing entries", e))?;
        log_change(&mut tx, revision, &next.id).await?;
        finish(tx, revision, self.inner.changes_kept).await?;
        Ok(next)
    }

    pub(super) async fn delete_entry_tx(&self, id: &str) -> Result<RegistrationEntry> {
        let mut tx = self.begin_write().await?;
        let revision = lock_revision(&mut tx).await?.saturating_add(1);
        let row = sqlx::query("DELETE FROM entries WHERE id = $1 RETURNING id, record")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| backend("writing entries", e))?;
        let Some(row) = row else {
            return Err(DataStoreError::NotFound {
                kind: "entry",
                id: id.to_owned(),
            });
        };
        let old = decode_entry(&row)?;
        log_change(&mut tx, revision, id).await?;
        finish(tx, revision, self.inner.changes_kept).await?;
        Ok(old)
    }
}

/// One entry of a create, at `revision` if it is written.
async fn create_one(
    tx: &mut Tx,
    mut entry: RegistrationEntry,
    now: i64,
    revision: i64,
) -> Result<RegistrationEntry> {
    check_cycle(tx, &entry).await?;
    if entry.id.is_empty() {
        entry.id = uuid::Uuid::new_v4().to_string();
    }
    if entry.created_at == 0 {
        entry.created_at = now;
    }
    entry.revision_number = 0;
    let key = similar_key(&entry);
    if let Some(other) = similar_to(tx, &entry, &key).await? {
        return Err(DataStoreError::AlreadyExists {
            kind: "entry",
            id: other,
        });
    }
    if stored(tx, &entry.id).await?.is_some() {
        return Err(DataStoreError::AlreadyExists {
            kind: "entry",
            id: entry.id,
        });
    }
    sqlx::query(
        "INSERT INTO entries (id, spiffe_id, parent_id, similar_key, record) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&entry.id)
    .bind(&entry.spiffe_id)
    .bind(&entry.parent_id)
    .bind(&key)
    .bind(encode_entry(&entry)?)
    .execute(&mut **tx)
    .await
    .map_err(|e| backend("writing entries", e))?;
    log_change(tx, revision, &entry.id).await?;
    Ok(entry)
}

pub(super) async fn get_entry(pool: &AnyPool, id: &str) -> Result<Option<RegistrationEntry>> {
    let row = sqlx::query("SELECT id, record FROM entries WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(|e| backend("reading entries", e))?;
    row.as_ref().map(decode_entry).transpose()
}

/// Reads entries in ID order through the narrowest lookup the filter
/// allows (parent ID, else SPIFFE ID), a batch at a time, keeping those
/// that pass the whole filter until `limit` are found.
pub(super) async fn list_entries_page(
    pool: &AnyPool,
    filter: &EntryFilter,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<RegistrationEntry>> {
    let mut found = Vec::new();
    if limit == 0 {
        return Ok(found);
    }
    let mut cursor = after.map(str::to_owned);
    loop {
        let mut sql = String::from("SELECT id, record FROM entries WHERE 1 = 1");
        let mut binds: Vec<&str> = Vec::new();
        let conditions = [
            ("parent_id", "=", filter.parent_id.as_deref()),
            ("spiffe_id", "=", filter.spiffe_id.as_deref()),
            ("id", ">", cursor.as_deref()),
        ];
        for (column, op, value) in conditions {
            if let Some(value) = value {
                binds.push(value);
                sql.push_str(&format!(" AND {column} {op} ${}", binds.len()));
            }
        }
        sql.push_str(&format!(" ORDER BY id LIMIT {PAGE_ROWS}"));
        let mut query = sqlx::query(&sql);
        for value in binds {
            query = query.bind(value);
        }
        let rows = query
            .fetch_all(pool)
            .await
            .map_err(|e| backend("reading entries", e))?;
        let last_page = i64::try_from(rows.len()).unwrap_or(i64::MAX) < PAGE_ROWS;
        for row in &rows {
            let entry = decode_entry(row)?;
            cursor = Some(entry.id.clone());
            if filter.matches(&entry) {
                found.push(entry);
                if found.len() >= limit {
                    return Ok(found);
                }
            }
        }
        if last_page {
            return Ok(found);
        }
    }
}

pub(super) async fn count_entries(pool: &AnyPool) -> Result<u64> {
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM entries")
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| backend("counting entries", e))?;
    to_u64("entries count", count)
}

async fn counter(pool: &AnyPool, name: &str) -> Result<u64> {
    let value: i64 = sqlx::query("SELECT value FROM counters WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| backend(&format!("reading counter {name}"), e))?;
    to_u64(name, value)
}

pub(super) async fn entries_revision(pool: &AnyPool) -> Result<u64> {
    counter(pool, "entries_revision").await
}

/// The entries written after `revision` (each once), or `None` when the
/// log does not reach back that far or `revision` is not one of this
/// store's.
pub(super) async fn entry_changes_since(
    pool: &AnyPool,
    revision: u64,
) -> Result<Option<Vec<String>>> {
    if revision > entries_revision(pool).await? {
        return Ok(None);
    }
    let rows = sqlx::query("SELECT entry_id FROM entry_changes WHERE revision > $1")
        .bind(to_i64(revision))
        .fetch_all(pool)
        .await
        .map_err(|e| backend("reading the entry change log", e))?;
    let mut ids = BTreeSet::new();
    for row in &rows {
        let id: String = row
            .try_get(0)
            .map_err(|e| backend("reading the entry change log", e))?;
        ids.insert(id);
    }
    // The floor is read after the log: a prune raises it in the same
    // transaction that removes rows, so a read that raced one is caught.
    if revision < counter(pool, "entry_changes_floor").await? {
        return Ok(None);
    }
    Ok(Some(ids.into_iter().collect()))
}
