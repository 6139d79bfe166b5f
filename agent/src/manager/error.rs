//! Why the manager could not start, stops, or what it does after a failed
//! sync round: [`ManagerError`], [`Refused`] and [`Next`].

use super::persist::store::StoreError;
use crate::client::ClientError;

/// Why the manager could not start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// Stored state is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS setup failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Attestation failed.
    #[error(transparent)]
    Attest(#[from] crate::attestor::node::AttestError),
    /// The agent cannot attest: no token and no usable stored SVID.
    #[error("{0}")]
    NoIdentity(String),
    /// The bootstrap bundle is unusable.
    #[error("trust bundle {path}: {reason}")]
    Bundle {
        /// The bundle file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A key or CSR could not be made.
    #[error("key generation failed: {0}")]
    Key(String),
    /// The server's certificate does not chain to the agent's bundle and
    /// the agent may not, or could not, bootstrap again.
    #[error("{0}")]
    Untrusted(String),
}

/// Why the server refuses this agent for good. The stored SVID and the
/// workload SVIDs are gone; the agent serves nothing and exits, as SPIRE's
/// agent does, so that a supervisor or liveness probe restarts it (a
/// `k8s_psat` agent then attests again; a join-token agent needs a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The agent was banned.
    #[error("Agent is banned: removing SVID and shutting down")]
    Banned,
    /// The agent was evicted and cannot attest again by itself.
    #[error("Agent failed re-attestation (evicted; a join-token agent needs a new join token): removing SVID and shutting down")]
    Evicted,
}

/// What the sync loop does next after a failed round (decided in
/// `identity/recovery.rs` and `identity/rebootstrap.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Back off and sync again.
    Retry,
    /// The agent has a new identity: sync again at once.
    Resync,
    /// Stop syncing for good: the server refuses this agent.
    Stop(Refused),
}
