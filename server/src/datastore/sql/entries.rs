//! Registration entries and their change log.
//!
//! Every write runs in one transaction that first locks the
//! `entries_revision` counter (see the module docs of `sql`), then checks
//! parent cycles, similar entries and existence, writes the rows, logs one
//! change per written entry, stores the new revision and prunes the log.
//! A refused entry changes nothing; a database error rolls back the whole
//! call.

use std::collections::{BTreeMap, VecDeque};

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::change_log::{to_u64, ENTRY_CHANGES};
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

impl SqlDataStore {
    /// Creates `entries` in one transaction, one outcome each.
    pub(super) async fn create_entries_tx(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<RegistrationEntry>>> {
        let now = self.inner.clock.unix_seconds();
        let mut tx = self.begin_write().await?;
        let mut revision = ENTRY_CHANGES.lock(&mut tx).await?;
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
        ENTRY_CHANGES
            .finish(tx, revision, self.inner.changes_kept)
            .await?;
        Ok(outcomes)
    }

    pub(super) async fn update_entry_tx(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry> {
        let mut tx = self.begin_write().await?;
        let revision = ENTRY_CHANGES.lock(&mut tx).await?.saturating_add(1);
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
        ENTRY_CHANGES.log(&mut tx, revision, &next.id).await?;
        ENTRY_CHANGES
            .finish(tx, revision, self.inner.changes_kept)
            .await?;
        Ok(next)
    }

    pub(super) async fn delete_entry_tx(&self, id: &str) -> Result<RegistrationEntry> {
        let mut tx = self.begin_write().await?;
        let revision = ENTRY_CHANGES.lock(&mut tx).await?.saturating_add(1);
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
        ENTRY_CHANGES.log(&mut tx, revision, id).await?;
        ENTRY_CHANGES
            .finish(tx, revision, self.inner.changes_kept)
            .await?;
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
    ENTRY_CHANGES.log(tx, revision, &entry.id).await?;
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
