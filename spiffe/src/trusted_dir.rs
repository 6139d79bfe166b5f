//! Directories that no other local user can change: the rule key files and
//! Unix sockets are held to.
//!
//! Whoever can write a directory can replace what is in it: swap a key file
//! for their own, move a socket away and put theirs in its place. Spinel
//! therefore writes secrets and binds sockets only in a directory that
//!
//! - is owned by the user the process runs as (its effective uid) or by
//!   root, and
//! - is not writable by other users: neither by everyone (`o+w`) nor by a
//!   group other than the process's own effective group (`g+w`), unless it
//!   has the sticky bit (`+t`, as `/tmp` has), under which nobody may
//!   remove or rename another user's file.
//!
//! Only the directory itself is examined, not its ancestors: a Kubernetes
//! `emptyDir` or a volume root above it may be world-writable while the
//! directory Spinel writes in is private. [`check`] examines a path,
//! [`check_meta`] what `stat` returned for an already opened directory.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a directory may not hold key files or sockets. Every message names
/// the directory, says what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UntrustedDir {
    /// Another (non-root) user owns it.
    #[error(
        "directory {dir} is owned by uid {owner}, not by this process's user (uid {me}) or \
         root: uid {owner} could replace what is written there; use a directory owned by \
         uid {me} or root"
    )]
    Owner {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        me: u32,
    },
    /// Other users may create, remove and rename files in it.
    #[error(
        "directory {dir} (mode {mode:04o}) is writable by {who} and has no sticky bit: they \
         could replace or plant files there; remove that write permission (chmod go-w) or \
         use another directory"
    )]
    Writable {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// `all users` or `group <gid>`.
        who: String,
    },
    /// It is not a directory.
    #[error("{dir} is not a directory")]
    NotADirectory {
        /// The path.
        dir: PathBuf,
    },
    /// It could not be examined.
    #[error("cannot examine directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl UntrustedDir {
    /// The error as an `io::Error` of kind `PermissionDenied` (for writers
    /// whose errors are I/O errors).
    pub fn into_io(self) -> io::Error {
        match self {
            UntrustedDir::Io { source, .. } => source,
            other => io::Error::new(io::ErrorKind::PermissionDenied, other.to_string()),
        }
    }
}

/// The effective user and group IDs of this process.
pub fn effective_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// Checks the directory at `dir` (symbolic links followed).
pub fn check(dir: &Path) -> Result<(), UntrustedDir> {
    let meta = std::fs::metadata(dir).map_err(|source| UntrustedDir::Io {
        dir: dir.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(UntrustedDir::NotADirectory {
            dir: dir.to_owned(),
        });
    }
    check_meta(dir, meta.uid(), meta.gid(), meta.mode())
}

/// Checks a directory whose owner, group and mode are known (`dir` only
/// names it in the error).
pub fn check_meta(dir: &Path, owner: u32, group: u32, mode: u32) -> Result<(), UntrustedDir> {
    check_for(effective_ids(), dir, owner, group, mode)
}

fn check_for(
    (me, my_group): (u32, u32),
    dir: &Path,
    owner: u32,
    group: u32,
    mode: u32,
) -> Result<(), UntrustedDir> {
    if owner != me && owner != 0 {
        return Err(UntrustedDir::Owner {
            dir: dir.to_owned(),
            owner,
            me,
        });
    }
    let sticky = mode & 0o1000 != 0;
    let who = if mode & 0o002 != 0 {
        Some("all users".to_owned())
    } else if mode & 0o020 != 0 && group != my_group {
        Some(format!("group {group}"))
    } else {
        None
    };
    match who {
        Some(who) if !sticky => Err(UntrustedDir::Writable {
            dir: dir.to_owned(),
            mode: mode & 0o7777,
            who,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: (u32, u32) = (1000, 1000);

    fn verdict(owner: u32, group: u32, mode: u32) -> Result<(), String> {
        check_for(ME, Path::new("/d"), owner, group, mode).map_err(|e| e.to_string())
    }

    #[test]
    fn own_and_root_directories_closed_to_others_are_trusted() {
        for (owner, group, mode) in [
            (1000, 1000, 0o700),
            (1000, 1000, 0o755),
            (0, 0, 0o755),
            // Writable by the process's own group.
            (1000, 1000, 0o775),
            (0, 1000, 0o2775),
            // Shared but sticky, like /tmp.
            (0, 0, 0o1777),
            (1000, 50, 0o1777),
        ] {
            assert_eq!(
                verdict(owner, group, mode),
                Ok(()),
                "{owner} {group} {mode:o}"
            );
        }
    }

    #[test]
    fn others_directories_and_shared_ones_are_refused() {
        let err = verdict(1001, 1000, 0o700).unwrap_err();
        assert!(
            err.contains("/d") && err.contains("uid 1001") && err.contains("uid 1000"),
            "{err}"
        );
        // Sticky does not help when another user owns the directory.
        assert!(verdict(1001, 1001, 0o1777).is_err());
        let err = verdict(0, 0, 0o777).unwrap_err();
        assert!(
            err.contains("0777") && err.contains("all users") && err.contains("sticky"),
            "{err}"
        );
        let err = verdict(1000, 50, 0o770).unwrap_err();
        assert!(err.contains("group 50"), "{err}");
    }

    #[test]
    fn paths_are_examined() {
        let dir = tempfile::tempdir().unwrap();
        check(dir.path()).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            check(&file),
            Err(UntrustedDir::NotADirectory { .. })
        ));
        assert!(matches!(
            check(&dir.path().join("missing")),
            Err(UntrustedDir::Io { .. })
        ));
    }
}
