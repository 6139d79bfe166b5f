//! Finding a process's pod UID and container ID in `/proc/<pid>/cgroup`,
//! and in `/proc/<pid>/mountinfo` when the cgroup file shows nothing (a
//! cgroup namespace makes it read `0::/`).
//!
//! Every runtime and cgroup driver names the container's cgroup after the
//! 64-hex container ID, below a cgroup named after the pod UID:
//!
//! - cgroupfs driver, v1 or v2: `/kubepods/besteffort/pod<uid>/<id>`;
//! - systemd driver: `/kubepods.slice/kubepods-burstable.slice/
//!   kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope`
//!   (`crio-<id>.scope`, `docker-<id>.scope`);
//! - nested (kind): the same below the node container's cgroup
//!   (`/docker/<node id>/kubepods/...`, `/kubelet/kubepods/...`,
//!   `/../../kubelet-kubepods-...`).
//!
//! A path is read from its last segment backwards: the last segment holding
//! a whole 64-hex word is the container ID; the nearest `pod<uid>` word at
//! or before it is the pod UID (normalised to dashes). A path with a pod UID
//! outranks paths without one (e.g. kind's `0::/docker/<node id>/...` line
//! for a pod's process); two different pods or containers are an error.

use std::io;
use std::path::Path;

use super::K8sError;

/// Where a process runs: the container, and its pod when the cgroup says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The pod UID with dashes (`2c48913c-b29f-11e7-9350-020968147796`);
    /// `None` when only the container ID shows (then every pod is searched).
    pub pod_uid: Option<String>,
    /// The 64-hex container ID, as in the pod status's `containerID` after
    /// `<runtime>://`.
    pub container_id: String,
}

/// Reads `<proc>/<pid>/cgroup`, then `<proc>/<pid>/mountinfo` if the first
/// tells nothing. `Ok(None)`: the process is not in a container.
/// `verbose` logs every path looked at (`verbose_container_locator_logs`).
pub(crate) fn locate(
    proc: &Path,
    pid: i32,
    verbose: bool,
) -> Result<Option<ContainerRef>, K8sError> {
    let dir = proc.join(pid.to_string());
    let cgroup = dir.join("cgroup");
    let text = read_proc_file(&cgroup, pid)?;
    if verbose {
        tracing::debug!(pid, path = %cgroup.display(), cgroup = %text.trim_end(), "k8s: cgroup file");
    }
    if let Some(found) = from_cgroup_file(&text)? {
        return Ok(Some(found));
    }
    let mountinfo = dir.join("mountinfo");
    let text = match read_proc_file(&mountinfo, pid) {
        Ok(text) => text,
        // The cgroup file was there: a missing mountinfo (a restricted or
        // fake /proc) tells nothing more, as in SPIRE.
        Err(K8sError::ProcessGone { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if verbose {
        tracing::debug!(pid, path = %mountinfo.display(), mountinfo = %text.trim_end(), "k8s: falling back to mountinfo");
    }
    from_mountinfo(&text)
}

/// Reads a `/proc/<pid>` file; a missing one means the process is gone.
fn read_proc_file(path: &Path, pid: i32) -> Result<String, K8sError> {
    std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3) {
            K8sError::ProcessGone { pid }
        } else {
            K8sError::read(path, e)
        }
    })
}

/// The container of a `/proc/<pid>/cgroup` text (`id:controllers:path`
/// lines).
pub fn from_cgroup_file(text: &str) -> Result<Option<ContainerRef>, K8sError> {
    let mut acc = Accumulator::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        if let (Some(_), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) {
            acc.add(path)?;
        }
    }
    Ok(acc.finish())
}

/// The container of a `/proc/<pid>/mountinfo` text: the roots of its
/// `cgroup` and `cgroup2` mounts (other file systems are ignored, so a
/// bind mount named like a pod path proves nothing).
pub fn from_mountinfo(text: &str) -> Result<Option<ContainerRef>, K8sError> {
    let mut acc = Accumulator::default();
    for line in text.lines() {
        // `id parent major:minor root mountpoint options [optional...] - fstype source super`
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fs_type = after.split(' ').next().unwrap_or_default();
        if fs_type != "cgroup" && fs_type != "cgroup2" {
            continue;
        }
        let Some(root) = before.split(' ').nth(3) else {
            continue;
        };
        let root = unescape_octal(root);
        if root != "/" {
            acc.add(&root)?;
        }
    }
    Ok(acc.finish())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`. Only
/// `\000` to `\377` are bytes; anything above is kept as text.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d[0] <= b'3' && d.iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Folds the findings of several paths into one answer.
#[derive(Default)]
struct Accumulator {
    found: Option<ContainerRef>,
}

impl Accumulator {
    fn add(&mut self, path: &str) -> Result<(), K8sError> {
        let Some(next) = from_path(path) else {
            return Ok(());
        };
        let Some(current) = &self.found else {
            self.found = Some(next);
            return Ok(());
        };
        match (&current.pod_uid, &next.pod_uid) {
            // A path naming a pod outranks the ones that do not.
            (Some(_), None) => return Ok(()),
            (None, Some(_)) => {
                self.found = Some(next);
                return Ok(());
            }
            (Some(a), Some(b)) if a != b => {
                return Err(K8sError::Ambiguous {
                    what: "pod UIDs",
                    first: a.clone(),
                    second: b.clone(),
                })
            }
            _ => {}
        }
        if current.container_id != next.container_id {
            return Err(K8sError::Ambiguous {
                what: "container IDs",
                first: current.container_id.clone(),
                second: next.container_id.clone(),
            });
        }
        Ok(())
    }

    fn finish(self) -> Option<ContainerRef> {
        self.found
    }
}

/// The container (and pod) one cgroup path or mount root names.
pub fn from_path(path: &str) -> Option<ContainerRef> {
    let segments: Vec<&str> = path.split('/').collect();
    let (index, start) = segments
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, s)| container_id_at(s).map(|at| (i, at)))?;
    let segment = segments[index];
    let container_id = segment[start..start + 64].to_owned();
    // The pod UID is before the container ID: in the same segment's prefix,
    // or in an earlier segment.
    let pod_uid = std::iter::once(&segment[..start])
        .chain(segments[..index].iter().rev().copied())
        .find_map(pod_uid_in);
    Some(ContainerRef {
        pod_uid,
        container_id,
    })
}

/// Regex `\w` (ASCII word characters), for word boundaries.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Byte offset of the first whole 64-hex word of `segment`.
fn container_id_at(segment: &str) -> Option<usize> {
    let b = segment.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !is_word(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_word(b[i]) {
            i += 1;
        }
        if i - start == 64 && b[start..i].iter().all(u8::is_ascii_hexdigit) {
            return Some(start);
        }
    }
    None
}

/// The UID of the first `pod<uid>` word of `segment` (with `-` or `_`
/// between the groups, not followed or preceded by a word character),
/// normalised to lowercase-preserving dashes.
fn pod_uid_in(segment: &str) -> Option<String> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    const LEN: usize = 36;
    let b = segment.as_bytes();
    let mut from = 0;
    while let Some(pos) = segment[from..].find("pod") {
        let at = from + pos;
        from = at + 3;
        if at > 0 && is_word(b[at - 1]) {
            continue;
        }
        let uid = b.get(at + 3..at + 3 + LEN)?;
        if b.get(at + 3 + LEN).is_some_and(|c| is_word(*c)) {
            continue;
        }
        let mut k = 0;
        let mut ok = true;
        for (g, len) in GROUPS.iter().enumerate() {
            if g > 0 {
                ok &= uid[k] == b'-' || uid[k] == b'_';
                k += 1;
            }
            ok &= uid[k..k + len].iter().all(u8::is_ascii_hexdigit);
            k += len;
        }
        if ok {
            let text = String::from_utf8_lossy(uid).replace('_', "-");
            return Some(text);
        }
    }
    None
}

#[cfg(test)]
mod tests;
