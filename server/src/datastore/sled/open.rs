//! Opening the database: clear errors for a wrong path or a locked store,
//! and the layout version check.

use std::path::{Path, PathBuf};

use spinel_spiffe::Clock;

use super::codec::{backend, decode_u64, encode_u64};
use super::{
    SledDataStore, Trees, AGENTS, BUNDLES, CHANGES, ENTRIES, FEDERATION, FORMAT_VERSION_KEY,
    LEGACY_INDEX_TREES, META, TOKENS,
};
use crate::datastore::{DataStoreError, Result};

/// The layout this build reads and writes.
const FORMAT_VERSION: u64 = 2;
/// The layout with the entry indexes as sled trees, upgraded at open.
const FORMAT_VERSION_1: u64 = 1;

impl SledDataStore {
    /// Opens the database in directory `path`, creating it (mode 0700) if
    /// absent. Fails, naming `path`, if it is not a directory, does not
    /// hold a sled database, holds one written by a newer layout, or is open
    /// in another process.
    pub fn open(path: &Path) -> Result<Self> {
        let cannot = |why: String| {
            DataStoreError::Backend(format!(
                "cannot open sled datastore {}: {why}",
                path.display()
            ))
        };
        let existed = check_directory(path).map_err(cannot)?;
        let db = open_waiting_for_lock(path).map_err(|e| cannot(describe_open_error(&e)))?;
        Self::from_db(path.to_owned(), db, existed).map_err(|e| match e {
            DataStoreError::Backend(why) => cannot(why),
            DataStoreError::Corrupt { location, reason } => DataStoreError::Corrupt {
                location: format!("{} {location}", path.display()),
                reason,
            },
            other => other,
        })
    }

    /// A throwaway database (under `/dev/shm` on Linux), deleted on drop:
    /// for tests and one-off tools.
    pub fn open_temporary() -> Result<Self> {
        let db = ::sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|e| backend("cannot open a temporary sled datastore", e))?;
        Self::from_db(PathBuf::from("<temporary>"), db, false)
    }

    /// `existed`: sled had made a database at `path` before this open.
    fn from_db(path: PathBuf, db: ::sled::Db, existed: bool) -> Result<Self> {
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| backend(&format!("opening tree {name}"), e))
        };
        let trees = Trees {
            entry_writes: Default::default(),
            index: Default::default(),
            entries: tree(ENTRIES)?,
            agents: tree(AGENTS)?,
            tokens: tree(TOKENS)?,
            bundles: tree(BUNDLES)?,
            federation: tree(FEDERATION)?,
            meta: tree(META)?,
            changes: tree(CHANGES)?,
        };
        let formatted = trees.check_format(existed)?;
        if trees.init_changes()? || formatted {
            db.flush()
                .map_err(|e| backend("flushing the new layout", e))?;
        }
        // Left by version 1, or by an upgrade interrupted after it wrote
        // the new version: nothing reads them any more.
        for name in LEGACY_INDEX_TREES {
            if db
                .tree_names()
                .iter()
                .any(|t| t.as_ref() == name.as_bytes())
            {
                db.drop_tree(name)
                    .map_err(|e| backend(&format!("dropping tree {name}"), e))?;
            }
        }
        let started = std::time::Instant::now();
        let count = trees.build_index()?;
        tracing::debug!(
            entries = count,
            elapsed_ms = started.elapsed().as_millis(),
            "entry indexes built"
        );
        Ok(SledDataStore {
            path,
            db,
            trees,
            clock: Clock::system(),
        })
    }
}

impl Trees {
    /// Checks the layout version, writing it into a new store. Returns
    /// whether anything was written.
    fn check_format(&self, existed: bool) -> Result<bool> {
        let stored = self
            .meta
            .get(FORMAT_VERSION_KEY)
            .map_err(|e| backend("reading meta", e))?;
        if let Some(bytes) = stored {
            let version = decode_u64(META, FORMAT_VERSION_KEY, Some(&bytes))?;
            return match version {
                FORMAT_VERSION => Ok(false),
                FORMAT_VERSION_1 => self.upgrade_from_1().map(|()| true),
                _ => Err(DataStoreError::Backend(format!(
                    "layout version {version} is not supported (this build reads versions \
                     {FORMAT_VERSION_1} and {FORMAT_VERSION})"
                ))),
            };
        }
        let has_records = [
            &self.entries,
            &self.agents,
            &self.tokens,
            &self.bundles,
            &self.federation,
            &self.meta,
        ]
        .iter()
        .any(|tree| !tree.is_empty());
        if existed && !has_records {
            // sled reads a log it cannot parse as empty: refuse rather than
            // start over on someone else's file or a lost store.
            return Err(DataStoreError::Backend(
                "it holds no Spinel data: not a Spinel datastore, or its contents are \
                 unreadable (if the server's very first start was interrupted, remove \
                 the directory and start again)"
                    .into(),
            ));
        }
        if has_records {
            // Written before the layout was versioned: its counters may be
            // missing.
            tracing::warn!("datastore has no layout version; recounting entries");
            let count = u64::try_from(self.entries.len()).unwrap_or(u64::MAX);
            self.recount_entries(count)?;
        }
        self.meta
            .insert(FORMAT_VERSION_KEY, &encode_u64(FORMAT_VERSION)[..])
            .map_err(|e| backend("writing meta", e))?;
        Ok(true)
    }

    /// Version 1 to 2: the change log's rows change shape, so it restarts
    /// at the current revision (a cache behind it reads everything again,
    /// as every cache does after a restart anyway); the old index trees are
    /// dropped after (see `SledDataStore::from_db`). Each step is safe to
    /// repeat: until the new version is written (last), the next open
    /// upgrades again.
    fn upgrade_from_1(&self) -> Result<()> {
        tracing::info!("upgrading the datastore layout from version 1 to 2");
        let revision = self.entries_revision()?;
        self.restart_changes(revision)?;
        self.meta
            .insert(FORMAT_VERSION_KEY, &encode_u64(FORMAT_VERSION)[..])
            .map(drop)
            .map_err(|e| backend("writing meta", e))
    }
}

/// sled's settings file, written when it creates a database.
const SLED_CONF: &str = "conf";
/// The only thing sled makes before its settings file.
const SLED_BLOBS: &str = "blobs";

/// Checks that `path` is a directory holding a sled database or nothing
/// (creating it, mode 0700, if absent). Returns whether a database exists.
fn check_directory(path: &Path) -> std::result::Result<bool, String> {
    let listing = match std::fs::read_dir(path) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(path).map_err(|e| format!("creating it: {e}"))?;
            return Ok(false);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err("not a directory".into());
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut stranger = None;
    for item in listing {
        let name = item.map_err(|e| e.to_string())?.file_name();
        if name == SLED_CONF {
            return Ok(true);
        }
        if name != SLED_BLOBS {
            stranger = Some(name);
        }
    }
    match stranger {
        Some(name) => Err(format!(
            "not a sled datastore: it holds {} but no sled `{SLED_CONF}` file",
            Path::new(&name).display()
        )),
        None => Ok(false),
    }
}

/// How many times, [`LOCK_RETRY`] apart, an open waits for another holder
/// of the store's lock to let go.
const LOCK_ATTEMPTS: u32 = 100;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// Opens sled at `path`, waiting up to two seconds for its file lock.
///
/// sled releases the lock only when its last background I/O job lets go of
/// the database, which can be a moment after the handle is dropped: a
/// store closed and reopened in one process (or a server restarted by a
/// supervisor while the old process is still exiting) would otherwise see
/// a spurious "locked". A store really held by another process still fails,
/// after the wait.
fn open_waiting_for_lock(path: &Path) -> std::result::Result<::sled::Db, ::sled::Error> {
    let mut attempt = 1;
    loop {
        match ::sled::Config::new().path(path).open() {
            Err(e) if is_lock_error(&e) && attempt < LOCK_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(LOCK_RETRY);
            }
            other => return other,
        }
    }
}

fn is_lock_error(e: &::sled::Error) -> bool {
    matches!(e, ::sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Names the usual causes of a failed open.
fn describe_open_error(e: &::sled::Error) -> String {
    match e {
        e if is_lock_error(e) => "it is locked: already in use by another process?".into(),
        ::sled::Error::Corruption { .. } => {
            "not a sled database, or a damaged one (corrupt data)".into()
        }
        ::sled::Error::Unsupported(why) => format!("not a usable sled database: {why}"),
        other => other.to_string(),
    }
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)
}
