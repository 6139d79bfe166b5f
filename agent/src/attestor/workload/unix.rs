//! The `unix` workload attestor, as SPIRE's.
//!
//! Selectors (all with type `unix`):
//! - `uid:<n>` and `user:<name>`: the caller's effective user;
//! - `gid:<n>` and `group:<name>`: its effective group;
//! - `supplementary_gid:<n>` and `supplementary_group:<name>`: its other groups;
//! - with `discover_workload_path = true`: `path:<executable>` and
//!   `sha256:<hex digest of the executable>` (the digest only when
//!   `workload_size_limit` is not negative; a positive limit refuses larger
//!   binaries).
//!
//! Names are given only when `/etc/passwd` or `/etc/group` resolves the ID
//! (answers are remembered for a few seconds while the file is unchanged:
//! see `names.rs`).
//!
//! The user and group IDs come from the socket's peer credentials, which the
//! kernel recorded when the workload connected; `/proc/<pid>` gives the
//! supplementary groups and the executable. To be sure those belong to the
//! process that connected, the attestor pins it: the process start time is
//! read before and after everything else and must not change (a reused pid
//! has another start time), and the process's effective IDs must still be
//! the peer credentials. Otherwise attestation fails, and the caller gets
//! no identity rather than another process's. A caller pinned at connect
//! (a pidfd, see `spinel_transport::ProcessHandle`) needs no start time:
//! its process still running after the reads proves they were of it.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use spinel_spiffe::{Clock, Selector};

use super::names::Names;
use super::procfs::{self, Root};
use super::{AttestError, Caller, WorkloadAttestor};

/// The selector type of this attestor.
pub const SELECTOR_TYPE: &str = "unix";

/// `plugin_data` of `WorkloadAttestor "unix"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixConfig {
    /// Also produce `unix:path` and `unix:sha256` selectors (needs permission
    /// to read `/proc/<pid>/exe`).
    #[serde(default)]
    pub discover_workload_path: bool,
    /// Largest executable (bytes) hashed for `unix:sha256`; 0 is no limit,
    /// negative disables the hash.
    #[serde(default)]
    pub workload_size_limit: i64,
}

/// The `unix` workload attestor.
#[derive(Debug, Clone)]
pub struct UnixAttestor {
    config: UnixConfig,
    root: Root,
    names: Arc<Names>,
}

impl UnixAttestor {
    /// An attestor reading the real `/proc` and `/etc`.
    pub fn new(config: UnixConfig) -> Self {
        Self::with_root(config, Root::system())
    }

    /// An attestor reading `/proc` and `/etc` under `root`.
    pub fn with_root(config: UnixConfig, root: Root) -> Self {
        UnixAttestor {
            config,
            root,
            names: Arc::new(Names::new(Clock::system())),
        }
    }

    /// Attests `caller` synchronously (file reads and hashing).
    ///
    /// Without `discover_workload_path` this reads only
    /// `/proc/<pid>/status`, `/proc/<pid>/stat` twice when the caller is
    /// not pinned by a pidfd, and, when the answers are not remembered
    /// (`names.rs`), `/etc/passwd` and `/etc/group`.
    pub fn attest_blocking(&self, caller: &Caller) -> Result<Vec<Selector>, AttestError> {
        let pid = caller.pid;
        if pid <= 0 {
            return Err(AttestError::NoPid);
        }
        // A caller pinned by a pidfd is checked once at the end: while its
        // process lives, no other process can have its pid, so what was
        // read below described it. Without one, the start time read before
        // and after must agree.
        let started = match caller.process {
            Some(_) => None,
            None => Some(procfs::start_time(&self.root, pid)?),
        };

        let status = procfs::status(&self.root, pid)?;
        let (uid, gid) = (status.effective_uid(), status.effective_gid());
        if uid != Some(caller.uid) || gid != Some(caller.gid) {
            return Err(AttestError::CredentialsChanged {
                pid,
                peer: (caller.uid, caller.gid),
                process: (uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX)),
            });
        }
        let exe = if self.config.discover_workload_path {
            let path = procfs::exe_path(&self.root, pid)?;
            let digest = if self.config.workload_size_limit >= 0 {
                Some(procfs::exe_sha256(
                    &self.root,
                    pid,
                    self.config.workload_size_limit,
                )?)
            } else {
                None
            };
            Some((path, digest))
        } else {
            None
        };

        match started {
            Some(started) => {
                if procfs::start_time(&self.root, pid)? != started {
                    return Err(AttestError::ProcessChanged { pid });
                }
            }
            None => caller.check_still_connected()?,
        }

        let mut out = Selectors::default();
        out.push("uid", caller.uid.to_string())?;
        if let Some(name) = self.names.user(&self.root, caller.uid)? {
            out.push("user", name)?;
        }
        out.push("gid", caller.gid.to_string())?;
        if let Some(name) = self.names.group(&self.root, caller.gid)? {
            out.push("group", name)?;
        }
        for g in &status.groups {
            out.push("supplementary_gid", g.to_string())?;
            if let Some(name) = self.names.group(&self.root, *g)? {
                out.push("supplementary_group", name)?;
            }
        }
        if let Some((path, digest)) = exe {
            out.push("path", path)?;
            if let Some(d) = digest {
                out.push("sha256", d)?;
            }
        }
        Ok(out.list)
    }
}

/// Selectors in the order produced, without duplicates.
#[derive(Default)]
struct Selectors {
    seen: BTreeSet<Selector>,
    list: Vec<Selector>,
}

impl Selectors {
    fn push(&mut self, kind: &str, value: String) -> Result<(), AttestError> {
        let s = Selector::new(SELECTOR_TYPE, format!("{kind}:{value}"))?;
        if self.seen.insert(s.clone()) {
            self.list.push(s);
        }
        Ok(())
    }
}

#[async_trait]
impl WorkloadAttestor for UnixAttestor {
    async fn attest(&self, caller: &Caller) -> Result<Vec<Selector>, AttestError> {
        if !self.config.discover_workload_path {
            // A few small procfs reads and, mostly, remembered names: cheaper
            // than handing the work to the blocking pool and back.
            return self.attest_blocking(caller);
        }
        // Hashing the executable may read megabytes.
        let this = self.clone();
        let caller = caller.clone();
        tokio::task::spawn_blocking(move || this.attest_blocking(&caller))
            .await
            .map_err(|e| AttestError::Internal(format!("unix attestor task failed: {e}")))?
    }
}
