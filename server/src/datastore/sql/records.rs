//! Agents, join tokens, bundles, federation relationships and the CA
//! journals: one row per key, each call one statement (atomic on its own)
//! but for an agent write (with its row in the agent change log), a bundle
//! update (compare-and-swap on the record) and a journal write (with the
//! retirement of the version 1 journal).
//!
//! A record that does not decode is `Corrupt` naming table and key, never
//! the key of a join token, which is the secret.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::{Any, AnyPool, Row, Transaction};

type Tx = Transaction<'static, Any>;

use super::change_log::AGENT_CHANGES;
use super::options::DatabaseType;
use super::{backend, begin_write, SqlDataStore};
use crate::datastore::{
    AttestedAgent, BundleUpdate, DataStoreError, JoinToken, Result, StoredBundle,
    StoredFederationRelationship,
};

/// Shown instead of a join token's value.
const REDACTED: &str = "<redacted>";
const FEDERATION: &str = "federation relationship";

fn encode<T: Serialize>(kind: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| backend(&format!("encoding {kind} record"), e))
}

fn decode<T: DeserializeOwned>(table: &str, key: &str, record: &str) -> Result<T> {
    serde_json::from_str(record).map_err(|e| DataStoreError::Corrupt {
        location: format!("{table}/{key}"),
        reason: e.to_string(),
    })
}

/// A keyed table of JSON records.
struct Table {
    name: &'static str,
    key: &'static str,
    kind: &'static str,
}

const AGENTS: Table = Table {
    name: "agents",
    key: "spiffe_id",
    kind: "agent",
};
const BUNDLES: Table = Table {
    name: "bundles",
    key: "trust_domain",
    kind: "bundle",
};
const RELATIONSHIPS: Table = Table {
    name: "federation_relationships",
    key: "trust_domain",
    kind: FEDERATION,
};

impl Table {
    /// Inserts unless the key is taken: `AlreadyExists` then.
    async fn create<T: Serialize>(&self, pool: &AnyPool, key: &str, value: &T) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} ({}, record) VALUES ($1, $2) ON CONFLICT ({}) DO NOTHING",
            self.name, self.key, self.key
        );
        if self.write(pool, &sql, key, value).await? == 0 {
            return Err(DataStoreError::AlreadyExists {
                kind: self.kind,
                id: key.to_owned(),
            });
        }
        Ok(())
    }

    /// Replaces the record (whatever it held, so an unreadable one can be
    /// repaired); `NotFound` if absent.
    async fn update<T: Serialize>(&self, pool: &AnyPool, key: &str, value: &T) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET record = $2 WHERE {} = $1",
            self.name, self.key
        );
        if self.write(pool, &sql, key, value).await? == 0 {
            return Err(DataStoreError::NotFound {
                kind: self.kind,
                id: key.to_owned(),
            });
        }
        Ok(())
    }

    async fn upsert<T: Serialize>(&self, pool: &AnyPool, key: &str, value: &T) -> Result<()> {
        let sql = format!(
            "INSERT INTO {} ({}, record) VALUES ($1, $2) ON CONFLICT ({}) DO UPDATE SET record = excluded.record",
            self.name, self.key, self.key
        );
        self.write(pool, &sql, key, value).await.map(drop)
    }

    /// Runs `sql` with `$1` = `key`, `$2` = `value`'s record: the rows it
    /// changed.
    async fn write<T: Serialize>(
        &self,
        pool: &AnyPool,
        sql: &str,
        key: &str,
        value: &T,
    ) -> Result<u64> {
        sqlx::query(sql)
            .bind(key)
            .bind(encode(self.kind, value)?)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| backend(&format!("writing {}", self.name), e))
    }

    async fn get<T: DeserializeOwned>(&self, pool: &AnyPool, key: &str) -> Result<Option<T>> {
        let sql = format!("SELECT record FROM {} WHERE {} = $1", self.name, self.key);
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(pool)
            .await
            .map_err(|e| backend(&format!("reading {}", self.name), e))?;
        let Some(row) = row else { return Ok(None) };
        let record: String = row
            .try_get(0)
            .map_err(|e| backend(&format!("reading {}", self.name), e))?;
        decode(self.name, key, &record).map(Some)
    }

    /// Deletes the record and returns it. An unreadable record is `Corrupt`
    /// and stays: the delete is made only when the record read back
    /// decodes, and only if it is still the same.
    async fn delete<T: DeserializeOwned>(&self, pool: &AnyPool, key: &str) -> Result<T> {
        loop {
            let sql = format!("SELECT record FROM {} WHERE {} = $1", self.name, self.key);
            let row = sqlx::query(&sql)
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(|e| backend(&format!("reading {}", self.name), e))?;
            let Some(row) = row else {
                return Err(DataStoreError::NotFound {
                    kind: self.kind,
                    id: key.to_owned(),
                });
            };
            let record: String = row
                .try_get(0)
                .map_err(|e| backend(&format!("reading {}", self.name), e))?;
            let value = decode(self.name, key, &record)?;
            let sql = format!(
                "DELETE FROM {} WHERE {} = $1 AND record = $2",
                self.name, self.key
            );
            let done = sqlx::query(&sql)
                .bind(key)
                .bind(&record)
                .execute(pool)
                .await
                .map_err(|e| backend(&format!("writing {}", self.name), e))?;
            if done.rows_affected() == 1 {
                return Ok(value);
            }
            // Changed or deleted between the read and the delete: look again.
        }
    }

    async fn list<T: DeserializeOwned>(&self, pool: &AnyPool) -> Result<Vec<T>> {
        let sql = format!(
            "SELECT {}, record FROM {} ORDER BY {}",
            self.key, self.name, self.key
        );
        let rows = sqlx::query(&sql)
            .fetch_all(pool)
            .await
            .map_err(|e| backend(&format!("reading {}", self.name), e))?;
        rows.iter()
            .map(|row| {
                let key: String = row
                    .try_get(0)
                    .map_err(|e| backend(&format!("reading {}", self.name), e))?;
                let record: String = row
                    .try_get(1)
                    .map_err(|e| backend(&format!("reading {}", self.name), e))?;
                decode(self.name, &key, &record)
            })
            .collect()
    }
}

impl SqlDataStore {
    /// Starts an agent write: a transaction holding the agent revision
    /// lock, and the revision the write is logged under.
    async fn begin_agent_write(&self) -> Result<(Tx, i64)> {
        let mut tx = self.begin_write().await?;
        let revision = AGENT_CHANGES.lock(&mut tx).await?.saturating_add(1);
        Ok((tx, revision))
    }

    /// Logs the write of agent `spiffe_id` and commits.
    async fn finish_agent_write(&self, mut tx: Tx, revision: i64, spiffe_id: &str) -> Result<()> {
        AGENT_CHANGES.log(&mut tx, revision, spiffe_id).await?;
        AGENT_CHANGES
            .finish(tx, revision, self.inner.changes_kept)
            .await
    }

    pub(super) async fn create_agent_tx(&self, agent: &AttestedAgent) -> Result<()> {
        let record = encode(AGENTS.kind, agent)?;
        let (mut tx, revision) = self.begin_agent_write().await?;
        let done = sqlx::query(
            "INSERT INTO agents (spiffe_id, record) VALUES ($1, $2) ON CONFLICT (spiffe_id) DO NOTHING",
        )
        .bind(&agent.spiffe_id)
        .bind(&record)
        .execute(&mut *tx)
        .await
        .map_err(|e| backend("writing agents", e))?;
        if done.rows_affected() == 0 {
            return Err(DataStoreError::AlreadyExists {
                kind: AGENTS.kind,
                id: agent.spiffe_id.clone(),
            });
        }
        self.finish_agent_write(tx, revision, &agent.spiffe_id)
            .await
    }

    /// Replaces the record (whatever it held, so an unreadable one can be
    /// repaired); `NotFound` if absent.
    pub(super) async fn update_agent_tx(&self, agent: &AttestedAgent) -> Result<()> {
        let record = encode(AGENTS.kind, agent)?;
        let (mut tx, revision) = self.begin_agent_write().await?;
        let done = sqlx::query("UPDATE agents SET record = $2 WHERE spiffe_id = $1")
            .bind(&agent.spiffe_id)
            .bind(&record)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("writing agents", e))?;
        if done.rows_affected() == 0 {
            return Err(not_found(&agent.spiffe_id));
        }
        self.finish_agent_write(tx, revision, &agent.spiffe_id)
            .await
    }

    /// Deletes the record and returns it. An unreadable record is
    /// `Corrupt` and stays.
    pub(super) async fn delete_agent_tx(&self, spiffe_id: &str) -> Result<AttestedAgent> {
        let (mut tx, revision) = self.begin_agent_write().await?;
        // Agent writes hold the agent revision lock: the record read is
        // the one deleted.
        let row = sqlx::query("SELECT record FROM agents WHERE spiffe_id = $1")
            .bind(spiffe_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| backend("reading agents", e))?;
        let Some(row) = row else {
            return Err(not_found(spiffe_id));
        };
        let record: String = row.try_get(0).map_err(|e| backend("reading agents", e))?;
        let agent: AttestedAgent = decode(AGENTS.name, spiffe_id, &record)?;
        sqlx::query("DELETE FROM agents WHERE spiffe_id = $1")
            .bind(spiffe_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("writing agents", e))?;
        self.finish_agent_write(tx, revision, spiffe_id).await?;
        Ok(agent)
    }
}

fn not_found(spiffe_id: &str) -> DataStoreError {
    DataStoreError::NotFound {
        kind: AGENTS.kind,
        id: spiffe_id.to_owned(),
    }
}

pub(super) async fn get_agent(pool: &AnyPool, spiffe_id: &str) -> Result<Option<AttestedAgent>> {
    AGENTS.get(pool, spiffe_id).await
}

pub(super) async fn list_agents(pool: &AnyPool) -> Result<Vec<AttestedAgent>> {
    AGENTS.list(pool).await
}

pub(super) async fn count_agents(pool: &AnyPool) -> Result<u64> {
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM agents")
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| backend("counting agents", e))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub(super) async fn create_join_token(pool: &AnyPool, token: &JoinToken) -> Result<()> {
    let done = sqlx::query(
        "INSERT INTO join_tokens (value, expires_at) VALUES ($1, $2) ON CONFLICT (value) DO NOTHING",
    )
    .bind(&token.value)
    .bind(token.expires_at)
    .execute(pool)
    .await
    .map_err(|e| backend("writing join_tokens", e))?;
    if done.rows_affected() == 0 {
        // The value is the secret: never echo it.
        return Err(DataStoreError::AlreadyExists {
            kind: "join token",
            id: REDACTED.to_owned(),
        });
    }
    Ok(())
}

/// One `DELETE ... RETURNING`: of any number of concurrent callers, on any
/// number of servers, exactly one gets the row.
pub(super) async fn take_join_token(pool: &AnyPool, value: &str) -> Result<Option<JoinToken>> {
    let row = sqlx::query("DELETE FROM join_tokens WHERE value = $1 RETURNING expires_at")
        .bind(value)
        .fetch_optional(pool)
        .await
        .map_err(|e| backend("writing join_tokens", e))?;
    let Some(row) = row else { return Ok(None) };
    let expires_at: i64 = row.try_get(0).map_err(|e| DataStoreError::Corrupt {
        location: format!("join_tokens/{REDACTED}"),
        reason: e.to_string(),
    })?;
    Ok(Some(JoinToken {
        value: value.to_owned(),
        expires_at,
    }))
}

pub(super) async fn prune_join_tokens(pool: &AnyPool, unix_seconds: i64) -> Result<u64> {
    sqlx::query("DELETE FROM join_tokens WHERE expires_at < $1")
        .bind(unix_seconds)
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| backend("writing join_tokens", e))
}

pub(super) async fn get_bundle(pool: &AnyPool, trust_domain: &str) -> Result<Option<StoredBundle>> {
    BUNDLES.get(pool, trust_domain).await
}

pub(super) async fn set_bundle(pool: &AnyPool, bundle: &StoredBundle) -> Result<()> {
    BUNDLES.upsert(pool, &bundle.trust_domain, bundle).await
}

pub(super) async fn delete_bundle(pool: &AnyPool, trust_domain: &str) -> Result<StoredBundle> {
    BUNDLES.delete(pool, trust_domain).await
}

pub(super) async fn list_bundles(pool: &AnyPool) -> Result<Vec<StoredBundle>> {
    BUNDLES.list(pool).await
}

pub(super) async fn create_federation_relationship(
    pool: &AnyPool,
    relationship: &StoredFederationRelationship,
) -> Result<()> {
    RELATIONSHIPS
        .create(pool, &relationship.trust_domain, relationship)
        .await
}

pub(super) async fn update_federation_relationship(
    pool: &AnyPool,
    relationship: &StoredFederationRelationship,
) -> Result<()> {
    RELATIONSHIPS
        .update(pool, &relationship.trust_domain, relationship)
        .await
}

pub(super) async fn get_federation_relationship(
    pool: &AnyPool,
    trust_domain: &str,
) -> Result<Option<StoredFederationRelationship>> {
    RELATIONSHIPS.get(pool, trust_domain).await
}

pub(super) async fn delete_federation_relationship(
    pool: &AnyPool,
    trust_domain: &str,
) -> Result<StoredFederationRelationship> {
    RELATIONSHIPS.delete(pool, trust_domain).await
}

pub(super) async fn list_federation_relationships(
    pool: &AnyPool,
) -> Result<Vec<StoredFederationRelationship>> {
    RELATIONSHIPS.list(pool).await
}

/// Server `server_id`'s journal (`ca_journals`); else, while no server
/// has one of its own, the version 1 journal (`ca_journal`, `id = 1`).
pub(super) async fn get_ca_journal(pool: &AnyPool, server_id: &str) -> Result<Option<Vec<u8>>> {
    let row = sqlx::query(
        "SELECT journal FROM ca_journals WHERE server_id = $1 \
         UNION ALL SELECT journal FROM ca_journal WHERE id = 1 \
         AND NOT EXISTS (SELECT 1 FROM ca_journals) LIMIT 1",
    )
    .bind(server_id)
    .fetch_optional(pool)
    .await
    .map_err(|e| backend("reading ca_journals", e))?;
    row.map(|row| row.try_get::<Vec<u8>, _>(0))
        .transpose()
        .map_err(|e| backend("reading ca_journals", e))
}

/// Writes server `server_id`'s journal; the first write also retires the
/// version 1 journal (adopted by [`get_ca_journal`] or never used), in
/// the same transaction.
pub(super) async fn set_ca_journal(
    pool: &AnyPool,
    database_type: DatabaseType,
    server_id: &str,
    journal: Vec<u8>,
) -> Result<()> {
    let mut tx = begin_write(pool, database_type).await?;
    sqlx::query(
        "INSERT INTO ca_journals (server_id, journal) VALUES ($1, $2) \
         ON CONFLICT (server_id) DO UPDATE SET journal = excluded.journal",
    )
    .bind(server_id)
    .bind(journal)
    .execute(&mut *tx)
    .await
    .map_err(|e| backend("writing ca_journals", e))?;
    sqlx::query("DELETE FROM ca_journal")
        .execute(&mut *tx)
        .await
        .map_err(|e| backend("writing ca_journal", e))?;
    tx.commit()
        .await
        .map_err(|e| backend("writing ca_journals", e))
}

/// Compare-and-swap on the stored record text, so a concurrent writer's
/// change (another server) is never overwritten: `update` runs again on it.
pub(super) async fn update_bundle(
    pool: &AnyPool,
    trust_domain: &str,
    update: &BundleUpdate<'_>,
) -> Result<Option<StoredBundle>> {
    loop {
        let row = sqlx::query("SELECT record FROM bundles WHERE trust_domain = $1")
            .bind(trust_domain)
            .fetch_optional(pool)
            .await
            .map_err(|e| backend("reading bundles", e))?;
        let old: Option<String> = row
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(|e| backend("reading bundles", e))?;
        let current: Option<StoredBundle> = match &old {
            Some(record) => Some(decode("bundles", trust_domain, record)?),
            None => None,
        };
        let Some(next) = update(current.clone()) else {
            return Ok(current);
        };
        let record = encode(BUNDLES.kind, &next)?;
        let written = match &old {
            Some(old) => sqlx::query(
                "UPDATE bundles SET record = $2 WHERE trust_domain = $1 AND record = $3",
            )
            .bind(trust_domain)
            .bind(record)
            .bind(old.as_str()),
            None => sqlx::query(
                "INSERT INTO bundles (trust_domain, record) VALUES ($1, $2) \
                 ON CONFLICT (trust_domain) DO NOTHING",
            )
            .bind(trust_domain)
            .bind(record),
        }
        .execute(pool)
        .await
        .map_err(|e| backend("writing bundles", e))?;
        if written.rows_affected() == 1 {
            return Ok(Some(next));
        }
    }
}
