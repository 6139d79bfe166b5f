//! Start-up ([`Manager::start`]): the bootstrap bundle, the stored or
//! freshly attested agent SVID, the workload cache saved by the previous
//! run, and the connection to the server.
//!
//! The roots come from `bundle.der` in `data_dir` (the last bundle the
//! server sent) or, on first start, from `trust_bundle_path`
//! (`attest.rs`). A stored agent SVID is reused unless the attestor
//! attests at every start (`k8s_psat`); its checks are in `stored.rs`. A
//! server whose certificate the stored bundle does not trust is handled in
//! `rebootstrap.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use spinel_spiffe::tls::TrustWatch;
use spinel_spiffe::Clock;

use super::attest::{attest, bootstrap_roots};
use super::{rebootstrap, stored};
use crate::cache::Cache;
use crate::client::{self, ServerPool};
use crate::config::AgentConfig;
use crate::manager::error::ManagerError;
use crate::manager::persist::store::Store;
use crate::manager::persist::workload_cache::CacheFile;
use crate::manager::state::Manager;

impl Manager {
    /// Loads or attests the agent identity and connects to the server.
    pub async fn start(
        config: AgentConfig,
        cache: Cache,
        clock: Clock,
    ) -> Result<Arc<Self>, ManagerError> {
        let key_dir = match &config.key_manager {
            crate::config::KeyManagerConfig::Disk { directory } => Some(directory.clone()),
            crate::config::KeyManagerConfig::Memory => None,
        };
        let store = Store::new(&config.data_dir, key_dir.as_deref());
        let cache_file = key_dir.as_deref().map(CacheFile::new);
        let cache_path = cache_file.as_ref().map(|f| f.path());
        let removed = store.remove_interrupted_writes(cache_path.as_slice());
        if removed > 0 {
            tracing::info!(
                files = removed,
                "removed temporary files of writes interrupted by a crash"
            );
        }
        let rebootstrap = config.rebootstrap_mode;
        let trust = TrustWatch::new(clock.clone());
        let pool = ServerPool::new(config.servers.clone());
        let mut roots = match stored::or_rebootstrap(rebootstrap, store.load_bundle())? {
            Some(roots) if !roots.is_empty() => roots,
            _ => {
                let roots = bootstrap_roots(&config)?;
                if !roots.is_empty() {
                    store.save_bundle(&roots)?;
                }
                roots
            }
        };
        let now = clock.now();
        let reattests = config.node_attestor.reattests();
        let stored = if reattests {
            None
        } else {
            stored::or_rebootstrap(rebootstrap, store.load_svid())?
        };
        let stored = match stored {
            Some(s) => stored::usable_stored_svid(&config, &store, s, &roots, now)?,
            None => None,
        };
        if reattests {
            tracing::info!(
                node_attestor = config.node_attestor.name(),
                "attesting with fresh evidence (a reattestable agent does not reuse a stored SVID)"
            );
        }
        let (svid, reattestable) = match stored {
            Some(svid) => {
                tracing::info!(expires = ?svid.not_after, "using the agent SVID stored in data_dir");
                (svid, false)
            }
            None => match attest(&config, &pool, &roots, &store, &trust).await {
                Ok(attested) => attested,
                Err(e) => {
                    // A reattestable agent skipped its stored SVID above; it
                    // may still serve with it while attestation fails.
                    let fallback = reattests
                        .then(|| stored::fallback_svid(&config, &store, &roots, now))
                        .flatten();
                    match fallback {
                        Some(svid) => {
                            tracing::warn!(error = %e, expires = ?svid.not_after, "cannot attest now (is the server unreachable?): using the stored agent SVID until attestation succeeds");
                            (svid, true)
                        }
                        None => {
                            let (svid, reattestable, fresh) =
                                rebootstrap::at_start(&config, &pool, &store, &trust, &roots, e)
                                    .await?;
                            roots = fresh;
                            (svid, reattestable)
                        }
                    }
                }
            },
        };
        let channel = client::server_channel(
            &config,
            &pool,
            &roots,
            Some((&svid.chain, &svid.key)),
            &trust,
        )?;
        if let Some(file) = &cache_file {
            stored::restore_cache(rebootstrap, file, &cache, now)?;
        }
        Ok(Arc::new(Manager {
            cache,
            store,
            cache_file,
            persisted: AtomicU64::new(0),
            svid: RwLock::new(Arc::new(svid)),
            roots: RwLock::new(roots),
            channel: RwLock::new(channel),
            reattestable: AtomicBool::new(reattestable),
            jwt_cache: Mutex::new(HashMap::new()),
            trust,
            pool,
            config,
            clock,
        }))
    }
}
