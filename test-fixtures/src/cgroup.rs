//! Real cgroups shaped like a Kubernetes pod's, for end-to-end tests of
//! the `k8s` workload attestor: the test moves its own process into
//! `kubepods/.../pod<uid>/<container id>` so that the agent reads a real
//! `/proc/<pid>/cgroup`, exactly as it would for a container.
//!
//! Needs root and a writable cgroup hierarchy (CI runs as root).
//! [`PodCgroup::enter`] moves the whole calling process (every thread:
//! `cgroup.procs`), so use it from a test that runs in its own process
//! (nextest runs each test so), after starting the server and agent so that
//! they stay outside. Dropping it moves the process back and removes the
//! directories it made.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The cgroup layouts kubelet makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1, cgroupfs driver:
    /// `<v1 pids>/kubepods/besteffort/pod<uid>/<container id>`.
    V1Cgroupfs,
    /// cgroup v2, systemd driver with containerd:
    /// `<v2>/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`.
    V2SystemdContainerd,
}

/// The process's membership of a pod-shaped cgroup; left on drop.
#[derive(Debug)]
pub struct PodCgroup {
    root: PathBuf,
    created: Vec<PathBuf>,
    leaf: PathBuf,
}

/// Where the cgroup v1 `pids` and the cgroup v2 hierarchies are mounted,
/// from `/proc/self/mountinfo`.
fn mount_point(v2: bool) -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let mut post = post.split_whitespace();
        let fstype = post.next()?;
        let options = post.nth(1).unwrap_or_default();
        let mount = pre.split_whitespace().nth(4)?;
        let wanted = if v2 {
            fstype == "cgroup2"
        } else {
            fstype == "cgroup" && options.split(',').any(|o| o == "pids")
        };
        wanted.then(|| PathBuf::from(mount))
    })
}

impl PodCgroup {
    /// Whether `layout` can be set up here (root, hierarchy mounted).
    pub fn available(layout: Layout) -> bool {
        let is_root = crate::process::my_uid() == 0;
        is_root && mount_point(layout == Layout::V2SystemdContainerd).is_some()
    }

    /// Moves this process into a cgroup of `layout` for pod `pod_uid` and
    /// container `container_id` (64 hex digits).
    pub fn enter(layout: Layout, pod_uid: &str, container_id: &str) -> Result<PodCgroup> {
        let v2 = layout == Layout::V2SystemdContainerd;
        let root = mount_point(v2).context("the cgroup hierarchy is not mounted")?;
        let parts: Vec<String> = match layout {
            Layout::V1Cgroupfs => vec![
                "kubepods".into(),
                "besteffort".into(),
                format!("pod{pod_uid}"),
                container_id.into(),
            ],
            Layout::V2SystemdContainerd => vec![
                "kubepods.slice".into(),
                "kubepods-besteffort.slice".into(),
                format!("kubepods-besteffort-pod{}.slice", pod_uid.replace('-', "_")),
                format!("cri-containerd-{container_id}.scope"),
            ],
        };
        let mut created = Vec::new();
        let mut dir = root.clone();
        for part in parts {
            dir.push(part);
            if !dir.exists() {
                fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                created.push(dir.clone());
            }
        }
        let cgroup = PodCgroup {
            root,
            created,
            leaf: dir,
        };
        write_pid(&cgroup.leaf)?;
        Ok(cgroup)
    }

    /// The cgroup directory the process is in.
    pub fn path(&self) -> &Path {
        &self.leaf
    }
}

fn write_pid(dir: &Path) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    fs::write(&procs, std::process::id().to_string())
        .with_context(|| format!("moving this process into {}", procs.display()))
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        let _ = write_pid(&self.root);
        for dir in self.created.iter().rev() {
            // Children the test spawned inside may linger for a moment.
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// Fails unless `layout` is available, naming why.
pub fn require(layout: Layout) -> Result<()> {
    if !PodCgroup::available(layout) {
        bail!("{layout:?} cgroups need root and a mounted hierarchy");
    }
    Ok(())
}
