//! Versioned schema migrations, kept in `migrations/<database>/NNNN_*.sql`
//! and compiled in.
//!
//! `schema_version` holds one row: the version the database is at. Opening
//! the store applies every newer migration in order, inside one
//! transaction that first locks that row (on PostgreSQL an advisory lock
//! before it, since the table may not exist yet), so two servers starting
//! together on one database migrate it once; a crash midway leaves the old
//! version. A database at a version newer than this binary knows is
//! refused: an older server must not write a schema it does not
//! understand. With `disable_migration` nothing is changed, and the store
//! opens only at exactly [`LATEST`].

use sqlx::{Any, Row, Transaction};

use super::options::DatabaseType;
use super::{backend, begin_write};
use crate::datastore::{DataStoreError, Result};

/// One migration: the version it brings the schema to, and its SQL for
/// each database (statements separated by `;`, `--` comment lines).
struct Migration {
    version: i64,
    postgres: &'static str,
    sqlite: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        postgres: include_str!("migrations/postgres/0001_initial.sql"),
        sqlite: include_str!("migrations/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        postgres: include_str!("migrations/postgres/0002_ca_journals.sql"),
        sqlite: include_str!("migrations/sqlite/0002_ca_journals.sql"),
    },
    Migration {
        version: 3,
        postgres: include_str!("migrations/postgres/0003_agent_changes.sql"),
        sqlite: include_str!("migrations/sqlite/0003_agent_changes.sql"),
    },
];

/// The PostgreSQL advisory lock key migrations hold ("spinel" in ASCII).
const MIGRATION_LOCK: i64 = 0x7370_696e_656c;

/// The schema version this binary writes.
pub const LATEST: i64 = 3;

/// Brings the schema to [`LATEST`] (or, with `disable_migration`, checks
/// that it is there). Returns the version found before.
pub(super) async fn migrate(
    pool: &sqlx::AnyPool,
    database_type: DatabaseType,
    disable_migration: bool,
) -> Result<i64> {
    if disable_migration {
        let found = sqlx::query("SELECT version FROM schema_version WHERE id = 1")
            .fetch_optional(pool)
            .await
            .map_err(|e| backend("reading schema_version (disable_migration is set)", e))?;
        let found: i64 = match found {
            Some(row) => row
                .try_get(0)
                .map_err(|e| backend("reading schema_version", e))?,
            None => 0,
        };
        if found != LATEST {
            return Err(DataStoreError::Backend(format!(
                "the database schema is at version {found}, this server needs version {LATEST}, and disable_migration is set: migrate it with a server that may (disable_migration = false)"
            )));
        }
        return Ok(found);
    }
    let mut tx = begin_write(pool, database_type).await?;
    let context = "creating schema_version";
    if database_type == DatabaseType::Postgres {
        // PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a
        // concurrent one (a unique violation in its catalog): servers
        // starting together take turns on an advisory lock first, held to
        // the end of this transaction. SQLite's BEGIN IMMEDIATE already
        // did that.
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("locking the schema for migration", e))?;
    }
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(|e| backend(context, e))?;
    sqlx::query(
        "INSERT INTO schema_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| backend(context, e))?;
    // Locks the row: a second server migrating waits here, then sees the
    // version the first one left.
    let found: i64 =
        sqlx::query("UPDATE schema_version SET version = version WHERE id = 1 RETURNING version")
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| backend("reading schema_version", e))?;
    if found > LATEST {
        return Err(DataStoreError::Backend(format!(
            "the database schema is at version {found}, newer than this server knows ({LATEST}): run a newer spinel-server"
        )));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        apply(&mut tx, database_type, migration).await?;
    }
    sqlx::query("UPDATE schema_version SET version = $1 WHERE id = 1")
        .bind(LATEST)
        .execute(&mut *tx)
        .await
        .map_err(|e| backend("writing schema_version", e))?;
    tx.commit()
        .await
        .map_err(|e| backend("committing the schema migration", e))?;
    if found < LATEST {
        tracing::info!(from = found, to = LATEST, "datastore schema migrated");
    }
    Ok(found)
}

async fn apply(
    tx: &mut Transaction<'static, Any>,
    database_type: DatabaseType,
    migration: &Migration,
) -> Result<()> {
    let sql = match database_type {
        DatabaseType::Postgres => migration.postgres,
        DatabaseType::Sqlite => migration.sqlite,
    };
    for statement in statements(sql) {
        sqlx::query(&statement)
            .execute(&mut **tx)
            .await
            .map_err(|e| backend(&format!("schema migration {}", migration.version), e))?;
    }
    Ok(())
}

/// The statements of a migration file: comment lines dropped, split at `;`.
fn statements(sql: &str) -> Vec<String> {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_up_to_latest() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i64::try_from(i).unwrap_or(i64::MAX) + 1);
            assert_eq!(
                statements(m.postgres).len(),
                statements(m.sqlite).len(),
                "migration {}: both databases get the same statements",
                m.version
            );
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST));
    }

    #[test]
    fn statements_split_and_drop_comments() {
        let got =
            statements("-- a; comment\nCREATE TABLE a (x BIGINT);\n\nCREATE TABLE b (y TEXT)\n");
        assert_eq!(
            got,
            ["CREATE TABLE a (x BIGINT)", "CREATE TABLE b (y TEXT)"]
        );
    }
}
