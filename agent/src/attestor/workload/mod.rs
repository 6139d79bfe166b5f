//! Workload attestors: who is calling the Workload API.
//!
//! The Workload API learns the caller's pid, uid and gid from the socket
//! ([`Caller`]); a [`WorkloadAttestor`] turns that into selectors
//! (`unix:uid:1000`, `k8s:ns:payments`, ...), and the entries whose
//! selectors are all among them are the caller's identities.
//!
//! [`build`] makes one attestor out of every `WorkloadAttestor` plugin of
//! the agent config: they run concurrently and their selectors are merged;
//! if any of them fails, the attestation fails (the caller is given no
//! identity rather than one decided on partial facts).
//!
//! Plugins: [`unix`] (SPIRE's `unix`), [`k8s`] (SPIRE's `k8s`).

pub mod k8s;
mod names;
mod procfs;
pub mod unix;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use spinel_spiffe::{Selector, SelectorError};

pub use k8s::{K8sAttestor, K8sConfig, K8sError};
pub use procfs::Root;
pub use unix::{UnixAttestor, UnixConfig};

/// The process at the other end of a Workload API connection, from the
/// socket's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Process ID.
    pub pid: i32,
    /// Effective user ID when it connected.
    pub uid: u32,
    /// Effective group ID when it connected.
    pub gid: u32,
    /// The process pinned when it connected (a pidfd): while it is alive,
    /// `pid` names it and no other process. `None` where the kernel has
    /// no pidfds.
    pub process: Option<spinel_transport::ProcessHandle>,
}

/// Why a workload could not be attested, or an attestor not configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// A `WorkloadAttestor` plugin is unknown or its `plugin_data` invalid
    /// (the error names the file, line and key).
    #[error(transparent)]
    Config(#[from] spinel_config::hcl::ConfigError),
    /// The config declares no `WorkloadAttestor` plugin.
    #[error("no WorkloadAttestor plugin is configured (add `WorkloadAttestor \"unix\"`)")]
    NoPlugin,
    /// The socket did not give the caller's pid.
    #[error("the caller's process ID is unknown")]
    NoPid,
    /// The process exited before it could be attested.
    #[error("process {pid} is gone")]
    ProcessGone {
        /// The caller's pid.
        pid: i32,
    },
    /// The process that connected exited: its pid may name another one.
    #[error("process {pid} that connected has exited")]
    ProcessExited {
        /// The caller's pid.
        pid: i32,
    },
    /// The pid now names another process than when attestation started.
    #[error("process {pid} was replaced during attestation")]
    ProcessChanged {
        /// The caller's pid.
        pid: i32,
    },
    /// The process runs as another user or group than the connection's.
    #[error(
        "process {pid} runs as uid/gid {}/{} but connected as {}/{}",
        process.0, process.1, peer.0, peer.1
    )]
    CredentialsChanged {
        /// The caller's pid.
        pid: i32,
        /// uid and gid from the socket.
        peer: (u32, u32),
        /// Effective uid and gid from `/proc/<pid>/status`.
        process: (u32, u32),
    },
    /// The executable is larger than `workload_size_limit`.
    #[error("executable of process {pid} is {size} bytes, over workload_size_limit {limit}")]
    ExecutableTooLarge {
        /// The caller's pid.
        pid: i32,
        /// Bytes seen.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file does not have the expected format.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The `k8s` attestor could not attest the caller (kubelet unreachable
    /// or refusing, pod or container not listed, ambiguous cgroups...).
    #[error("k8s: {0}")]
    K8s(k8s::K8sError),
    /// A fact about the workload does not make a valid selector.
    #[error("invalid selector: {0}")]
    Selector(#[from] SelectorError),
    /// An attestor failed unexpectedly.
    #[error("{0}")]
    Internal(String),
}

impl AttestError {
    /// True when the caller's process could not be pinned (gone, replaced,
    /// credentials changed): the caller gets no identity.
    pub fn is_caller_gone(&self) -> bool {
        matches!(
            self,
            AttestError::NoPid
                | AttestError::ProcessGone { .. }
                | AttestError::ProcessExited { .. }
                | AttestError::ProcessChanged { .. }
                | AttestError::CredentialsChanged { .. }
        )
    }
}

impl Caller {
    /// Fails when the process that connected has exited (so `pid` may now
    /// name another): called after attestation, it proves that what was
    /// read from `/proc/<pid>` described the caller.
    pub fn check_still_connected(&self) -> Result<(), AttestError> {
        match &self.process {
            Some(process) if !process.is_alive() => {
                Err(AttestError::ProcessExited { pid: self.pid })
            }
            _ => Ok(()),
        }
    }

    /// A caller for process `pid` as it runs now (effective uid and gid
    /// from `/proc/<pid>/status`), for attesting a process that did not
    /// connect itself (the debug API).
    pub fn of_process(pid: i32) -> Result<Caller, AttestError> {
        let status = procfs::status(&Root::system(), pid)?;
        let missing = || AttestError::Malformed {
            path: Root::system().proc_file(pid, "status"),
            reason: "no Uid or Gid line".into(),
        };
        // Pinned before its credentials are read: if it exits meanwhile,
        // the check after attestation says so.
        let process = spinel_transport::ProcessHandle::open(pid);
        Ok(Caller {
            pid,
            uid: status.effective_uid().ok_or_else(missing)?,
            gid: status.effective_gid().ok_or_else(missing)?,
            process,
        })
    }
}

/// Something that tells which selectors a calling process has.
#[async_trait]
pub trait WorkloadAttestor: Send + Sync + Debug + 'static {
    /// The selectors of `caller`. A plugin not in a position to attest the
    /// caller (e.g. `k8s` for a process outside any pod) returns none.
    async fn attest(&self, caller: &Caller) -> Result<Vec<Selector>, AttestError>;
}

/// Several attestors run as one: the union of their selectors.
#[derive(Debug)]
pub struct Combined {
    attestors: Vec<Arc<dyn WorkloadAttestor>>,
}

impl Combined {
    /// Combines `attestors`.
    pub fn new(attestors: Vec<Arc<dyn WorkloadAttestor>>) -> Self {
        Combined { attestors }
    }
}

#[async_trait]
impl WorkloadAttestor for Combined {
    async fn attest(&self, caller: &Caller) -> Result<Vec<Selector>, AttestError> {
        let all =
            futures::future::try_join_all(self.attestors.iter().map(|a| a.attest(caller))).await?;
        let mut out: Vec<Selector> = Vec::new();
        for s in all.into_iter().flatten() {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(out)
    }
}

/// The `WorkloadAttestor` plugins Spinel has.
pub const SUPPORTED: &[&str] = &[unix::SELECTOR_TYPE, k8s::SELECTOR_TYPE];

/// Builds the attestor of the agent config's enabled `WorkloadAttestor`
/// plugins (other plugin kinds in `decls` are ignored).
pub fn build(
    decls: &[spinel_config::hcl::PluginDecl],
) -> Result<Arc<dyn WorkloadAttestor>, AttestError> {
    let mut attestors: Vec<Arc<dyn WorkloadAttestor>> = Vec::new();
    for decl in decls
        .iter()
        .filter(|d| d.enabled && d.kind == "WorkloadAttestor")
    {
        match decl.name.as_str() {
            unix::SELECTOR_TYPE => {
                let config: UnixConfig = decl.data()?;
                attestors.push(Arc::new(UnixAttestor::new(config)));
            }
            k8s::SELECTOR_TYPE => attestors.push(Arc::new(K8sAttestor::from_decl(decl)?)),
            _ => return Err(decl.unsupported(SUPPORTED).into()),
        }
    }
    match attestors.len() {
        0 => Err(AttestError::NoPlugin),
        1 => Ok(attestors.remove(0)),
        _ => Ok(Arc::new(Combined::new(attestors))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Result<Vec<&'static str>, ()>);

    #[async_trait]
    impl WorkloadAttestor for Fixed {
        async fn attest(&self, _caller: &Caller) -> Result<Vec<Selector>, AttestError> {
            match &self.0 {
                Ok(list) => Ok(list.iter().map(|s| Selector::parse(s).unwrap()).collect()),
                Err(()) => Err(AttestError::Internal("boom".into())),
            }
        }
    }

    const CALLER: Caller = Caller {
        pid: 1,
        uid: 2,
        gid: 3,
        process: None,
    };

    #[tokio::test]
    async fn combined_merges_and_fails_as_one() {
        let a: Arc<dyn WorkloadAttestor> = Arc::new(Fixed(Ok(vec!["unix:uid:2", "unix:gid:3"])));
        let b: Arc<dyn WorkloadAttestor> = Arc::new(Fixed(Ok(vec!["k8s:ns:x", "unix:uid:2"])));
        let got = Combined::new(vec![a.clone(), b])
            .attest(&CALLER)
            .await
            .unwrap();
        let got: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["unix:uid:2", "unix:gid:3", "k8s:ns:x"]);
        let failing: Arc<dyn WorkloadAttestor> = Arc::new(Fixed(Err(())));
        assert!(Combined::new(vec![a, failing])
            .attest(&CALLER)
            .await
            .is_err());
    }
}
