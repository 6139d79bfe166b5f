//! The [`Manager`]: the agent's link to the server and what it holds.
//!
//! The agent SVID, the bundle roots, the mTLS channel built from both
//! ([`client::server_channel`]), the JWT-SVID cache, and where they are
//! saved ([`Store`], [`CacheFile`]). Changing the roots or the SVID saves
//! them and rebuilds the channel here, in one place; the code that decides
//! to change them lives in `identity/` (attestation, recovery) and `sync/`
//! (rotation).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use spinel_spiffe::tls::TrustWatch;
use spinel_spiffe::{Clock, TrustDomain};
use tonic::transport::Channel;
use zeroize::Zeroizing;

use super::error::ManagerError;
use super::persist::store::Store;
use super::persist::workload_cache::CacheFile;
use crate::cache::Cache;
use crate::client::{self, ServerPool};
use crate::config::AgentConfig;

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

/// A cached JWT-SVID's key: entry ID and sorted audiences.
pub(super) type JwtKey = (String, Vec<String>);

/// The agent's link to the server.
#[derive(Debug)]
pub struct Manager {
    pub(super) config: AgentConfig,
    pub(super) clock: Clock,
    pub(super) cache: Cache,
    pub(super) store: Store,
    pub(super) cache_file: Option<CacheFile>,
    pub(super) persisted: AtomicU64,
    pub(super) svid: RwLock<Arc<AgentSvid>>,
    pub(super) roots: RwLock<Vec<Vec<u8>>>,
    pub(super) channel: RwLock<Channel>,
    pub(super) reattestable: AtomicBool,
    pub(super) jwt_cache: Mutex<HashMap<JwtKey, (String, SystemTime, SystemTime)>>,
    /// Whether the server's certificate chains to `roots` (see
    /// `identity/rebootstrap.rs`).
    pub(super) trust: Arc<TrustWatch>,
    /// The servers and which one is in use, shared by every channel.
    pub(super) pool: Arc<ServerPool>,
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
            let svid = self.agent_svid();
            let channel = client::server_channel(
                &self.config,
                &self.pool,
                &roots,
                Some((&svid.chain, &svid.key)),
                &self.trust,
            )?;
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
        let channel = client::server_channel(
            &self.config,
            &self.pool,
            &roots,
            Some((&svid.chain, &svid.key)),
            &self.trust,
        )?;
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

    /// Saves the workload cache when it changed since the last save.
    pub(crate) fn save_cache(&self) {
        let Some(file) = &self.cache_file else {
            return;
        };
        let snapshot = self.cache().snapshot();
        if !snapshot.ready || self.persisted.load(Ordering::Relaxed) == snapshot.generation {
            return;
        }
        match file.save(&snapshot) {
            Ok(()) => self.persisted.store(snapshot.generation, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "cannot save the workload cache"),
        }
    }
}
