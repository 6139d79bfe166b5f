//! Change logs: which record each revision touched, so that a server
//! sharing the database can follow what other servers wrote without
//! reading every record again.
//!
//! A log is a table `(revision, <id column>)`, a revision counter and a
//! floor counter in `counters`. A write locks the revision counter row
//! first ([`ChangeLog::lock`]; writes of one kind serialise on it, across
//! servers), logs one revision per record it writes, then stores the last
//! revision, prunes and commits ([`ChangeLog::finish`]). The log is kept
//! at most twice `kept` long: past that the floor rises to keep the
//! newest `kept` changes and the older rows go, in the same transaction.
//! A reader asking for changes below the floor is told the log does not
//! reach back ([`ChangeLog::since`] gives `None`) and reads in full.

use std::collections::BTreeSet;

use sqlx::{Any, AnyPool, Row, Transaction};

use super::backend;
use crate::datastore::{DataStoreError, Result};

type Tx = Transaction<'static, Any>;

/// One change log: its table, ID column and counters.
#[derive(Debug)]
pub(super) struct ChangeLog {
    table: &'static str,
    id_column: &'static str,
    revision: &'static str,
    floor: &'static str,
}

/// Registration entries (schema version 1).
pub(super) const ENTRY_CHANGES: ChangeLog = ChangeLog {
    table: "entry_changes",
    id_column: "entry_id",
    revision: "entries_revision",
    floor: "entry_changes_floor",
};

/// Attested agents (schema version 3).
pub(super) const AGENT_CHANGES: ChangeLog = ChangeLog {
    table: "agent_changes",
    id_column: "spiffe_id",
    revision: "agents_revision",
    floor: "agent_changes_floor",
};

pub(super) fn to_u64(what: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| DataStoreError::Corrupt {
        location: format!("counters/{what}"),
        reason: format!("negative value {value}"),
    })
}

pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The value of counter `name`.
pub(super) async fn counter(pool: &AnyPool, name: &str) -> Result<u64> {
    let value: i64 = sqlx::query("SELECT value FROM counters WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| backend(&format!("reading counter {name}"), e))?;
    to_u64(name, value)
}

impl ChangeLog {
    /// Locks the revision counter for this transaction and returns its value.
    pub(super) async fn lock(&self, tx: &mut Tx) -> Result<i64> {
        sqlx::query("UPDATE counters SET value = value WHERE name = $1 RETURNING value")
            .bind(self.revision)
            .fetch_one(&mut **tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| backend(&format!("locking {}", self.revision), e))
    }

    /// Files `id` under `revision`.
    pub(super) async fn log(&self, tx: &mut Tx, revision: i64, id: &str) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} (revision, {}) VALUES ($1, $2)",
            self.table, self.id_column
        );
        sqlx::query(&sql)
            .bind(revision)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map(drop)
            .map_err(|e| backend(&format!("writing {}", self.table), e))
    }

    /// Stores `revision` as the last, prunes the log and commits.
    pub(super) async fn finish(&self, mut tx: Tx, revision: i64, kept: u64) -> Result<()> {
        sqlx::query("UPDATE counters SET value = $2 WHERE name = $1")
            .bind(self.revision)
            .bind(revision)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend(&format!("writing {}", self.revision), e))?;
        self.prune(&mut tx, revision, kept).await?;
        tx.commit()
            .await
            .map_err(|e| backend(&format!("committing a write logged in {}", self.table), e))
    }

    async fn prune(&self, tx: &mut Tx, last: i64, kept: u64) -> Result<()> {
        let sql = format!("SELECT MIN(revision) FROM {}", self.table);
        let first: Option<i64> = sqlx::query(&sql)
            .fetch_one(&mut **tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| backend(&format!("reading {}", self.table), e))?;
        let Some(first) = first else { return Ok(()) };
        let kept = to_i64(kept);
        if last.saturating_sub(first) < kept.saturating_mul(2) {
            return Ok(());
        }
        let floor = last.saturating_sub(kept);
        sqlx::query("UPDATE counters SET value = $2 WHERE name = $1")
            .bind(self.floor)
            .bind(floor)
            .execute(&mut **tx)
            .await
            .map_err(|e| backend(&format!("pruning {}", self.table), e))?;
        let sql = format!("DELETE FROM {} WHERE revision <= $1", self.table);
        sqlx::query(&sql)
            .bind(floor)
            .execute(&mut **tx)
            .await
            .map(drop)
            .map_err(|e| backend(&format!("pruning {}", self.table), e))
    }

    /// The last revision written.
    pub(super) async fn revision(&self, pool: &AnyPool) -> Result<u64> {
        counter(pool, self.revision).await
    }

    /// The IDs written after `revision` (each once), or `None` when the
    /// log does not reach back that far or `revision` is not one of this
    /// store's.
    pub(super) async fn since(&self, pool: &AnyPool, revision: u64) -> Result<Option<Vec<String>>> {
        if revision > self.revision(pool).await? {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE revision > $1",
            self.id_column, self.table
        );
        let rows = sqlx::query(&sql)
            .bind(to_i64(revision))
            .fetch_all(pool)
            .await
            .map_err(|e| backend(&format!("reading {}", self.table), e))?;
        let mut ids = BTreeSet::new();
        for row in &rows {
            let id: String = row
                .try_get(0)
                .map_err(|e| backend(&format!("reading {}", self.table), e))?;
            ids.insert(id);
        }
        // The floor is read after the log: a prune raises it in the same
        // transaction that removes rows, so a read that raced one is caught.
        if revision < counter(pool, self.floor).await? {
            return Ok(None);
        }
        Ok(Some(ids.into_iter().collect()))
    }
}
