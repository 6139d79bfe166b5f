//! The datastore: registration entries, attested agents, join tokens,
//! trust bundles and federation relationships.
//!
//! One trait, [`DataStore`], with an embedded backend ([`sled`], the default)
//! and a SQL one ([`sql`]: PostgreSQL, shared by several servers, and
//! SQLite); all pass the same conformance suite
//! (`tests/datastore/conformance.rs`).
//!
//! Rules every backend keeps:
//! - a write is durable before the call returns (invariant 6);
//! - [`DataStore::take_join_token`] hands a token out at most once, even to
//!   concurrent callers (invariant 7);
//! - every entry write bumps the entry's `revision_number` and the store's
//!   entry revision counter, so agents can sync incrementally;
//! - no entry write closes a parent cycle ([`lineage`]), even when two
//!   writes race: [`DataStoreError::ParentCycle`].

pub mod lineage;
mod model;
pub mod sled;
pub mod sql;

pub use model::*;

use async_trait::async_trait;

/// What went wrong in the datastore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataStoreError {
    /// The record does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// The kind of record (`entry`, `agent`, `bundle`, ...).
        kind: &'static str,
        /// Its key.
        id: String,
    },
    /// A record with the same identity already exists.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists {
        /// The kind of record.
        kind: &'static str,
        /// Its key (for entries: the ID of the existing similar entry).
        id: String,
    },
    /// The entry would be its own ancestor: its parent ID is its own SPIFFE
    /// ID, or descends from it through other entries.
    #[error("{} would make a parent cycle (parent -> child): {}", describe_entry(entry_id), cycle.join(" -> "))]
    ParentCycle {
        /// The refused entry's ID (empty for a new entry without one).
        entry_id: String,
        /// The cycle, from the entry's SPIFFE ID through its descendants
        /// to its parent ID and back to the SPIFFE ID.
        cycle: Vec<String>,
    },
    /// The stored data could not be read back: corruption or a foreign format.
    #[error("datastore is corrupt at {location}: {reason}")]
    Corrupt {
        /// Where (tree and key).
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// The storage engine failed.
    #[error("datastore I/O failed: {0}")]
    Backend(String),
    /// The database cannot be reached now (connection refused or lost,
    /// no free connection in time, the database shutting down): a retry
    /// later may succeed, and nothing was written.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

fn describe_entry(id: &str) -> String {
    if id.is_empty() {
        "the new entry".to_owned()
    } else {
        format!("entry {id:?}")
    }
}

/// Shorthand for datastore results.
pub type Result<T> = std::result::Result<T, DataStoreError>;

/// The change [`DataStore::update_bundle`] makes: from the stored bundle
/// (if any) to the one to store (`None`: no change).
pub type BundleUpdate<'a> = dyn Fn(Option<StoredBundle>) -> Option<StoredBundle> + Send + Sync + 'a;

/// The datastore seam. Implementations are cheap to share (`Arc<dyn DataStore>`).
#[async_trait]
pub trait DataStore: Send + Sync + std::fmt::Debug + 'static {
    // --- registration entries ---

    /// Stores a new entry. An empty `id` gets a fresh UUID. An entry with the
    /// same parent ID, SPIFFE ID and selector set already present is
    /// `AlreadyExists` naming that entry's ID. Sets `created_at` (to now,
    /// unless given) and `revision_number` (0 for a new entry). An entry
    /// that would close a parent cycle is `ParentCycle`. Returns the
    /// stored entry.
    async fn create_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry>;
    /// Creates each of `entries` as [`Self::create_entry`] would, in order
    /// (a later entry similar to an earlier one of the same call is
    /// `AlreadyExists`), with one outcome per entry, and makes them durable
    /// together before it returns: `Ok` means every created entry is on
    /// disk; `Err` means none is acknowledged.
    async fn create_entries(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<RegistrationEntry>>>;
    /// Replaces the entry with `entry.id` (NotFound if absent), bumping its
    /// revision number; `ParentCycle` as for create. Returns the stored
    /// entry.
    async fn update_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry>;
    /// Deletes an entry, returning it (NotFound if absent).
    async fn delete_entry(&self, id: &str) -> Result<RegistrationEntry>;
    /// One entry by ID.
    async fn get_entry(&self, id: &str) -> Result<Option<RegistrationEntry>>;
    /// Entries matching `filter`, ordered by ID.
    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<RegistrationEntry>>;
    /// One page of [`Self::list_entries`]: the first `limit` entries
    /// matching `filter` whose ID sorts after `after` (from the start
    /// without it), ordered by ID. A page costs what it returns (plus the
    /// entries the filter skips on the way), not the size of the table.
    async fn list_entries_page(
        &self,
        filter: &EntryFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RegistrationEntry>>;
    /// Number of entries.
    async fn count_entries(&self) -> Result<u64>;
    /// A counter bumped on every entry create/update/delete; lets caches
    /// tell whether anything changed.
    async fn entries_revision(&self) -> Result<u64>;
    /// The IDs of the entries created, updated or deleted after entry
    /// revision `revision` (each once, in no particular order), or `None`
    /// when this store cannot tell (its change log no longer reaches back
    /// that far, or `revision` is not one of its revisions): the caller
    /// then reads everything again. Lets caches follow the store without
    /// rereading it (`api/authorized.rs`).
    async fn entry_changes_since(&self, revision: u64) -> Result<Option<Vec<String>>>;

    // --- attested agents ---

    /// Stores a newly attested agent (AlreadyExists if its ID is present).
    async fn create_agent(&self, agent: AttestedAgent) -> Result<()>;
    /// Replaces a stored agent (NotFound if absent).
    async fn update_agent(&self, agent: AttestedAgent) -> Result<()>;
    /// One agent by SPIFFE ID.
    async fn get_agent(&self, spiffe_id: &str) -> Result<Option<AttestedAgent>>;
    /// Deletes an agent, returning it (NotFound if absent).
    async fn delete_agent(&self, spiffe_id: &str) -> Result<AttestedAgent>;
    /// All agents, ordered by SPIFFE ID.
    async fn list_agents(&self) -> Result<Vec<AttestedAgent>>;
    /// Number of stored agents (read at every metrics scrape). The default
    /// lists them; backends count without decoding.
    async fn count_agents(&self) -> Result<u64> {
        Ok(u64::try_from(self.list_agents().await?.len()).unwrap_or(u64::MAX))
    }

    /// The last revision of the agent change log (bumped on every agent
    /// create/update/delete), or `None` when this store keeps no such log.
    /// A server sharing the store with others follows the log to keep
    /// agent records in memory (`api/agents.rs`); the embedded store is
    /// read locally, where a lookup costs what a cache would, and keeps
    /// none.
    async fn agents_revision(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// The SPIFFE IDs of the agents created, updated or deleted after
    /// agent revision `revision` (each once), or `None` when this store
    /// cannot tell (no log, the log no longer reaches back that far, or
    /// `revision` is not one of its revisions).
    async fn agent_changes_since(&self, revision: u64) -> Result<Option<Vec<String>>> {
        let _ = revision;
        Ok(None)
    }

    // --- join tokens ---

    /// Stores a join token (AlreadyExists if the value is taken).
    async fn create_join_token(&self, token: JoinToken) -> Result<()>;
    /// Removes and returns the token atomically: of any number of
    /// concurrent callers with the same value, at most one gets `Some`.
    /// An expired token is returned too: the caller checks `expires_at`.
    async fn take_join_token(&self, value: &str) -> Result<Option<JoinToken>>;
    /// Deletes tokens that expired before `unix_seconds`; returns how many.
    async fn prune_join_tokens(&self, unix_seconds: i64) -> Result<u64>;

    // --- bundles ---

    /// The bundle of `trust_domain` (name, e.g. `example.org`).
    async fn get_bundle(&self, trust_domain: &str) -> Result<Option<StoredBundle>>;
    /// Creates or replaces the bundle of `bundle.trust_domain`.
    async fn set_bundle(&self, bundle: StoredBundle) -> Result<()>;
    /// Changes the bundle of `trust_domain` atomically: `update` gets the
    /// stored bundle (`None` if there is none) and returns the one to
    /// store, or `None` to leave it as it is. If another writer (another
    /// server on a shared database) changes the bundle in between, `update`
    /// runs again on what that writer stored, so no change is lost; it must
    /// therefore have no side effects. Returns the bundle stored after the
    /// call.
    async fn update_bundle(
        &self,
        trust_domain: &str,
        update: &BundleUpdate<'_>,
    ) -> Result<Option<StoredBundle>>;
    /// Deletes a bundle, returning it (NotFound if absent).
    async fn delete_bundle(&self, trust_domain: &str) -> Result<StoredBundle>;
    /// All bundles, ordered by trust domain.
    async fn list_bundles(&self) -> Result<Vec<StoredBundle>>;

    // --- federation relationships ---

    /// Stores a new relationship (AlreadyExists if its trust domain has one).
    async fn create_federation_relationship(
        &self,
        relationship: StoredFederationRelationship,
    ) -> Result<()>;
    /// Replaces the relationship of `relationship.trust_domain` (NotFound if absent).
    async fn update_federation_relationship(
        &self,
        relationship: StoredFederationRelationship,
    ) -> Result<()>;
    /// The relationship with `trust_domain`.
    async fn get_federation_relationship(
        &self,
        trust_domain: &str,
    ) -> Result<Option<StoredFederationRelationship>>;
    /// Deletes a relationship, returning it (NotFound if absent).
    async fn delete_federation_relationship(
        &self,
        trust_domain: &str,
    ) -> Result<StoredFederationRelationship>;
    /// All relationships, ordered by trust domain.
    async fn list_federation_relationships(&self) -> Result<Vec<StoredFederationRelationship>>;

    // --- CA state ---

    /// The opaque CA journal of server `server_id` (its record of
    /// prepared/active/old authorities); `None` before its first CA is
    /// made. Every server sharing a datastore keeps its own CA, so each
    /// has its own journal. A journal written before journals were kept
    /// per server is returned to the first server that asks while no
    /// server has one of its own (the server it belonged to, upgraded).
    async fn get_ca_journal(&self, server_id: &str) -> Result<Option<Vec<u8>>>;
    /// Replaces the CA journal of server `server_id`.
    async fn set_ca_journal(&self, server_id: &str, journal: Vec<u8>) -> Result<()>;
}
