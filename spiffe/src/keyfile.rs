//! Atomic, durable writes of secret files.
//!
//! A key file is written to a temporary file in the same directory created
//! with mode 0600, synced, renamed over the target and the directory synced:
//! a crash leaves either the old file or the new one, never a torn one, and
//! the key is never readable by another user, not even briefly.
//!
//! A crash between writing the temporary file and renaming it leaves that
//! file behind (`.<name>.tmp<pid>`, mode 0600); the next write uses another
//! name, so it breaks nothing, and [`remove_stale_temp_files`] lets the
//! file's one writer delete it at start. Failpoints (debug builds, see
//! [`crate::failpoint`]): `keyfile:temp-written` (temporary file written and
//! synced, not renamed) and `keyfile:renamed` (renamed, directory not synced).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A failed secret-file write, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct WriteError {
    /// The file that was being written.
    pub path: PathBuf,
    /// The underlying I/O error.
    #[source]
    pub source: io::Error,
}

/// Writes `contents` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    write_atomic(path, contents, 0o600)
}

/// Writes `contents` to `path` atomically with the given mode.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let tmp = dir.join(temp_name(name, std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        crate::failpoint::hit("keyfile:temp-written");
        fs::rename(&tmp, path)?;
        crate::failpoint::hit("keyfile:renamed");
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// `.<name>.tmp<pid>`: the temporary file a writer with process ID `pid`
/// uses for `name`.
fn temp_name(name: &OsStr, pid: u32) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp{pid}"));
    tmp
}

/// Deletes the temporary files that writers killed before their rename left
/// beside `path` (any process but this one). Call it only where this process
/// is the one writer of `path`, before it writes. Returns how many were
/// removed; a missing directory is no error.
pub fn remove_stale_temp_files(path: &Path) -> io::Result<usize> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(0);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    // `.<name>.tmp`, the part of every temporary name before the PID.
    let mut prefix = temp_name(name, 0).into_encoded_bytes();
    prefix.pop();
    let own = temp_name(name, std::process::id());
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(pid) = file_name.as_encoded_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        if pid.is_empty() || !pid.iter().all(u8::is_ascii_digit) || file_name == own {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if removed > 0 {
        File::open(dir)?.sync_all()?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_private_files_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.der");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn stale_temp_files_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        write_private(&path, b"live").unwrap();
        let stale = dir.path().join(".keys.json.tmp4242");
        fs::write(&stale, b"half").unwrap();
        // Files that only look alike are left alone.
        for other in [
            ".keys.json.tmp",
            ".keys.json.tmpx1",
            ".other.json.tmp1",
            "keys.json.tmp1",
        ] {
            fs::write(dir.path().join(other), b"keep").unwrap();
        }
        assert_eq!(remove_stale_temp_files(&path).unwrap(), 1);
        assert!(!stale.exists());
        assert_eq!(fs::read(&path).unwrap(), b"live");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 5);
        assert_eq!(remove_stale_temp_files(&path).unwrap(), 0);
        let missing = dir.path().join("nowhere/keys.json");
        assert_eq!(remove_stale_temp_files(&missing).unwrap(), 0);
    }

    #[test]
    fn names_the_file_on_error() {
        let err = write_private(Path::new("/nonexistent-dir/key"), b"x").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/key"));
    }
}
