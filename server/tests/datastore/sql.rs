//! The SQL backend: the conformance suite on SQLite and on a real
//! PostgreSQL the test starts (`spinel_test_fixtures::postgres`), then
//! cases of several handles on one database, as several servers have.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use spinel_server::datastore::sql::{DatabaseType, SqlDataStore, SqlOptions};
use spinel_server::datastore::{
    DataStore, DataStoreError, EntryFilter, JoinToken, RegistrationEntry, StoredSelector,
};

use super::conformance::run_suite;

fn options(database_type: DatabaseType, url: String) -> SqlOptions {
    SqlOptions {
        database_type,
        url,
        ro_url: None,
        max_open_conns: Some(8),
        max_idle_conns: None,
        conn_max_lifetime: None,
        disable_migration: false,
        log_sql: false,
    }
}

fn sqlite_options(path: &std::path::Path) -> SqlOptions {
    let url = spinel_server::datastore::sql::options::connection_url(
        DatabaseType::Sqlite,
        path.to_str().unwrap(),
    )
    .unwrap();
    options(DatabaseType::Sqlite, url)
}

async fn open(options: &SqlOptions) -> Arc<dyn DataStore> {
    Arc::new(SqlDataStore::open(options).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let made = AtomicUsize::new(0);
    run_suite(|| {
        let n = made.fetch_add(1, Ordering::Relaxed);
        let options = sqlite_options(&dir.path().join(format!("store-{n}/datastore.sqlite3")));
        async move { open(&options).await }
    })
    .await;
}

fn entry(n: usize) -> RegistrationEntry {
    RegistrationEntry {
        spiffe_id: format!("spiffe://example.org/w{n}"),
        parent_id: "spiffe://example.org/spire/agent/join_token/t".into(),
        selectors: vec![StoredSelector {
            kind: "unix".into(),
            value: format!("uid:{n}"),
        }],
        ..Default::default()
    }
}

/// Two handles on one database (two servers): of two takers of one join
/// token, one on each handle, exactly one wins; entry writes through both
/// get distinct revisions, and each handle's change log sees the other's
/// writes.
async fn check_two_handles(a: Arc<dyn DataStore>, b: Arc<dyn DataStore>) {
    for round in 0..20 {
        let value = format!("shared-{round}");
        a.create_join_token(JoinToken {
            value: value.clone(),
            expires_at: i64::MAX,
        })
        .await
        .unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let take = |ds: Arc<dyn DataStore>| {
            let (start, value) = (start.clone(), value.clone());
            tokio::spawn(async move {
                start.wait().await;
                ds.take_join_token(&value).await.unwrap()
            })
        };
        let (ta, tb) = (take(a.clone()), take(b.clone()));
        let winners =
            usize::from(ta.await.unwrap().is_some()) + usize::from(tb.await.unwrap().is_some());
        assert_eq!(
            winners, 1,
            "round {round}: exactly one handle gets the token"
        );
    }

    let before = a.entries_revision().await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let writers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(w, ds)| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut ids = Vec::new();
                for i in 0..25 {
                    let e = ds.create_entry(entry(w * 100 + i)).await.unwrap();
                    let e = ds.update_entry(e).await.unwrap();
                    ids.push(e.id);
                }
                ids
            })
        })
        .collect();
    let mut written = std::collections::BTreeSet::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    let after = b.entries_revision().await.unwrap();
    assert_eq!(
        after - before,
        100,
        "every create and update of both handles has its own revision"
    );
    assert_eq!(a.entries_revision().await.unwrap(), after);
    for ds in [&a, &b] {
        let seen: std::collections::BTreeSet<String> = ds
            .entry_changes_since(before)
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(seen, written, "the change log holds both handles' writes");
    }
    // A similar entry through the other handle is refused.
    let dup = b.create_entry(entry(0)).await;
    assert!(dup.is_err(), "{dup:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_handles_share_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let options = sqlite_options(&dir.path().join("shared.sqlite3"));
    let (a, b) = (open(&options).await, open(&options).await);
    check_two_handles(a, b).await;
}

/// A version 1 database kept one CA journal (`ca_journal`, id 1): the
/// first server to start without a journal of its own adopts it, and
/// once any server has its own, no other server is handed it.
#[tokio::test]
async fn sqlite_version_1_journal_is_adopted_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = sqlite_options(&dir.path().join("v1.sqlite3"));
    let store = SqlDataStore::open(&options).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&options.url).await.unwrap();
    sqlx::query("INSERT INTO ca_journal (id, journal) VALUES (1, x'6f6c64')")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        store.get_ca_journal("x").await.unwrap(),
        Some(b"old".to_vec())
    );
    store.set_ca_journal("x", b"old".to_vec()).await.unwrap();
    assert_eq!(store.get_ca_journal("y").await.unwrap(), None);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ca_journal")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the adopted journal is retired");
    pool.close().await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_refuses_a_newer_schema_and_disable_migration_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite3");
    let options = sqlite_options(&path);
    let mut unmigrated = sqlite_options(&dir.path().join("fresh.sqlite3"));
    unmigrated.disable_migration = true;
    let err = SqlDataStore::open(&unmigrated).await.unwrap_err();
    assert!(err.to_string().contains("schema_version"), "{err}");

    let store = SqlDataStore::open(&options).await.unwrap();
    store.set_ca_journal("s1", b"j".to_vec()).await.unwrap();
    store.close().await;
    // Opening again (migration on or off) keeps the data.
    let mut checked = options.clone();
    checked.disable_migration = true;
    let store = SqlDataStore::open(&checked).await.unwrap();
    assert_eq!(
        store.get_ca_journal("s1").await.unwrap(),
        Some(b"j".to_vec())
    );
    store.close().await;

    // A newer server moved the schema on: this one refuses to touch it.
    let pool = sqlx::SqlitePool::connect(&options.url).await.unwrap();
    sqlx::query("UPDATE schema_version SET version = 999")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let err = SqlDataStore::open(&options).await.unwrap_err();
    assert!(
        err.to_string().contains("999") && err.to_string().contains("newer"),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_change_log_is_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlDataStore::open(&sqlite_options(&dir.path().join("p.sqlite3")))
        .await
        .unwrap()
        .with_changes_kept(4);
    let start = store.entries_revision().await.unwrap();
    let mut last = None;
    for i in 0..12 {
        last = Some(store.create_entry(entry(i)).await.unwrap());
    }
    let now = store.entries_revision().await.unwrap();
    assert_eq!(
        store.entry_changes_since(start).await.unwrap(),
        None,
        "pruned away"
    );
    let recent = store.entry_changes_since(now - 2).await.unwrap().unwrap();
    assert_eq!(recent.len(), 2);
    assert!(recent.contains(&last.unwrap().id));
}

// --- PostgreSQL ---

use spinel_test_fixtures::postgres::{self, Postgres, PostgresOptions};

/// A PostgreSQL server for this test, or `None` (the test then says it
/// checked nothing) where none is installed.
fn start_postgres() -> Option<(tempfile::TempDir, Postgres)> {
    let Some(install) = postgres::available() else {
        eprintln!("skipped: needs PostgreSQL under /usr/lib/postgresql (and the postgres user when run as root)");
        return None;
    };
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let pg = Postgres::start(&install, dir.path(), &PostgresOptions::default()).unwrap();
    Some((dir, pg))
}

/// Options for a new database `name` on `pg`, in libpq's keyword form.
fn pg_options(pg: &Postgres, name: &str) -> SqlOptions {
    pg.create_database(name).unwrap();
    let url = spinel_server::datastore::sql::options::connection_url(
        DatabaseType::Postgres,
        &pg.keyword_connection_string(name),
    )
    .unwrap();
    options(DatabaseType::Postgres, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conforms() {
    let Some((_dir, pg)) = start_postgres() else {
        return;
    };
    let made = AtomicUsize::new(0);
    run_suite(|| {
        let n = made.fetch_add(1, Ordering::Relaxed);
        let options = pg_options(&pg, &format!("conformance_{n}"));
        async move { open(&options).await }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_handles_share_one_database() {
    let Some((_dir, pg)) = start_postgres() else {
        return;
    };
    let options = pg_options(&pg, "shared");
    // Both handles migrate at once: the schema is made once.
    let (a, b) = tokio::join!(SqlDataStore::open(&options), SqlDataStore::open(&options));
    let (a, b): (Arc<dyn DataStore>, Arc<dyn DataStore>) =
        (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    check_two_handles(a, b).await;
}

/// With the database gone, reads and writes fail as `Unavailable` (the API
/// answers `UNAVAILABLE`, and clients retry) rather than as an internal
/// error, promptly rather than after the pool's whole acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_down_is_unavailable() {
    let Some((_dir, pg)) = start_postgres() else {
        return;
    };
    let options = pg_options(&pg, "down");
    let store = open(&options).await;
    store.create_entry(entry(1)).await.unwrap();
    drop(pg);
    let started = std::time::Instant::now();
    let read = store.list_entries(&EntryFilter::default()).await;
    assert!(
        matches!(read, Err(DataStoreError::Unavailable(_))),
        "{read:?}"
    );
    let write = store.create_entry(entry(2)).await;
    assert!(
        matches!(write, Err(DataStoreError::Unavailable(_))),
        "{write:?}"
    );
    println!("both failed after {:?}", started.elapsed());
}
