//! The SQL backend: PostgreSQL (several servers on one database) and
//! SQLite (SPIRE's stock `server.conf`), one code path for both through
//! sqlx's `Any` driver with runtime queries.
//!
//! Layout (schema in `migrations/`, applied by `schema.rs`):
//! - `entries`: one row per entry, the record as JSON beside the columns
//!   looked up by (`spiffe_id`, `parent_id`, both indexed with the ID) and
//!   `similar_key` (unique: a digest of parent, SPIFFE ID and the selector
//!   set), so a second registration of the same thing is refused;
//! - `entry_changes`: revision -> entry ID, the change log behind
//!   [`DataStore::entry_changes_since`], pruned like sled's to the newest
//!   [`CHANGES_KEPT`] (at most twice that);
//! - `counters`: the entry revision and the change log's floor;
//! - `agents`, `join_tokens`, `bundles`, `federation_relationships`,
//!   `ca_journals` (one per server; `ca_journal` is version 1's single one).
//!
//! Atomicity: every entry write is one transaction that starts by locking
//! the `entries_revision` counter row (an `UPDATE ... RETURNING`). That
//! serializes entry writes across every server on the database (PostgreSQL
//! row lock, SQLite's single writer), so the parent-cycle check
//! ([`super::lineage`]), the similar-entry check and the write are one step,
//! revisions never collide, and a change-log row commits in revision order
//! (a reader that saw revision N never later finds a change below N). A
//! join token is taken with one `DELETE ... RETURNING` (invariant 7); an
//! agent is banned or evicted with one `UPDATE`/`DELETE`. A call returns
//! after its commit, which both databases make durable (PostgreSQL's
//! default `synchronous_commit`; SQLite in WAL mode with `synchronous =
//! FULL`): invariant 6.
//!
//! Listings (entries, agents, bundles, relationships) go to the read
//! replica (`ro_connection_string`) when one is configured, and may lag
//! the primary by the replication delay; single-record reads, revision
//! and change-log reads go to the primary, so an agent's ban or a bundle
//! change is never read stale.

mod change_log;
mod entries;
pub mod options;
mod records;
mod schema;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use spinel_spiffe::Clock;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Transaction};

pub use options::{DatabaseType, SqlOptions};
pub use schema::LATEST as SCHEMA_VERSION;

use super::{
    AttestedAgent, BundleUpdate, DataStore, DataStoreError, EntryFilter, JoinToken,
    RegistrationEntry, Result, StoredBundle, StoredFederationRelationship,
};

/// How many entry changes the log keeps at least; a cache further behind
/// than that reloads everything (as the sled backend).
pub const CHANGES_KEPT: u64 = 65_536;

/// Default pool size when `max_open_conns` is not set.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long a SQLite write waits for another connection's write lock.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 30_000;

/// The SQL-backed datastore. Cloning is cheap and shares the pools.
#[derive(Clone)]
pub struct SqlDataStore {
    inner: Arc<Inner>,
}

struct Inner {
    database_type: DatabaseType,
    /// The connection string with any password hidden, for messages.
    display: String,
    primary: AnyPool,
    /// The read replica; the primary when none is configured.
    reads: AnyPool,
    clock: Clock,
    changes_kept: u64,
}

impl std::fmt::Debug for SqlDataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlDataStore")
            .field("database_type", &self.inner.database_type)
            .field("database", &self.inner.display)
            .finish_non_exhaustive()
    }
}

/// A storage-engine failure with what was being done.
pub(super) fn backend<E: std::error::Error + 'static>(context: &str, e: E) -> DataStoreError {
    let message = format!("{context}: {e}");
    let sqlx_error = (&e as &dyn std::error::Error).downcast_ref::<sqlx::Error>();
    if sqlx_error.is_some_and(unreachable_database) {
        DataStoreError::Unavailable(message)
    } else {
        DataStoreError::Backend(message)
    }
}

/// Whether `e` says the database cannot be reached now, rather than that
/// it refused the statement: connection failures, an exhausted or closed
/// pool, and PostgreSQL's connection-exception (class 08) and
/// operator-intervention shutdown codes (57P01 to 57P03).
fn unreachable_database(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Starts a write transaction. On SQLite `BEGIN IMMEDIATE` takes the write
/// lock at once (waiting up to the busy timeout), so a transaction never
/// fails half-way to upgrade a read lock.
pub(super) async fn begin_write(
    pool: &AnyPool,
    database_type: DatabaseType,
) -> Result<Transaction<'static, Any>> {
    let statement = match database_type {
        DatabaseType::Postgres => "BEGIN",
        DatabaseType::Sqlite => "BEGIN IMMEDIATE",
    };
    pool.begin_with(statement)
        .await
        .map_err(|e| backend("starting a transaction", e))
}

impl SqlDataStore {
    /// Connects (pools for the primary and the replica), then migrates the
    /// schema unless `disable_migration`. For SQLite the file and its
    /// directory are created when missing.
    pub async fn open(options: &SqlOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let shown = options::redact(&options.url);
        if options.database_type == DatabaseType::Sqlite {
            if let Some(dir) = options::sqlite_path(&options.url)
                .as_deref()
                .and_then(std::path::Path::parent)
                .filter(|d| !d.as_os_str().is_empty())
            {
                create_dir(dir)?;
            }
        }
        let primary = pool(options, &options.url, &shown).await?;
        let reads = match &options.ro_url {
            Some(url) => pool(options, url, &options::redact(url)).await?,
            None => primary.clone(),
        };
        let found = schema::migrate(&primary, options.database_type, options.disable_migration)
            .await
            .map_err(|e| match e {
                DataStoreError::Backend(reason) => {
                    DataStoreError::Backend(format!("{shown}: {reason}"))
                }
                other => other,
            })?;
        tracing::info!(
            database_type = options.database_type.name(),
            database = %shown,
            schema_version = found.max(schema::LATEST),
            read_replica = options.ro_url.is_some(),
            "SQL datastore open"
        );
        Ok(SqlDataStore {
            inner: Arc::new(Inner {
                database_type: options.database_type,
                display: shown,
                primary,
                reads,
                clock: Clock::system(),
                changes_kept: CHANGES_KEPT,
            }),
        })
    }

    /// Uses `clock` for the `created_at` of entries created without one
    /// (default: the system clock).
    pub fn with_clock(self, clock: Clock) -> Self {
        self.rebuild(|inner| inner.clock = clock)
    }

    /// Keeps at least `kept` changes in the change log instead of
    /// [`CHANGES_KEPT`] (tests of pruning).
    pub fn with_changes_kept(self, kept: u64) -> Self {
        self.rebuild(|inner| inner.changes_kept = kept)
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            database_type: self.inner.database_type,
            display: self.inner.display.clone(),
            primary: self.inner.primary.clone(),
            reads: self.inner.reads.clone(),
            clock: self.inner.clock.clone(),
            changes_kept: self.inner.changes_kept,
        };
        change(&mut inner);
        SqlDataStore {
            inner: Arc::new(inner),
        }
    }

    /// Which database this is.
    pub fn database_type(&self) -> DatabaseType {
        self.inner.database_type
    }

    /// Closes the pools (waiting for connections in use to come back).
    pub async fn close(&self) {
        self.inner.primary.close().await;
        self.inner.reads.close().await;
    }

    fn primary(&self) -> &AnyPool {
        &self.inner.primary
    }

    fn reads(&self) -> &AnyPool {
        &self.inner.reads
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        begin_write(self.primary(), self.inner.database_type).await
    }
}

fn create_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| backend(&format!("creating {}", dir.display()), e))
}

/// A pool on `url` with the configured limits; SQLite connections are set
/// to WAL, `synchronous = FULL` and a busy timeout as they open.
async fn pool(options: &SqlOptions, url: &str, display: &str) -> Result<AnyPool> {
    let mut connect = AnyConnectOptions::from_str(url).map_err(|_| {
        DataStoreError::Backend(format!("{display}: not a usable connection string"))
    })?;
    connect = if options.log_sql {
        connect.log_statements(tracing::log::LevelFilter::Info)
    } else {
        connect.disable_statement_logging()
    };
    let sqlite = options.database_type == DatabaseType::Sqlite;
    let pool = AnyPoolOptions::new()
        .max_connections(
            options
                .max_open_conns
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
        )
        .max_lifetime(
            options
                .conn_max_lifetime
                .filter(|d| !d.is_zero())
                .or(Some(Duration::from_secs(30 * 60))),
        )
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    conn.execute(&*format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
                        .await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                }
                Ok(())
            })
        })
        .connect_with(connect)
        .await
        .map_err(|e| backend(&format!("connecting to {display}"), e))?;
    Ok(pool)
}

#[async_trait]
impl DataStore for SqlDataStore {
    async fn create_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry> {
        let mut outcomes = self.create_entries_tx(vec![entry]).await?;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(DataStoreError::Backend("no outcome for the entry".into())))
    }

    async fn create_entries(
        &self,
        entries: Vec<RegistrationEntry>,
    ) -> Result<Vec<Result<RegistrationEntry>>> {
        self.create_entries_tx(entries).await
    }

    async fn update_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry> {
        self.update_entry_tx(entry).await
    }

    async fn delete_entry(&self, id: &str) -> Result<RegistrationEntry> {
        self.delete_entry_tx(id).await
    }

    async fn get_entry(&self, id: &str) -> Result<Option<RegistrationEntry>> {
        entries::get_entry(self.primary(), id).await
    }

    async fn list_entries(&self, filter: &EntryFilter) -> Result<Vec<RegistrationEntry>> {
        self.list_entries_page(filter, None, usize::MAX).await
    }

    async fn list_entries_page(
        &self,
        filter: &EntryFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RegistrationEntry>> {
        entries::list_entries_page(self.reads(), filter, after, limit).await
    }

    async fn count_entries(&self) -> Result<u64> {
        entries::count_entries(self.primary()).await
    }

    async fn entries_revision(&self) -> Result<u64> {
        change_log::ENTRY_CHANGES.revision(self.primary()).await
    }

    async fn entry_changes_since(&self, revision: u64) -> Result<Option<Vec<String>>> {
        change_log::ENTRY_CHANGES
            .since(self.primary(), revision)
            .await
    }

    async fn create_agent(&self, agent: AttestedAgent) -> Result<()> {
        self.create_agent_tx(&agent).await
    }

    async fn update_agent(&self, agent: AttestedAgent) -> Result<()> {
        self.update_agent_tx(&agent).await
    }

    async fn get_agent(&self, spiffe_id: &str) -> Result<Option<AttestedAgent>> {
        records::get_agent(self.primary(), spiffe_id).await
    }

    async fn delete_agent(&self, spiffe_id: &str) -> Result<AttestedAgent> {
        self.delete_agent_tx(spiffe_id).await
    }

    async fn agents_revision(&self) -> Result<Option<u64>> {
        change_log::AGENT_CHANGES
            .revision(self.primary())
            .await
            .map(Some)
    }

    async fn agent_changes_since(&self, revision: u64) -> Result<Option<Vec<String>>> {
        change_log::AGENT_CHANGES
            .since(self.primary(), revision)
            .await
    }

    async fn list_agents(&self) -> Result<Vec<AttestedAgent>> {
        records::list_agents(self.reads()).await
    }

    async fn count_agents(&self) -> Result<u64> {
        records::count_agents(self.reads()).await
    }

    async fn create_join_token(&self, token: JoinToken) -> Result<()> {
        records::create_join_token(self.primary(), &token).await
    }

    async fn take_join_token(&self, value: &str) -> Result<Option<JoinToken>> {
        records::take_join_token(self.primary(), value).await
    }

    async fn prune_join_tokens(&self, unix_seconds: i64) -> Result<u64> {
        records::prune_join_tokens(self.primary(), unix_seconds).await
    }

    async fn get_bundle(&self, trust_domain: &str) -> Result<Option<StoredBundle>> {
        records::get_bundle(self.primary(), trust_domain).await
    }

    async fn set_bundle(&self, bundle: StoredBundle) -> Result<()> {
        records::set_bundle(self.primary(), &bundle).await
    }

    async fn update_bundle(
        &self,
        trust_domain: &str,
        update: &BundleUpdate<'_>,
    ) -> Result<Option<StoredBundle>> {
        records::update_bundle(self.primary(), trust_domain, update).await
    }

    async fn delete_bundle(&self, trust_domain: &str) -> Result<StoredBundle> {
        records::delete_bundle(self.primary(), trust_domain).await
    }

    async fn list_bundles(&self) -> Result<Vec<StoredBundle>> {
        records::list_bundles(self.reads()).await
    }

    async fn create_federation_relationship(
        &self,
        relationship: StoredFederationRelationship,
    ) -> Result<()> {
        records::create_federation_relationship(self.primary(), &relationship).await
    }

    async fn update_federation_relationship(
        &self,
        relationship: StoredFederationRelationship,
    ) -> Result<()> {
        records::update_federation_relationship(self.primary(), &relationship).await
    }

    async fn get_federation_relationship(
        &self,
        trust_domain: &str,
    ) -> Result<Option<StoredFederationRelationship>> {
        records::get_federation_relationship(self.primary(), trust_domain).await
    }

    async fn delete_federation_relationship(
        &self,
        trust_domain: &str,
    ) -> Result<StoredFederationRelationship> {
        records::delete_federation_relationship(self.primary(), trust_domain).await
    }

    async fn list_federation_relationships(&self) -> Result<Vec<StoredFederationRelationship>> {
        records::list_federation_relationships(self.reads()).await
    }

    async fn get_ca_journal(&self, server_id: &str) -> Result<Option<Vec<u8>>> {
        records::get_ca_journal(self.primary(), server_id).await
    }

    async fn set_ca_journal(&self, server_id: &str, journal: Vec<u8>) -> Result<()> {
        records::set_ca_journal(self.primary(), self.inner.database_type, server_id, journal).await
    }
}
