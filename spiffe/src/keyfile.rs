//! Atomic, durable writes of secret files.
//!
//! A key file is written to a new temporary file in the same directory,
//! synced, renamed over the target and the directory synced: a crash
//! leaves either the old file or the new one, never a torn one.
//!
//! Other local users can neither read nor redirect the write:
//!
//! - the directory must be one no other user can change
//!   ([`crate::trusted_dir`]: owned by this process's user or root, not
//!   writable by others unless sticky); it is opened once, checked through
//!   that descriptor, and every later step goes through it;
//! - the temporary file's name is unpredictable,
//!   `.<name>.tmp<pid>-<16 random hex digits>`, and it is created with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW`: a file or symbolic link planted under
//!   any name is never opened, truncated or followed;
//! - the file gets its mode when it is created and is set to exactly that
//!   mode (`fchmod`, so the umask cannot narrow a certificate's 0644)
//!   before any byte is written; nothing ever widens it.
//!
//! A crash between writing the temporary file and renaming it leaves that
//! file behind (mode as asked); the next write uses another name, so it
//! breaks nothing, and [`remove_stale_temp_files`] lets the file's one
//! writer delete it at start. Failpoints (debug builds, see
//! [`crate::failpoint`]): `keyfile:temp-written` (temporary file written and
//! synced, not renamed) and `keyfile:renamed` (renamed, directory not synced).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use rustix::fs::{AtFlags, Mode, OFlags};

use crate::trusted_dir;

/// How many random names are tried before giving up (each collision means
/// someone created that exact name: practically never by chance).
const NAME_ATTEMPTS: usize = 8;

/// A failed secret-file write, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {source}")]
pub struct WriteError {
    /// The file that was being written.
    pub path: PathBuf,
    /// The underlying I/O error (for a refused directory, kind
    /// `PermissionDenied` with a message naming the directory and why).
    #[source]
    pub source: io::Error,
}

/// Writes `contents` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    write_atomic(path, contents, 0o600)
}

/// Writes `contents` to `path` atomically with the given mode (permission
/// bits only; set exactly, whatever the umask).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let dir_path = parent_dir(path);
    let dir = open_trusted_dir(dir_path).map_err(err)?;
    let (tmp, mut file) = create_temp(&dir, name, mode & 0o777).map_err(err)?;
    let result = (|| {
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        crate::failpoint::hit("keyfile:temp-written");
        rustix::fs::renameat(&dir, &tmp, &dir, name)?;
        crate::failpoint::hit("keyfile:renamed");
        rustix::fs::fsync(&dir)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
    }
    result.map_err(err)
}

/// Checks that `dir` is a directory no other user can change (see
/// [`crate::trusted_dir`]): what [`write_atomic`] requires of the directory
/// of every file it writes. For callers that want to fail early, at start.
pub fn check_dir(dir: &Path) -> Result<(), trusted_dir::UntrustedDir> {
    trusted_dir::check(dir)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Opens `dir` and checks, through the open descriptor, that no other user
/// can change it.
fn open_trusted_dir(dir: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot open directory {}: {e}", dir.display()),
        )
    })?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    trusted_dir::check_meta(dir, meta.uid(), meta.gid(), meta.mode())
        .map_err(trusted_dir::UntrustedDir::into_io)?;
    Ok(file)
}

/// Creates a new temporary file for `name` in `dir` with exactly `mode`;
/// returns its name and the open file.
fn create_temp(dir: &File, name: &OsStr, mode: u32) -> io::Result<(OsString, File)> {
    let rng = SystemRandom::new();
    for _ in 0..NAME_ATTEMPTS {
        let mut random = [0u8; 8];
        rng.fill(&mut random)
            .map_err(|_| io::Error::other("no randomness for a temporary file name"))?;
        let tmp = temp_name(name, std::process::id(), Some(&random));
        let created = rustix::fs::openat(
            dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        );
        let fd = match created {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        };
        let file = File::from(fd);
        // The umask may have taken bits away; nothing else can be there.
        if let Err(e) = file.set_permissions(fs::Permissions::from_mode(mode)) {
            drop(file);
            let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
            return Err(e);
        }
        return Ok((tmp, file));
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "every temporary file name tried already exists",
    ))
}

/// `.<name>.tmp<pid>-<hex>`: a temporary file the writer with process ID
/// `pid` uses for `name` (without `random`: the part every such name
/// starts with, also the whole name earlier versions used).
fn temp_name(name: &OsStr, pid: u32, random: Option<&[u8; 8]>) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp{pid}"));
    if let Some(random) = random {
        tmp.push("-");
        for b in random {
            tmp.push(format!("{b:02x}"));
        }
    }
    tmp
}

/// Whether `rest` (what follows `.<name>.tmp`) is `<pid>` or
/// `<pid>-<16 hex digits>`; returns the pid part.
fn temp_suffix_pid(rest: &[u8]) -> Option<&[u8]> {
    let (pid, random) = match rest.iter().position(|&b| b == b'-') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let pid_ok = !pid.is_empty() && pid.iter().all(u8::is_ascii_digit);
    let random_ok = random.is_none_or(|r| r.len() == 16 && r.iter().all(u8::is_ascii_hexdigit));
    (pid_ok && random_ok).then_some(pid)
}

/// Deletes the temporary files that writers killed before their rename left
/// beside `path` (any process but this one), when they belong to this
/// process's user. Call it only where this process is the one writer of
/// `path`, before it writes. Returns how many were removed; a missing
/// directory is no error.
pub fn remove_stale_temp_files(path: &Path) -> io::Result<usize> {
    let Some(name) = path.file_name() else {
        return Ok(0);
    };
    let dir = parent_dir(path);
    // `.<name>.tmp`, the part of every temporary name before the PID.
    let mut prefix = temp_name(name, 0, None).into_encoded_bytes();
    prefix.pop();
    let own_pid = std::process::id().to_string();
    let (me, _) = trusted_dir::effective_ids();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(rest) = file_name.as_encoded_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        match temp_suffix_pid(rest) {
            Some(pid) if pid != own_pid.as_bytes() => {}
            _ => continue,
        }
        // Another user's file is not ours to delete (nor, in a sticky
        // directory, could it be).
        match entry.metadata() {
            Ok(meta) if meta.uid() == me => {}
            _ => continue,
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

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn is_root() -> bool {
        trusted_dir::effective_ids().0 == 0
    }

    #[test]
    fn writes_private_files_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.der");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn the_mode_asked_for_is_the_mode_written() {
        // 0666 is wider than any usual umask lets open(2) create.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.pem");
        write_atomic(&path, b"certs", 0o666).unwrap();
        assert_eq!(mode_of(&path), 0o666);
        write_atomic(&path, b"certs", 0o640).unwrap();
        assert_eq!(mode_of(&path), 0o640);
    }

    /// What another user would plant in a directory they can write: a
    /// world-writable file and a symbolic link to a file they want
    /// overwritten, under the temporary names a writer used to use.
    #[test]
    fn planted_temporary_files_are_neither_followed_nor_read() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"root only").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let pid = std::process::id();
        let link = dir.path().join(format!(".key.der.tmp{pid}"));
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let open_file = dir.path().join(format!(".svid.key.tmp{pid}"));
        fs::write(&open_file, b"").unwrap();
        fs::set_permissions(&open_file, fs::Permissions::from_mode(0o666)).unwrap();
        if is_root() {
            std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
            std::os::unix::fs::chown(&open_file, Some(65534), Some(65534)).unwrap();
        }

        write_private(&dir.path().join("key.der"), b"SECRET KEY").unwrap();
        write_private(&dir.path().join("svid.key"), b"SECRET KEY").unwrap();

        assert_eq!(fs::read(&victim).unwrap(), b"root only");
        assert_eq!(mode_of(&victim), 0o600);
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(fs::read(&open_file).unwrap(), b"");
        for name in ["key.der", "svid.key"] {
            let path = dir.path().join(name);
            assert!(!fs::symlink_metadata(&path).unwrap().is_symlink());
            assert_eq!(fs::read(&path).unwrap(), b"SECRET KEY");
            assert_eq!(mode_of(&path), 0o600);
        }
    }

    #[test]
    fn temporary_names_are_unpredictable() {
        let names: std::collections::BTreeSet<_> = (0..64)
            .map(|_| {
                let mut random = [0u8; 8];
                SystemRandom::new().fill(&mut random).unwrap();
                temp_name(OsStr::new("k"), 7, Some(&random))
            })
            .collect();
        assert_eq!(names.len(), 64);
        let one = names.first().unwrap().to_str().unwrap();
        assert!(one.starts_with(".k.tmp7-") && one.len() == ".k.tmp7-".len() + 16);
    }

    #[test]
    fn directories_others_can_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let err = write_private(&shared.join("key.der"), b"k").unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::PermissionDenied);
        let text = err.to_string();
        assert!(
            text.contains(&shared.display().to_string())
                && text.contains("0777")
                && text.contains("writable by all users"),
            "{text}"
        );
        assert_eq!(fs::read_dir(&shared).unwrap().count(), 0);
        assert!(check_dir(&shared).is_err());

        // Shared but sticky, and ours: like /tmp for root.
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        write_private(&shared.join("key.der"), b"k").unwrap();
        check_dir(&shared).unwrap();

        if is_root() {
            let theirs = dir.path().join("theirs");
            fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let text = write_private(&theirs.join("key.der"), b"k")
                .unwrap_err()
                .to_string();
            assert!(text.contains("owned by uid 65534"), "{text}");
        }
    }

    #[test]
    fn stale_temp_files_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        write_private(&path, b"live").unwrap();
        // Names of earlier versions and of this one.
        let stale = [
            dir.path().join(".keys.json.tmp4242"),
            dir.path().join(".keys.json.tmp4243-0123456789abcdef"),
        ];
        for s in &stale {
            fs::write(s, b"half").unwrap();
        }
        // Files that only look alike, and this process's own, are left alone.
        let own = format!(".keys.json.tmp{}-0123456789abcdef", std::process::id());
        for other in [
            ".keys.json.tmp",
            ".keys.json.tmpx1",
            ".keys.json.tmp1-",
            ".keys.json.tmp1-0123",
            ".keys.json.tmp1-0123456789abcdeg",
            ".other.json.tmp1",
            "keys.json.tmp1",
            own.as_str(),
        ] {
            fs::write(dir.path().join(other), b"keep").unwrap();
        }
        let mut kept = 9;
        if is_root() {
            // Another user's file is not deleted.
            let theirs = dir.path().join(".keys.json.tmp99");
            fs::write(&theirs, b"theirs").unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            kept += 1;
        }
        assert_eq!(remove_stale_temp_files(&path).unwrap(), 2);
        assert!(stale.iter().all(|s| !s.exists()));
        assert_eq!(fs::read(&path).unwrap(), b"live");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), kept);
        assert_eq!(remove_stale_temp_files(&path).unwrap(), 0);
        let missing = dir.path().join("nowhere/keys.json");
        assert_eq!(remove_stale_temp_files(&missing).unwrap(), 0);
    }

    #[test]
    fn names_the_file_on_error() {
        let err = write_private(Path::new("/nonexistent-dir/key"), b"x").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent-dir/key"), "{text}");
    }
}
