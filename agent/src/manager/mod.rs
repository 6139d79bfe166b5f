//! The manager: the agent's identity and everything it syncs from the server.
//!
//! - At start (`bootstrap.rs`) it loads the agent SVID from `data_dir`
//!   (`store.rs`) or attests with the join token. A reattestable attestor
//!   (`k8s_psat`) attests at every start with fresh evidence instead.
//! - Every [`SYNC_INTERVAL`] it fetches the bundle and its authorized
//!   entries, asks for X509-SVIDs for new or changed entries and for those
//!   past half their lifetime (one fresh key and CSR each, in one batch),
//!   drops identities whose entries are gone, and publishes a new cache
//!   snapshot when anything changed.
//! - It renews its own SVID at half-life with `RenewAgent`, or, when the
//!   server said the agent is reattestable, attests again with fresh
//!   evidence (the server refuses `RenewAgent` for such agents).
//! - Failures back off (capped, jittered) while cached SVIDs keep being
//!   served; an SVID that expires is dropped, never served.
//! - The workload cache is saved in the key directory (`persist.rs`) so a
//!   restarted agent serves what is still valid before it reaches the
//!   server; a reattestable agent that cannot attest at start falls back to
//!   its stored SVID while it lasts.
//! - Unusable stored state, lapsed agent SVIDs, bans and evictions are
//!   handled in `recovery.rs` (`rebootstrap_mode`), a server the stored
//!   bundle no longer trusts in `rebootstrap.rs` (`rebootstrap_delay`);
//!   `docs/operations.md` tells operators what they see.
//! - SVIDs from a tainted CA, or from a CA that left the bundle, are
//!   re-signed at once (`authorities.rs`).
//! - It is the Workload API's JWT-SVID source (`jwt.rs`): JWT-SVIDs are
//!   minted by the server per audience and cached until half their
//!   lifetime.

mod authorities;
mod bootstrap;
mod jwt;
mod persist;
mod rebootstrap;
mod recovery;
mod store;
mod sync;

pub use bootstrap::pem_certificates;
pub use store::{split_der, Store, StoreError};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use spinel_spiffe::clock::from_unix_seconds;
use spinel_spiffe::tls::TrustWatch;
use spinel_spiffe::{Clock, TrustDomain};
use tonic::transport::Channel;
use zeroize::Zeroizing;

use crate::cache::Cache;
use crate::client::ClientError;
use crate::config::AgentConfig;

/// How often the agent syncs with the server.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait between retries when the server fails.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The most JWT-SVIDs kept cached.
pub(crate) const JWT_CACHE_LIMIT: usize = 4096;

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

/// The agent's own SVID and key.
pub(crate) struct AgentSvid {
    pub chain: Vec<Vec<u8>>,
    pub key: Zeroizing<Vec<u8>>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for AgentSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSvid")
            .field("not_after", &self.not_after)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Validity of a DER certificate.
pub(crate) fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((
        from_unix_seconds(cert.validity().not_before.timestamp()),
        from_unix_seconds(cert.validity().not_after.timestamp()),
    ))
}

/// How far servers backdate an SVID's NotBefore for clock skew (Spinel and
/// SPIRE: 10 s). Renewal counts the lifetime from the real issue time.
pub const ISSUE_BACKDATE: Duration = Duration::from_secs(10);

/// When an SVID valid from `not_before` to `not_after` should be renewed:
/// at half its lifetime, jittered by up to ±10% of it.
///
/// The lifetime is counted from when the SVID was issued: `not_before` plus
/// the server's backdate ([`ISSUE_BACKDATE`], at most half the validity).
/// Counted from the backdated `not_before`, an SVID living less than twice
/// the backdate would be due the moment it arrives and be re-signed on
/// every sync; for the usual TTLs the difference is seconds.
pub fn renewal_due_at(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let validity = not_after.duration_since(not_before).unwrap_or_default();
    let issued = not_before + ISSUE_BACKDATE.min(validity / 2);
    let life = not_after.duration_since(issued).unwrap_or_default();
    let jitter = jitter.clamp(-0.1, 0.1);
    let offset = life.as_secs_f64() * (0.5 + jitter);
    issued + Duration::from_secs_f64(offset.max(0.0))
}

/// The wait before retry number `attempt` (0-based): doubling from 1 s,
/// capped at [`MAX_BACKOFF`], with up to 20% jitter removed.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = Duration::from_secs(1u64 << attempt.min(5)).min(MAX_BACKOFF);
    base.mul_f64(1.0 - jitter.clamp(0.0, 0.2))
}

/// A fresh ec-p256 key (PKCS#8) and a CSR for it.
pub(crate) fn key_and_csr() -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), ManagerError> {
    let key = rcgen::KeyPair::generate().map_err(|e| ManagerError::Key(e.to_string()))?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .map_err(|e| ManagerError::Key(e.to_string()))?;
    Ok((Zeroizing::new(key.serialize_der()), csr.der().to_vec()))
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

type JwtKey = (String, Vec<String>);

/// The agent's link to the server.
#[derive(Debug)]
pub struct Manager {
    config: AgentConfig,
    clock: Clock,
    cache: Cache,
    store: Store,
    cache_file: Option<persist::CacheFile>,
    persisted: AtomicU64,
    svid: RwLock<Arc<AgentSvid>>,
    roots: RwLock<Vec<Vec<u8>>>,
    channel: RwLock<Channel>,
    reattestable: AtomicBool,
    jwt_cache: Mutex<HashMap<JwtKey, (String, SystemTime, SystemTime)>>,
    /// Whether the server's certificate chains to `roots` (see
    /// `rebootstrap.rs`).
    trust: Arc<TrustWatch>,
}

impl Manager {
    pub(crate) fn channel(&self) -> Channel {
        match self.channel.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn trust_domain(&self) -> &TrustDomain {
        &self.config.trust_domain
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.cache
    }

    pub(crate) fn agent_svid(&self) -> Arc<AgentSvid> {
        match self.svid.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the bundle roots (persisting them) and reconnects when they changed.
    pub(crate) fn set_roots(&self, roots: Vec<Vec<u8>>) -> Result<bool, ManagerError> {
        let changed = self.roots.read().map(|r| *r != roots).unwrap_or(true);
        if changed {
            self.store.save_bundle(&roots)?;
            let channel =
                bootstrap::mtls_channel(&self.config, &roots, &self.agent_svid(), &self.trust)?;
            if let Ok(mut r) = self.roots.write() {
                *r = roots;
            }
            if let Ok(mut c) = self.channel.write() {
                *c = channel;
            }
        }
        Ok(changed)
    }

    /// Installs a renewed agent SVID (persisting it) and reconnects with it.
    pub(crate) fn set_agent_svid(&self, svid: AgentSvid) -> Result<(), ManagerError> {
        self.store.save_svid(&svid.chain, &svid.key)?;
        let roots = self.roots.read().map(|r| r.clone()).unwrap_or_default();
        let channel = bootstrap::mtls_channel(&self.config, &roots, &svid, &self.trust)?;
        // Channel first: whoever sees the new SVID also gets the channel
        // presenting it (see the retry in `fetch_jwt_svid`).
        if let Ok(mut c) = self.channel.write() {
            *c = channel;
        }
        if let Ok(mut s) = self.svid.write() {
            *s = Arc::new(svid);
        }
        Ok(())
    }

    /// The server lets this agent attest again, and refuses `RenewAgent`.
    pub(crate) fn reattestable(&self) -> bool {
        self.reattestable.load(Ordering::Relaxed)
    }

    /// Attests again with fresh evidence and installs the new SVID.
    pub(crate) async fn reattest(&self) -> Result<(), ManagerError> {
        let roots = self.roots.read().map(|r| r.clone()).unwrap_or_default();
        let (svid, reattestable) =
            bootstrap::attest(&self.config, &roots, &self.store, &self.trust).await?;
        self.reattestable.store(reattestable, Ordering::Relaxed);
        let not_after = svid.not_after;
        self.set_agent_svid(svid)?;
        tracing::info!(expires = ?not_after, "re-attested: new agent SVID");
        Ok(())
    }

    /// Runs sync and rotation until the task is dropped, or until the
    /// server refuses this agent for good (the agent then exits).
    pub async fn run(self: Arc<Self>) -> Refused {
        sync::run(self).await
    }

    /// One sync round now (used at start so the first workload finds SVIDs).
    pub async fn sync_once(self: &Arc<Self>) -> Result<(), tonic::Status> {
        sync::sync_once(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn renewal_at_half_life_with_bounded_jitter() {
        // Issued at 1010 with NotBefore backdated 10 s: 100 s of life left.
        let nb = UNIX_EPOCH + Duration::from_secs(1000);
        let issued = nb + ISSUE_BACKDATE;
        let na = issued + Duration::from_secs(100);
        assert_eq!(
            renewal_due_at(nb, na, 0.0),
            issued + Duration::from_secs(50)
        );
        assert_eq!(
            renewal_due_at(nb, na, 0.5),
            issued + Duration::from_secs(60)
        );
        assert_eq!(
            renewal_due_at(nb, na, -0.5),
            issued + Duration::from_secs(40)
        );
    }

    #[test]
    fn short_svids_are_not_due_on_arrival() {
        // An 8 s SVID backdated 10 s (validity 18 s: the backdate counted is
        // capped at 9 s) is due 3.5 s after its issue at 1010, not at once.
        let nb = UNIX_EPOCH + Duration::from_secs(1000);
        let na = nb + ISSUE_BACKDATE + Duration::from_secs(8);
        assert_eq!(
            renewal_due_at(nb, na, 0.0),
            nb + Duration::from_millis(13_500)
        );
        // Not backdated and shorter than the backdate: still half of it.
        let na = nb + Duration::from_secs(4);
        assert_eq!(renewal_due_at(nb, na, 0.0), nb + Duration::from_secs(3));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(30, 0.0), MAX_BACKOFF);
        assert!(backoff(2, 0.2) >= Duration::from_millis(3200));
    }

    #[test]
    fn pem_certificates_parse() {
        let pem = spinel_spiffe::bundle::pem_encode("CERTIFICATE", &[1, 2, 3]);
        assert_eq!(pem_certificates(&pem).unwrap(), vec![vec![1, 2, 3]]);
        assert!(pem_certificates("-----END CERTIFICATE-----").is_err());
    }
}
