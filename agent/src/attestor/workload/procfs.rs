//! Reading what the unix attestor needs from `/proc` and `/etc`.
//!
//! Everything is read relative to a [`Root`], so tests point the attestor
//! at fixture trees instead of the real `/proc` and `/etc`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::AttestError;

/// Where the attestor finds `/proc` and `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// The proc filesystem, normally `/proc`.
    pub proc: PathBuf,
    /// The configuration directory holding `passwd` and `group`, normally `/etc`.
    pub etc: PathBuf,
}

impl Root {
    /// The real `/proc` and `/etc`.
    pub fn system() -> Self {
        Root::new("/proc", "/etc")
    }

    /// A root at the given directories.
    pub fn new(proc: impl Into<PathBuf>, etc: impl Into<PathBuf>) -> Self {
        Root {
            proc: proc.into(),
            etc: etc.into(),
        }
    }

    /// `<proc>/<pid>/<file>`.
    pub(crate) fn proc_file(&self, pid: i32, file: &str) -> PathBuf {
        self.proc.join(pid.to_string()).join(file)
    }
}

/// The identity lines of `/proc/<pid>/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStatus {
    /// Real, effective, saved and filesystem user IDs.
    pub uids: Vec<u32>,
    /// Real, effective, saved and filesystem group IDs.
    pub gids: Vec<u32>,
    /// Supplementary group IDs.
    pub groups: Vec<u32>,
}

impl ProcStatus {
    /// The effective user ID (the second of the `Uid:` line).
    pub fn effective_uid(&self) -> Option<u32> {
        self.uids.get(1).or_else(|| self.uids.first()).copied()
    }

    /// The effective group ID (the second of the `Gid:` line).
    pub fn effective_gid(&self) -> Option<u32> {
        self.gids.get(1).or_else(|| self.gids.first()).copied()
    }
}

/// Maps a failed read of a `/proc/<pid>` file: a missing file means the
/// process is gone.
fn proc_error(pid: i32, path: &Path, source: io::Error) -> AttestError {
    // ESRCH shows up when the process exits between open and read.
    if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(3) {
        AttestError::ProcessGone { pid }
    } else {
        AttestError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

fn malformed(path: &Path, reason: impl Into<String>) -> AttestError {
    AttestError::Malformed {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Reads a `/proc/<pid>` file as text: open, read until the end, close
/// (procfs reports no size, so asking for one, as `fs::read_to_string`
/// does, is a wasted call).
fn read_proc(root: &Root, pid: i32, file: &str) -> Result<(PathBuf, String), AttestError> {
    let path = root.proc_file(pid, file);
    let read = || -> io::Result<String> {
        let mut file = fs::File::open(&path)?;
        let mut bytes = Vec::with_capacity(PROC_READ);
        loop {
            if bytes.len() == bytes.capacity() {
                bytes.reserve(PROC_READ);
            }
            let start = bytes.len();
            bytes.resize(bytes.capacity(), 0);
            match file.read(&mut bytes[start..]) {
                Ok(0) => {
                    bytes.truncate(start);
                    break;
                }
                Ok(n) => bytes.truncate(start + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => bytes.truncate(start),
                Err(e) => return Err(e),
            }
        }
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    };
    let text = read().map_err(|e| proc_error(pid, &path, e))?;
    Ok((path, text))
}

/// The first read's size for a `/proc/<pid>` file (`status` is about
/// 1.5 KiB, `stat` a few hundred bytes).
const PROC_READ: usize = 4096;

/// The start time of the process (field 22 of `/proc/<pid>/stat`, clock
/// ticks since boot): with the pid, it names one process for good.
pub(crate) fn start_time(root: &Root, pid: i32) -> Result<u64, AttestError> {
    let (path, text) = read_proc(root, pid, "stat")?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: the fields after it start past the last ')'.
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| malformed(&path, "no ')' closing the command name"))?;
    // `rest` starts at field 3 (state); the start time is field 22.
    let field = rest
        .split_ascii_whitespace()
        .nth(22 - 3)
        .ok_or_else(|| malformed(&path, "fewer than 22 fields"))?;
    field
        .parse()
        .map_err(|_| malformed(&path, format!("start time {field:?} is not a number")))
}

/// Parses the `Uid:`, `Gid:` and `Groups:` lines of `/proc/<pid>/status`.
pub(crate) fn status(root: &Root, pid: i32) -> Result<ProcStatus, AttestError> {
    let (path, text) = read_proc(root, pid, "status")?;
    parse_status(&path, &text)
}

fn parse_status(path: &Path, text: &str) -> Result<ProcStatus, AttestError> {
    let ids = |key: &str, value: &str| -> Result<Vec<u32>, AttestError> {
        value
            .split_ascii_whitespace()
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| malformed(path, format!("{key} value {v:?} is not a number")))
            })
            .collect()
    };
    let (mut uids, mut gids, mut groups) = (None, None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "Uid" => uids = Some(ids("Uid", value)?),
            "Gid" => gids = Some(ids("Gid", value)?),
            "Groups" => groups = Some(ids("Groups", value)?),
            _ => {}
        }
    }
    let uids = uids
        .filter(|v| !v.is_empty())
        .ok_or_else(|| malformed(path, "no Uid line"))?;
    let gids = gids
        .filter(|v| !v.is_empty())
        .ok_or_else(|| malformed(path, "no Gid line"))?;
    Ok(ProcStatus {
        uids,
        gids,
        groups: groups.unwrap_or_default(),
    })
}

/// The path of the process's executable (the target of `/proc/<pid>/exe`).
pub(crate) fn exe_path(root: &Root, pid: i32) -> Result<String, AttestError> {
    let path = root.proc_file(pid, "exe");
    let target = fs::read_link(&path).map_err(|e| proc_error(pid, &path, e))?;
    target
        .into_os_string()
        .into_string()
        .map_err(|_| malformed(&path, "executable path is not UTF-8"))
}

/// The hex SHA-256 of the process's executable, read through
/// `/proc/<pid>/exe` (so it is the binary the process runs even in another
/// mount namespace). `limit` > 0 refuses larger files.
pub(crate) fn exe_sha256(root: &Root, pid: i32, limit: i64) -> Result<String, AttestError> {
    let path = root.proc_file(pid, "exe");
    let mut file = fs::File::open(&path).map_err(|e| proc_error(pid, &path, e))?;
    let io_err = |source| AttestError::Io {
        path: path.clone(),
        source,
    };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    let max = u64::try_from(limit).ok().filter(|l| *l > 0);
    if let Some(max) = max {
        let size = file.metadata().map_err(io_err)?.len();
        if size > max {
            return Err(AttestError::ExecutableTooLarge {
                pid,
                size,
                limit: max,
            });
        }
    }
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        // The file may grow while it is read: the limit holds on what is hashed.
        if let Some(max) = max.filter(|m| total > *m) {
            return Err(AttestError::ExecutableTooLarge {
                pid,
                size: total,
                limit: max,
            });
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex(ctx.finish().as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Looks up a name by numeric ID in a colon-separated database
/// (`/etc/passwd` or `/etc/group`: name in field 1, ID in field 3). The
/// first matching line wins, as with the C library's `files` source. A
/// missing database yields no names, not an error.
pub(crate) fn name_for_id(
    root: &Root,
    database: &str,
    id: u32,
) -> Result<Option<String>, AttestError> {
    let path = root.etc.join(database);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AttestError::Io { path, source }),
    };
    let want = id.to_string();
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?;
            (id == want && !name.is_empty()).then(|| name.to_owned())
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        let text = "Name:\tbash\nUid:\t1000\t1001\t1000\t1000\nGid:\t100\t101\t100\t100\nGroups:\t4 24 27 \n";
        let s = parse_status(Path::new("status"), text).unwrap();
        assert_eq!(s.effective_uid(), Some(1001));
        assert_eq!(s.effective_gid(), Some(101));
        assert_eq!(s.groups, vec![4, 24, 27]);
    }

    #[test]
    fn refuses_status_without_uid() {
        let err = parse_status(Path::new("status"), "Gid:\t1\t1\t1\t1\n").unwrap_err();
        assert!(err.to_string().contains("no Uid line"), "{err}");
        let err = parse_status(Path::new("status"), "Uid:\tx\nGid:\t1\n").unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
    }

    #[test]
    fn empty_groups_line() {
        let s = parse_status(
            Path::new("status"),
            "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n",
        )
        .unwrap();
        assert!(s.groups.is_empty());
    }
}
