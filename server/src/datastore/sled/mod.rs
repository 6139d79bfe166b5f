//! The embedded backend: sled in the server's data directory.
//!
//! Layout (version 2; one sled tree per kind, records as JSON):
//! - `entries`: entry ID -> [`RegistrationEntry`]. Its indexes (by parent,
//!   by SPIFFE ID, and by similarity, which refuses a second registration
//!   of the same thing) are held in memory, built from these records at
//!   open (the `index` module);
//! - `agents` (by SPIFFE ID), `join_tokens` (by value), `bundles` (by trust
//!   domain), `federation_relationships` (by trust domain);
//! - `entry_changes`: one row per entry write, keyed by the last revision
//!   it took, listing the IDs of the entries it created, updated or deleted
//!   (one revision each, in order): the change log that lets caches follow
//!   the store incrementally ([`DataStore::entry_changes_since`]), pruned
//!   to the newest changes;
//! - `meta`: the layout version, the entry revision counter and count, the
//!   change log's floor, and the CA journal of each server (`ca_journal/<id>`).
//!
//! Version 1 kept the three entry indexes as sled trees and one change-log
//! row per revision: five rows per entry written, where version 2 writes
//! one. A version 1 store is upgraded when it opens (its index trees are
//! dropped and its change log restarts at the current revision).
//!
//! An entry create or update first checks for parent cycles
//! ([`super::lineage`]) and then writes, under one lock, so that racing
//! writes cannot together close a cycle.
//!
//! An entry, its change-log row and the counters change in one sled
//! transaction, so a crash never leaves them out of step; a batch create is
//! one transaction for all its entries, so a crash leaves all of them or
//! none.
//! Every write is flushed to disk (fsync) before the call returns
//! (invariant 6). A join token is taken
//! with one atomic `remove` (invariant 7). A record that does not decode is
//! a [`Corrupt`](super::DataStoreError::Corrupt) error naming tree and key
//! (never the key of a join token, which is the secret), not a panic.
//!
//! sled holds an exclusive lock on the database while it is open: a second
//! server on the same `data_dir` is refused at [`SledDataStore::open`].

mod codec;
mod entries;
mod federation;
mod index;
mod open;
mod records;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use spinel_spiffe::Clock;

use super::{
    AttestedAgent, BundleUpdate, DataStore, EntryFilter, JoinToken, RegistrationEntry, Result,
    StoredBundle, StoredFederationRelationship,
};
use codec::backend;

const ENTRIES: &str = "entries";
/// The entry index trees of layout version 1, dropped by the upgrade.
const LEGACY_INDEX_TREES: [&str; 3] = [
    "entries_by_parent",
    "entries_by_spiffe_id",
    "entries_similar",
];
const AGENTS: &str = "agents";
const TOKENS: &str = "join_tokens";
const BUNDLES: &str = "bundles";
const FEDERATION: &str = "federation_relationships";
const META: &str = "meta";
const CHANGES: &str = "entry_changes";

/// `meta` key: the layout version, written when the store is created.
const FORMAT_VERSION_KEY: &[u8] = b"format_version";
/// `meta` key: bumped on every entry create, update and delete.
const ENTRIES_REVISION_KEY: &[u8] = b"entries_revision";
/// `meta` key: the number of entries.
const ENTRIES_COUNT_KEY: &[u8] = b"entries_count";
/// `meta` key: the lowest revision from which the entry change log is
/// complete (changes after it are all in `entry_changes`).
const CHANGES_FLOOR_KEY: &[u8] = b"entry_changes_floor";
/// How many entry changes the log keeps at least; a cache further behind
/// than that reloads everything.
const CHANGES_KEPT: u64 = 65_536;
/// `meta` key: the CA journal as kept before journals were per server.
const LEGACY_CA_JOURNAL_KEY: &[u8] = b"ca_journal";
/// `meta` key prefix: `ca_journal/<server id>`, each server's CA journal.
const CA_JOURNAL_PREFIX: &[u8] = b"ca_journal/";

/// The sled-backed datastore. Cloning is cheap and shares the database.
#[derive(Clone)]
pub struct SledDataStore {
    path: PathBuf,
    db: ::sled::Db,
    trees: Trees,
    clock: Clock,
}

/// The open trees.
#[derive(Clone)]
struct Trees {
    /// Held by every entry write from its checks to the end of its
    /// index update: the parent-cycle and similarity checks read other
    /// entries and the indexes outside the transaction (sled's
    /// transactions cannot scan), so without it two racing updates could
    /// each pass and together close a cycle, and the indexes could be
    /// changed in another order than the records. sled allows one process
    /// per store, so a lock in the process is enough.
    entry_writes: std::sync::Arc<std::sync::Mutex<()>>,
    /// The entry indexes (see [`index`]).
    index: std::sync::Arc<std::sync::RwLock<index::EntryIndex>>,
    entries: ::sled::Tree,
    agents: ::sled::Tree,
    tokens: ::sled::Tree,
    bundles: ::sled::Tree,
    federation: ::sled::Tree,
    meta: ::sled::Tree,
    changes: ::sled::Tree,
}

// sled's own Debug prints every record, join tokens included: show only
// where the store is.
impl std::fmt::Debug for SledDataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledDataStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SledDataStore {
    /// Where the database lives (`<temporary>` for [`Self::open_temporary`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Uses `clock` for the `created_at` of entries created without one
    /// (default: the system clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Flushes everything written so far to disk (fsync).
    ///
    /// Not sled's `flush_async`: in sled 0.34.7 concurrent `flush_async`
    /// calls deadlock, every sled I/O thread waiting in a flush for a write
    /// that needs one of them (sled issues #1241, #1308, #1357; reproduced
    /// here by `concurrent_writes_do_not_deadlock`). A blocking `flush` on
    /// tokio's blocking pool leaves sled's own threads free for the writes.
    async fn flush(&self) -> Result<()> {
        let db = self.db.clone();
        let context = format!("flushing {} to disk", self.path.display());
        blocking(move || db.flush().map(drop).map_err(|e| backend(&context, e))).await
    }
}

/// Runs blocking sled work (a scan, a flush) off the async runtime's
/// worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| backend("datastore task", e))?
}

#[async_trait]
impl DataStore for SledDataStore {
    async fn create_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry> {
        let stored = self.trees.create_entry(entry, self.clock.unix_seconds())?;
        self.flush().await?;
        Ok(stored)
    }

    async fn create_entries(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<RegistrationEntry>>> {
        let trees = self.trees.clone();
        let now = self.clock.unix_seconds();
        let outcomes = blocking(move || {
            let outcomes = trees.create_entries(entries, now)?;
            spinel_spiffe::failpoint::hit("datastore:entries:batch-written");
            Ok(outcomes)
        })
        .await?;
        // One flush for the batch: sled's flush makes every write before it
        // durable.
        self.flush().await?;
        Ok(outcomes)
    }

    async fn update_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry> {
        let stored = self.trees.update_entry(entry)?;
        self.flush().await?;
        Ok(stored)
    }

    async fn delete_entry(&self, id: &str) -> Result<RegistrationEntry> {
        let removed = self.trees.delete_entry(id)?;
        self.flush().await?;
        Ok(removed)
    }

    async fn get_entry(&self, id: &str) -> Result<Option<RegistrationEntry>> {
        self.trees.get_entry(id)
    }

    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<RegistrationEntry>> {
        let (trees, filter) = (self.trees.clone(), filter.clone());
        blocking(move || trees.list_entries(&filter)).await
    }

    async fn list_entries_page(
        &self,
        filter: &EntryFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RegistrationEntry>> {
        let (trees, filter) = (self.trees.clone(), filter.clone());
        let after = after.map(str::to_owned);
        blocking(move || trees.list_entries_page(&filter, after.as_deref(), limit)).await
    }

    async fn count_entries(&self) -> Result<u64> {
        self.trees.count_entries()
    }

    async fn entries_revision(&self) -> Result<u64> {
        self.trees.entries_revision()
    }

    async fn entry_changes_since(&self, revision: u64) -> Result<Option<Vec<String>>> {
        let trees = self.trees.clone();
        blocking(move || trees.entry_changes_since(revision)).await
    }

    async fn create_agent(&self, agent: AttestedAgent) -> Result<()> {
        self.trees.create_agent(&agent)?;
        self.flush().await
    }

    async fn update_agent(&self, agent: AttestedAgent) -> Result<()> {
        self.trees.update_agent(&agent)?;
        self.flush().await
    }

    async fn get_agent(&self, spiffe_id: &str) -> Result<Option<AttestedAgent>> {
        self.trees.get_agent(spiffe_id)
    }

    async fn delete_agent(&self, spiffe_id: &str) -> Result<AttestedAgent> {
        let removed = self.trees.delete_agent(spiffe_id)?;
        self.flush().await?;
        Ok(removed)
    }

    async fn list_agents(&self) -> Result<Vec<AttestedAgent>> {
        let trees = self.trees.clone();
        blocking(move || trees.list_agents()).await
    }

    async fn count_agents(&self) -> Result<u64> {
        let trees = self.trees.clone();
        blocking(move || Ok(u64::try_from(trees.agents.len()).unwrap_or(u64::MAX))).await
    }

    async fn create_join_token(&self, token: JoinToken) -> Result<()> {
        self.trees.create_join_token(&token)?;
        self.flush().await
    }

    /// Expired tokens are handed out too: the caller checks the expiry (and
    /// the token is gone either way). A token whose record does not decode
    /// is removed and reported as `Corrupt`.
    async fn take_join_token(&self, value: &str) -> Result<Option<JoinToken>> {
        let Some(taken) = self.trees.take_join_token(value)? else {
            return Ok(None);
        };
        self.flush().await?;
        codec::decode(TOKENS, codec::REDACTED, &taken).map(Some)
    }

    async fn prune_join_tokens(&self, unix_seconds: i64) -> Result<u64> {
        let trees = self.trees.clone();
        let pruned = blocking(move || trees.prune_join_tokens(unix_seconds)).await?;
        if pruned > 0 {
            self.flush().await?;
        }
        Ok(pruned)
    }

    async fn get_bundle(&self, trust_domain: &str) -> Result<Option<StoredBundle>> {
        self.trees.get_bundle(trust_domain)
    }

    async fn set_bundle(&self, bundle: StoredBundle) -> Result<()> {
        self.trees.set_bundle(&bundle)?;
        self.flush().await
    }

    async fn update_bundle(
        &self,
        trust_domain: &str,
        update: &BundleUpdate<'_>,
    ) -> Result<Option<StoredBundle>> {
        let (stored, written) = self.trees.update_bundle(trust_domain, update)?;
        if written {
            self.flush().await?;
        }
        Ok(stored)
    }

    async fn delete_bundle(&self, trust_domain: &str) -> Result<StoredBundle> {
        let removed = self.trees.delete_bundle(trust_domain)?;
        self.flush().await?;
        Ok(removed)
    }

    async fn list_bundles(&self) -> Result<Vec<StoredBundle>> {
        let trees = self.trees.clone();
        blocking(move || trees.list_bundles()).await
    }

    async fn create_federation_relationship(
        &self,
        relationship: StoredFederationRelationship,
    ) -> Result<()> {
        self.trees.create_federation_relationship(&relationship)?;
        self.flush().await
    }

    async fn update_federation_relationship(
        &self,
        relationship: StoredFederationRelationship,
    ) -> Result<()> {
        self.trees.update_federation_relationship(&relationship)?;
        self.flush().await
    }

    async fn get_federation_relationship(
        &self,
        trust_domain: &str,
    ) -> Result<Option<StoredFederationRelationship>> {
        self.trees.get_federation_relationship(trust_domain)
    }

    async fn delete_federation_relationship(
        &self,
        trust_domain: &str,
    ) -> Result<StoredFederationRelationship> {
        let removed = self.trees.delete_federation_relationship(trust_domain)?;
        self.flush().await?;
        Ok(removed)
    }

    async fn list_federation_relationships(&self) -> Result<Vec<StoredFederationRelationship>> {
        let trees = self.trees.clone();
        blocking(move || trees.list_federation_relationships()).await
    }

    async fn get_ca_journal(&self, server_id: &str) -> Result<Option<Vec<u8>>> {
        self.trees.get_ca_journal(server_id)
    }

    async fn set_ca_journal(&self, server_id: &str, journal: Vec<u8>) -> Result<()> {
        self.trees.set_ca_journal(server_id, journal)?;
        self.flush().await
    }
}

#[cfg(test)]
mod tests;
