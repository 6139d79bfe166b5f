//! sled's own behaviour: what `open` refuses and why, layout versions, and
//! what `Debug` shows. The backend-independent contract is in
//! `tests/datastore_conformance.rs`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::SledDataStore;
use crate::datastore::{
    AttestedAgent, DataStore, EntryFilter, JoinToken, RegistrationEntry, StoredSelector,
};

const AGENT: &str = "spiffe://example.org/spire/agent/join_token/t1";

fn entry(id: &str) -> RegistrationEntry {
    RegistrationEntry {
        id: id.into(),
        spiffe_id: "spiffe://example.org/old".into(),
        parent_id: AGENT.into(),
        selectors: vec![StoredSelector {
            kind: "unix".into(),
            value: "uid:1".into(),
        }],
        created_at: 7,
        ..Default::default()
    }
}

fn open_error(path: &Path) -> String {
    SledDataStore::open(path).unwrap_err().to_string()
}

/// Writes `value` under `key` in `tree` through a raw sled handle.
fn plant(path: &Path, tree: &str, key: &[u8], value: &[u8]) {
    let db = ::sled::open(path).unwrap();
    db.open_tree(tree).unwrap().insert(key, value).unwrap();
    db.flush().unwrap();
}

#[test]
fn a_file_is_not_a_datastore() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = open_error(file.path());
    assert!(err.contains(&file.path().display().to_string()), "{err}");
    assert!(err.contains("not a directory"), "{err}");
}

#[test]
fn a_directory_of_other_files_is_not_a_datastore() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    let err = open_error(dir.path());
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("notes.txt"), "{err}");
    // Even one that has a file named like sled's log.
    std::fs::write(dir.path().join("db"), vec![0xA5; 4096]).unwrap();
    assert!(open_error(dir.path()).contains("not a sled datastore"));
    assert!(!dir.path().join("conf").exists(), "nothing was written");
}

#[test]
fn a_garbage_sled_settings_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("conf"),
        b"this is no sled settings file at all",
    )
    .unwrap();
    std::fs::write(dir.path().join("db"), vec![0xA5; 4096]).unwrap();
    let err = open_error(dir.path());
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("not a sled database"), "{err}");
}

#[tokio::test]
async fn a_garbage_log_is_refused_not_started_over() {
    // sled reads a log it cannot parse as an empty database.
    let dir = tempfile::tempdir().unwrap();
    {
        let ds = SledDataStore::open(dir.path()).unwrap();
        ds.create_entry(entry("e1")).await.unwrap();
    }
    let db = dir.path().join("db");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::write(&db, vec![0x5A; usize::try_from(len).unwrap()]).unwrap();
    let err = open_error(dir.path());
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("no Spinel data"), "{err}");
}

#[test]
fn a_store_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _held = SledDataStore::open(dir.path()).unwrap();
    let err = open_error(dir.path());
    assert!(err.contains("already in use by another process?"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn a_closed_store_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledDataStore::open(dir.path()).unwrap());
    drop(SledDataStore::open(dir.path()).unwrap());
}

#[test]
fn an_unknown_layout_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledDataStore::open(dir.path()).unwrap());
    plant(dir.path(), "meta", b"format_version", &99u64.to_be_bytes());
    let err = open_error(dir.path());
    assert!(err.contains("layout version 99"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

#[tokio::test]
async fn an_unversioned_store_gets_its_indexes_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let old = entry("old-1");
    plant(
        dir.path(),
        "entries",
        b"old-1",
        &serde_json::to_vec(&old).unwrap(),
    );
    let ds = SledDataStore::open(dir.path()).unwrap();
    assert_eq!(ds.count_entries().await.unwrap(), 1);
    assert!(ds.entries_revision().await.unwrap() > 0);
    let under_agent = EntryFilter {
        parent_id: Some(AGENT.into()),
        ..Default::default()
    };
    assert_eq!(ds.list_entries(&under_agent).await.unwrap(), [old]);
    let dup = ds.create_entry(entry("")).await.unwrap_err();
    assert!(dup.to_string().contains("old-1"), "{dup}");
}

#[tokio::test]
async fn debug_shows_no_records() {
    let ds = SledDataStore::open_temporary().unwrap();
    let token = JoinToken {
        value: "do-not-print-me".into(),
        expires_at: i64::MAX,
    };
    ds.create_join_token(token).await.unwrap();
    let shown = format!("{ds:?}");
    assert!(!shown.contains("do-not-print-me"), "{shown}");
}

#[cfg(unix)]
#[test]
fn a_new_store_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("datastore");
    drop(SledDataStore::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// Many writers at once, each waiting for its flush: with sled's own
/// `flush_async` this hangs within a few rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let ds: Arc<dyn DataStore> = Arc::new(SledDataStore::open(dir.path()).unwrap());
    for round in 0..10 {
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let ds = ds.clone();
                tokio::spawn(async move {
                    let agent = AttestedAgent {
                        spiffe_id: format!("spiffe://example.org/agent/{round}/{i}"),
                        ..Default::default()
                    };
                    ds.create_agent(agent).await.unwrap();
                })
            })
            .collect();
        let all = futures::future::try_join_all(writers);
        // A deadlock also blocks runtime threads: watch from outside it.
        let (done, watched) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let waited = watched.recv_timeout(Duration::from_secs(60));
            if waited == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                // Straight to stderr: the test harness's capture dies with
                // the process.
                let _ = writeln!(
                    std::io::stderr(),
                    "concurrent writes deadlocked in round {round}"
                );
                std::process::abort();
            }
        });
        all.await.unwrap();
        done.send(()).unwrap();
    }
    assert_eq!(ds.list_agents().await.unwrap().len(), 640);
}

#[tokio::test]
async fn pages_walk_the_table_and_the_indexes_in_id_order() {
    let ds = SledDataStore::open_temporary().unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        let mut e = entry("");
        e.spiffe_id = format!("spiffe://example.org/w{i}");
        // Every third entry under another parent.
        if i % 3 == 0 {
            e.parent_id = "spiffe://example.org/spire/agent/join_token/t2".into();
        }
        ids.push(ds.create_entry(e).await.unwrap().id);
    }
    ids.sort();
    let pages = |filter: EntryFilter, limit: usize| {
        let ds = &ds;
        async move {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = ds
                    .list_entries_page(&filter, after.as_deref(), limit)
                    .await
                    .unwrap();
                assert!(page.len() <= limit);
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                seen.extend(page.into_iter().map(|e| e.id));
            }
            seen
        }
    };
    for limit in [1, 3, 10, 11] {
        assert_eq!(
            pages(EntryFilter::default(), limit).await,
            ids,
            "limit {limit}"
        );
        let under_agent = EntryFilter {
            parent_id: Some(AGENT.into()),
            ..Default::default()
        };
        let expected: Vec<String> = ds
            .list_entries(&under_agent)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(expected.len(), 6);
        assert_eq!(pages(under_agent, limit).await, expected, "limit {limit}");
    }
    let one = EntryFilter {
        spiffe_id: Some("spiffe://example.org/w4".into()),
        ..Default::default()
    };
    assert_eq!(pages(one, 1).await.len(), 1);
    assert!(ds
        .list_entries_page(&EntryFilter::default(), None, 0)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_batch_creates_in_order_and_answers_each_entry() {
    let dir = tempfile::tempdir().unwrap();
    let ds = SledDataStore::open(dir.path()).unwrap();
    let mut other = entry("");
    other.spiffe_id = "spiffe://example.org/other".into();
    let outcomes = ds
        .create_entries(vec![entry(""), entry(""), other])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    let first = outcomes[0].as_ref().unwrap();
    // The second is similar to the first of the same batch.
    let dup = outcomes[1].as_ref().unwrap_err().to_string();
    assert!(dup.contains(&first.id), "{dup}");
    assert!(outcomes[2].is_ok());
    // Acknowledged means on disk: a reopened store has both.
    drop(ds);
    let ds = SledDataStore::open(dir.path()).unwrap();
    assert_eq!(ds.count_entries().await.unwrap(), 2);
}

/// An entry of its own SPIFFE ID, so that many can coexist.
fn distinct(id: &str) -> RegistrationEntry {
    RegistrationEntry {
        spiffe_id: format!("spiffe://example.org/{id}"),
        ..entry(id)
    }
}

#[tokio::test]
async fn the_change_log_is_pruned_and_then_says_it_cannot_tell() {
    let ds = SledDataStore::open_temporary().unwrap();
    let start = ds.entries_revision().await.unwrap();
    for i in 0..10 {
        ds.create_entry(distinct(&format!("e{i}"))).await.unwrap();
    }
    // Kept 4: the log spans 10 > 2 x 4 revisions, so the oldest go.
    ds.trees.prune_changes_keeping(4).unwrap();
    assert_eq!(ds.entry_changes_since(start).await.unwrap(), None);
    let now = ds.entries_revision().await.unwrap();
    let recent = ds.entry_changes_since(now - 4).await.unwrap().unwrap();
    assert_eq!(recent, ["e6", "e7", "e8", "e9"]);
    assert_eq!(ds.entry_changes_since(now - 5).await.unwrap(), None);
}

#[tokio::test]
async fn a_store_from_before_the_change_log_starts_one_at_its_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let ds = SledDataStore::open(&path).unwrap();
    ds.create_entry(distinct("old")).await.unwrap();
    let before = ds.entries_revision().await.unwrap();
    drop(ds);
    // Remove what a store of an older build would not have.
    {
        let db = ::sled::open(&path).unwrap();
        db.drop_tree("entry_changes").unwrap();
        db.open_tree("meta")
            .unwrap()
            .remove(b"entry_changes_floor")
            .unwrap();
        db.flush().unwrap();
    }
    let ds = SledDataStore::open(&path).unwrap();
    assert_eq!(ds.entry_changes_since(before - 1).await.unwrap(), None);
    assert_eq!(
        ds.entry_changes_since(before).await.unwrap(),
        Some(Vec::new())
    );
    ds.create_entry(distinct("new")).await.unwrap();
    assert_eq!(
        ds.entry_changes_since(before).await.unwrap(),
        Some(vec!["new".to_owned()])
    );
}

#[tokio::test]
async fn a_batch_is_one_change_log_row_read_revision_by_revision() {
    let ds = SledDataStore::open_temporary().unwrap();
    let start = ds.entries_revision().await.unwrap();
    let batch = ["a", "b", "c"].map(distinct).to_vec();
    for outcome in ds.create_entries(batch).await.unwrap() {
        outcome.unwrap();
    }
    assert_eq!(ds.entries_revision().await.unwrap(), start + 3);
    assert_eq!(ds.trees.changes.len(), 1);
    let since = |r| ds.entry_changes_since(r);
    assert_eq!(since(start).await.unwrap().unwrap(), ["a", "b", "c"]);
    assert_eq!(since(start + 1).await.unwrap().unwrap(), ["b", "c"]);
    assert_eq!(since(start + 2).await.unwrap().unwrap(), ["c"]);
    assert!(since(start + 3).await.unwrap().unwrap().is_empty());
    assert_eq!(since(start + 4).await.unwrap(), None);
}

/// Writes a store as layout version 1 kept it: one entry with its three
/// index rows, and a change log of one row per revision.
fn plant_version_1(path: &Path, old: &RegistrationEntry) {
    let db = ::sled::open(path).unwrap();
    let tree = |name: &str| db.open_tree(name).unwrap();
    let part = |value: &str| {
        let mut key = u32::try_from(value.len()).unwrap().to_be_bytes().to_vec();
        key.extend_from_slice(value.as_bytes());
        key
    };
    let index_row = |value: &str| [part(value), old.id.as_bytes().to_vec()].concat();
    tree("entries")
        .insert(old.id.as_bytes(), serde_json::to_vec(old).unwrap())
        .unwrap();
    tree("entries_by_parent")
        .insert(index_row(&old.parent_id), &[][..])
        .unwrap();
    tree("entries_by_spiffe_id")
        .insert(index_row(&old.spiffe_id), &[][..])
        .unwrap();
    tree("entries_similar")
        .insert(old.similarity_key(), old.id.as_bytes())
        .unwrap();
    for revision in 1..=5u64 {
        tree("entry_changes")
            .insert(revision.to_be_bytes(), old.id.as_bytes())
            .unwrap();
    }
    let meta = tree("meta");
    meta.insert(b"format_version", &1u64.to_be_bytes()).unwrap();
    meta.insert(b"entries_revision", &5u64.to_be_bytes())
        .unwrap();
    meta.insert(b"entries_count", &1u64.to_be_bytes()).unwrap();
    meta.insert(b"entry_changes_floor", &0u64.to_be_bytes())
        .unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn a_version_1_store_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let old = entry("old-1");
    plant_version_1(dir.path(), &old);

    let ds = SledDataStore::open(dir.path()).unwrap();
    assert_eq!(ds.count_entries().await.unwrap(), 1);
    assert_eq!(ds.entries_revision().await.unwrap(), 5);
    let under_agent = EntryFilter {
        parent_id: Some(AGENT.into()),
        ..Default::default()
    };
    assert_eq!(
        ds.list_entries(&under_agent).await.unwrap(),
        std::slice::from_ref(&old)
    );
    let dup = ds.create_entry(entry("")).await.unwrap_err();
    assert!(dup.to_string().contains("old-1"), "{dup}");
    // The old rows cannot be read as batches: the log starts again at the
    // revision the store was at.
    assert_eq!(ds.entry_changes_since(4).await.unwrap(), None);
    assert_eq!(ds.entry_changes_since(5).await.unwrap(), Some(Vec::new()));
    ds.create_entry(distinct("new")).await.unwrap();
    assert_eq!(
        ds.entry_changes_since(5).await.unwrap(),
        Some(vec!["new".to_owned()])
    );
    drop(ds);

    let db = ::sled::open(dir.path()).unwrap();
    let meta = db.open_tree("meta").unwrap();
    let version = meta.get(b"format_version").unwrap().unwrap();
    assert_eq!(&version[..], &2u64.to_be_bytes());
    for legacy in [
        "entries_by_parent",
        "entries_by_spiffe_id",
        "entries_similar",
    ] {
        assert!(
            !db.tree_names()
                .iter()
                .any(|t| t.as_ref() == legacy.as_bytes()),
            "{legacy} is still there"
        );
    }
    drop((meta, db));
    // And it opens again as version 2, entries intact.
    let ds = SledDataStore::open(dir.path()).unwrap();
    assert_eq!(ds.count_entries().await.unwrap(), 2);
    assert_eq!(ds.get_entry("old-1").await.unwrap(), Some(old));
}

#[tokio::test]
async fn lookups_check_what_the_hashed_indexes_return() {
    let ds = SledDataStore::open_temporary().unwrap();
    *ds.trees.index.write().unwrap() = super::index::EntryIndex::colliding();
    let under = |parent: &str, id: &str| RegistrationEntry {
        parent_id: parent.into(),
        ..distinct(id)
    };
    for (parent, id) in [
        ("spiffe://example.org/p1", "a"),
        ("spiffe://example.org/p2", "b"),
    ] {
        ds.create_entry(under(parent, id)).await.unwrap();
    }
    let listed = |filter: EntryFilter| {
        let ds = ds.clone();
        async move {
            let listed = ds.list_entries(&filter).await.unwrap();
            listed.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    let by_parent = EntryFilter {
        parent_id: Some("spiffe://example.org/p2".into()),
        ..Default::default()
    };
    assert_eq!(listed(by_parent.clone()).await, ["b"]);
    let by_spiffe_id = EntryFilter {
        spiffe_id: Some("spiffe://example.org/a".into()),
        ..Default::default()
    };
    assert_eq!(listed(by_spiffe_id).await, ["a"]);
    // A page's limit counts matches only.
    let page = ds.list_entries_page(&by_parent, None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, "b");
    // The cycle check follows only the entries of the SPIFFE ID it asks
    // for: "d" is parented by c's SPIFFE ID, and would look like c's
    // ancestor if the check took every entry the index returned.
    ds.create_entry(under("spiffe://example.org/c", "d"))
        .await
        .unwrap();
    ds.create_entry(under("spiffe://example.org/a", "c"))
        .await
        .unwrap();
}
