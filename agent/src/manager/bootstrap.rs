//! Start-up: the bootstrap bundle, the stored or freshly attested agent
//! SVID, and the connection to the server.
//!
//! The roots come from `bundle.der` in `data_dir` (the last bundle the
//! server sent) or, on first start, from `trust_bundle_path`. A stored
//! agent SVID is reused unless the attestor attests at every start
//! (`k8s_psat`); a server whose certificate the stored bundle does not
//! trust is handled in `rebootstrap.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use spinel_spiffe::tls::TrustWatch;
use spinel_spiffe::Clock;
use tonic::transport::Channel;

use super::{
    key_and_csr, persist, rebootstrap, recovery, validity, AgentSvid, Manager, ManagerError, Store,
};
use crate::cache::Cache;
use crate::client;
use crate::config::AgentConfig;

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
        let cache_file = key_dir.as_deref().map(persist::CacheFile::new);
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
        let mut roots = match recovery::or_rebootstrap(rebootstrap, store.load_bundle())? {
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
            recovery::or_rebootstrap(rebootstrap, store.load_svid())?
        };
        let stored = match stored {
            Some(s) => recovery::usable_stored_svid(&config, &store, s, &roots, now)?,
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
            None => match attest(&config, &roots, &store, &trust).await {
                Ok(attested) => attested,
                Err(e) => {
                    // A reattestable agent skipped its stored SVID above; it
                    // may still serve with it while attestation fails.
                    let fallback = reattests
                        .then(|| recovery::fallback_svid(&config, &store, &roots, now))
                        .flatten();
                    match fallback {
                        Some(svid) => {
                            tracing::warn!(error = %e, expires = ?svid.not_after, "cannot attest now (is the server unreachable?): using the stored agent SVID until attestation succeeds");
                            (svid, true)
                        }
                        None => {
                            let (svid, reattestable, fresh) =
                                rebootstrap::at_start(&config, &store, &trust, &roots, e).await?;
                            roots = fresh;
                            (svid, reattestable)
                        }
                    }
                }
            },
        };
        let channel = mtls_channel(&config, &roots, &svid, &trust)?;
        if let Some(file) = &cache_file {
            recovery::restore_cache(rebootstrap, file, &cache, now)?;
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
            config,
            clock,
        }))
    }
}

pub(super) fn bootstrap_roots(config: &AgentConfig) -> Result<Vec<Vec<u8>>, ManagerError> {
    let Some(path) = &config.trust_bundle_path else {
        if config.insecure_bootstrap {
            tracing::warn!("insecure_bootstrap: the server is not verified on first contact");
            return Ok(Vec::new());
        }
        return Err(ManagerError::NoIdentity(
            "no trust bundle: set agent.trust_bundle_path (e.g. the output of `spinel-server bundle show -format pem`) or insecure_bootstrap = true".into(),
        ));
    };
    let bad = |reason: String| ManagerError::Bundle {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let roots = if config.trust_bundle_format == "spiffe" {
        spinel_spiffe::TrustBundle::from_json(config.trust_domain.clone(), &bytes)
            .map_err(|e| bad(e.to_string()))?
            .x509_authorities
    } else {
        let text = String::from_utf8(bytes).map_err(|_| bad("not PEM text".into()))?;
        pem_certificates(&text).map_err(bad)?
    };
    if roots.is_empty() {
        return Err(bad("holds no CA certificate".into()));
    }
    Ok(roots)
}

/// The DER certificates of a PEM document.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            body = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            let b64 = body.take().ok_or("END without BEGIN")?;
            out.push(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| "certificate is not base64".to_owned())?,
            );
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    Ok(out)
}

/// Attests with the configured node attestor; returns the SVID and whether
/// the server lets the agent attest again.
pub(super) async fn attest(
    config: &AgentConfig,
    roots: &[Vec<u8>],
    store: &Store,
    trust: &Arc<TrustWatch>,
) -> Result<(AgentSvid, bool), ManagerError> {
    use crate::attestor::node::{self, NodeAttestorConfig};
    let data = match &config.node_attestor {
        NodeAttestorConfig::JoinToken => {
            let Some(token) = &config.join_token else {
                return Err(ManagerError::NoIdentity(
                    "the agent has no valid SVID in data_dir and no join token: create one with `spinel-server token generate` and pass it with -joinToken or agent.join_token".into(),
                ));
            };
            node::join_token::attestation_data(token)
        }
        NodeAttestorConfig::K8sPsat(psat) => node::k8s_psat::attestation_data(psat)?,
    };
    let (key, csr) = key_and_csr()?;
    let tls = client::tls_config(
        &config.trust_domain,
        roots,
        None,
        roots.is_empty() && config.insecure_bootstrap,
        trust,
    )?;
    let channel = client::channel(&config.server_address, config.server_port, tls)?;
    let attested = node::attest(channel, data, csr).await?;
    let (not_before, not_after) = attested
        .chain
        .first()
        .and_then(|c| validity(c))
        .ok_or_else(|| {
            ManagerError::NoIdentity("the server returned an unreadable agent SVID".into())
        })?;
    tracing::info!(
        spiffe_id = %attested.spiffe_id,
        node_attestor = config.node_attestor.name(),
        reattestable = attested.reattestable,
        "node attestation succeeded"
    );
    store.save_svid(&attested.chain, &key)?;
    Ok((
        AgentSvid {
            chain: attested.chain,
            key,
            not_before,
            not_after,
        },
        attested.reattestable,
    ))
}

pub(super) fn mtls_channel(
    config: &AgentConfig,
    roots: &[Vec<u8>],
    svid: &AgentSvid,
    trust: &Arc<TrustWatch>,
) -> Result<Channel, ManagerError> {
    let tls = client::tls_config(
        &config.trust_domain,
        roots,
        Some((&svid.chain, &svid.key)),
        roots.is_empty() && config.insecure_bootstrap,
        trust,
    )?;
    Ok(client::channel(
        &config.server_address,
        config.server_port,
        tls,
    )?)
}
