//! User and group names by ID, remembered briefly.
//!
//! Every `unix` attestation names the caller's user and groups; reading and
//! scanning `/etc/passwd` and `/etc/group` for each call costs more than
//! the rest of the call. [`Names`] keeps the answers (also "no such ID")
//! while the database file is the same file with the same size, change and
//! modification times, and for at most [`NAMES_TTL`] in any case (a file
//! rewritten in place twice within one timestamp tick keeps its times).
//! It holds at most [`NAMES_MAX`] IDs per database and starts afresh past
//! that. A lookup costs one `stat` when the answer is known.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use spinel_spiffe::Clock;

use super::procfs::{self, Root};
use super::AttestError;

/// How long an answer is used at most, even when the file looks unchanged.
pub const NAMES_TTL: Duration = Duration::from_secs(5);

/// How many IDs are remembered per database.
pub const NAMES_MAX: usize = 1024;

/// What identifies one version of a database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug, Default)]
struct Known {
    /// The file the answers came from and when they started to be kept.
    since: Option<(Stamp, SystemTime)>,
    names: HashMap<u32, Option<String>>,
}

/// Remembered answers of `/etc/passwd` and `/etc/group`.
#[derive(Debug)]
pub struct Names {
    clock: Clock,
    passwd: Mutex<Known>,
    group: Mutex<Known>,
}

impl Names {
    /// Nothing remembered yet; `clock` bounds how long answers are kept.
    pub fn new(clock: Clock) -> Self {
        Names {
            clock,
            passwd: Mutex::default(),
            group: Mutex::default(),
        }
    }

    /// The name of user `uid`, if `/etc/passwd` has one.
    pub fn user(&self, root: &Root, uid: u32) -> Result<Option<String>, AttestError> {
        self.lookup(&self.passwd, root, "passwd", uid)
    }

    /// The name of group `gid`, if `/etc/group` has one.
    pub fn group(&self, root: &Root, gid: u32) -> Result<Option<String>, AttestError> {
        self.lookup(&self.group, root, "group", gid)
    }

    fn lookup(
        &self,
        known: &Mutex<Known>,
        root: &Root,
        database: &str,
        id: u32,
    ) -> Result<Option<String>, AttestError> {
        let path = root.etc.join(database);
        let stamp = match std::fs::metadata(&path) {
            Ok(meta) => Stamp::of(&meta),
            // A missing database yields no names (as `name_for_id`).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(AttestError::Io { path, source }),
        };
        let now = self.clock.now();
        {
            let mut known = known.lock().unwrap_or_else(PoisonError::into_inner);
            let fresh = known.since.is_some_and(|(s, since)| {
                s == stamp && now.duration_since(since).is_ok_and(|age| age < NAMES_TTL)
            });
            if !fresh {
                known.names.clear();
                known.since = Some((stamp, now));
            } else if let Some(name) = known.names.get(&id) {
                return Ok(name.clone());
            }
        }
        // Read outside the lock. Should the file change meanwhile, the next
        // lookup sees another stamp and forgets this answer.
        let name = procfs::name_for_id(root, database, id)?;
        let mut known = known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.since.is_some_and(|(s, _)| s == stamp) {
            if known.names.len() >= NAMES_MAX {
                known.names.clear();
            }
            known.names.insert(id, name.clone());
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(passwd: &str) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        let root = Root::new(dir.path().join("proc"), dir.path().join("etc"));
        (dir, root)
    }

    #[tokio::test(start_paused = true)]
    async fn answers_follow_the_file_and_expire() {
        let (dir, root) = root_with("alice:x:1000:1000::/home/alice:/bin/sh\n");
        let names = Names::new(Clock::system());
        assert_eq!(names.user(&root, 1000).unwrap().as_deref(), Some("alice"));
        assert_eq!(names.user(&root, 1001).unwrap(), None);
        assert_eq!(names.group(&root, 1000).unwrap(), None, "no group file");

        // Replaced by another file (as `useradd` does): seen at once.
        let next = dir.path().join("etc/passwd.new");
        std::fs::write(&next, "bob:x:1000:1000::/home/bob:/bin/sh\n").unwrap();
        std::fs::rename(&next, dir.path().join("etc/passwd")).unwrap();
        assert_eq!(names.user(&root, 1000).unwrap().as_deref(), Some("bob"));

        // Rewritten in place with the same size and times: the answer is
        // kept for at most NAMES_TTL.
        let path = dir.path().join("etc/passwd");
        let times = std::fs::metadata(&path).unwrap();
        std::fs::write(&path, "eve:x:1000:1000::/home/bob:/bin/sh\n").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(times.modified().unwrap()).unwrap();
        drop(file);
        let still = names.user(&root, 1000).unwrap();
        assert!(still.as_deref() == Some("bob") || still.as_deref() == Some("eve"));
        tokio::time::advance(NAMES_TTL).await;
        assert_eq!(names.user(&root, 1000).unwrap().as_deref(), Some("eve"));
    }

    #[test]
    fn bounded() {
        let lines: String = (0..NAMES_MAX as u32 + 10)
            .map(|i| format!("u{i}:x:{i}:0::/:/bin/sh\n"))
            .collect();
        let (_dir, root) = root_with(&lines);
        let names = Names::new(Clock::system());
        for i in 0..NAMES_MAX as u32 + 10 {
            assert_eq!(names.user(&root, i).unwrap(), Some(format!("u{i}")));
        }
        assert!(names.passwd.lock().unwrap().names.len() <= NAMES_MAX);
    }
}
