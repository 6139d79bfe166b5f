//! The manager: the agent's identity and everything it syncs from the server.
//!
//! - At start it loads the agent SVID from `data_dir` ([`store`]) or attests
//!   with the join token. A reattestable attestor (`k8s_psat`) attests at
//!   every start with fresh evidence instead.
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
//!   handled in `recovery.rs` (`rebootstrap_mode`); `docs/operations.md`
//!   tells operators what they see.
//! - It is the [`JwtSvidSource`]: JWT-SVIDs are minted by the server per
//!   audience and cached until half their lifetime.

mod persist;
mod recovery;
mod store;
mod sync;

pub use store::{split_der, Store, StoreError};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use spinel_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use spinel_proto::spire::api::server::svid::v1::NewJwtsvidRequest;
use spinel_spiffe::clock::from_unix_seconds;
use spinel_spiffe::{Clock, TrustDomain};
use tonic::transport::Channel;
use zeroize::Zeroizing;

use crate::cache::{Cache, CachedEntry, JwtSvidError, JwtSvidSource};
use crate::client::{self, ClientError};
use crate::config::AgentConfig;

/// How often the agent syncs with the server.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait between retries when the server fails.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The most JWT-SVIDs kept cached.
const JWT_CACHE_LIMIT: usize = 4096;

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
}

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
        let rebootstrap = config.rebootstrap_mode;
        let roots = match recovery::or_rebootstrap(rebootstrap, store.load_bundle())? {
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
            Some(s) => recovery::usable_stored_svid(&config, &store, s, now)?,
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
            None if reattests => match attest(&config, &roots, &store).await {
                Ok(attested) => attested,
                Err(e) => match recovery::fallback_svid(&config, &store, now) {
                    Some(svid) => {
                        tracing::warn!(error = %e, expires = ?svid.not_after, "cannot attest now (is the server unreachable?): using the stored agent SVID until attestation succeeds");
                        (svid, true)
                    }
                    None => return Err(e),
                },
            },
            None => attest(&config, &roots, &store).await?,
        };
        let channel = mtls_channel(&config, &roots, &svid)?;
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
            config,
            clock,
        }))
    }

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
            let channel = mtls_channel(&self.config, &roots, &self.agent_svid())?;
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
        let channel = mtls_channel(&self.config, &roots, &svid)?;
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
        let (svid, reattestable) = attest(&self.config, &roots, &self.store).await?;
        self.reattestable.store(reattestable, Ordering::Relaxed);
        let not_after = svid.not_after;
        self.set_agent_svid(svid)?;
        tracing::info!(expires = ?not_after, "re-attested: new agent SVID");
        Ok(())
    }

    /// Runs sync and rotation until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        sync::run(self).await
    }

    /// One sync round now (used at start so the first workload finds SVIDs).
    pub async fn sync_once(self: &Arc<Self>) -> Result<(), tonic::Status> {
        sync::sync_once(self).await
    }
}

fn bootstrap_roots(config: &AgentConfig) -> Result<Vec<Vec<u8>>, ManagerError> {
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
async fn attest(
    config: &AgentConfig,
    roots: &[Vec<u8>],
    store: &Store,
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

fn mtls_channel(
    config: &AgentConfig,
    roots: &[Vec<u8>],
    svid: &AgentSvid,
) -> Result<Channel, ManagerError> {
    let tls = client::tls_config(
        &config.trust_domain,
        roots,
        Some((&svid.chain, &svid.key)),
        roots.is_empty() && config.insecure_bootstrap,
    )?;
    Ok(client::channel(
        &config.server_address,
        config.server_port,
        tls,
    )?)
}

#[async_trait]
impl JwtSvidSource for Manager {
    async fn fetch_jwt_svid(
        &self,
        entry: &CachedEntry,
        audience: &[String],
    ) -> Result<String, JwtSvidError> {
        if audience.is_empty() {
            return Err(JwtSvidError::Invalid("audience is required".into()));
        }
        let mut sorted = audience.to_vec();
        sorted.sort();
        sorted.dedup();
        let key = (entry.id.clone(), sorted);
        let now = self.clock.now();
        if let Ok(cache) = self.jwt_cache.lock() {
            if let Some((token, issued, expires)) = cache.get(&key) {
                if renewal_due_at(*issued, *expires, 0.0) > now {
                    return Ok(token.clone());
                }
            }
        }
        let request = NewJwtsvidRequest {
            audience: audience.to_vec(),
            entry_id: entry.id.clone(),
        };
        let presented = self.agent_svid();
        let mut result = SvidClient::new(self.channel())
            .new_jwtsvid(request.clone())
            .await;
        // The agent SVID may have been renewed while this call was on its
        // way: once the server has seen the new one, the old one is
        // superseded. Ask again, once, with the new one.
        if matches!(&result, Err(s) if s.code() == tonic::Code::PermissionDenied)
            && !Arc::ptr_eq(&presented, &self.agent_svid())
        {
            result = SvidClient::new(self.channel()).new_jwtsvid(request).await;
        }
        let response = result
            .map_err(|s| match s.code() {
                tonic::Code::InvalidArgument => JwtSvidError::Invalid(s.message().to_owned()),
                _ => JwtSvidError::Unavailable(format!("{}: {}", s.code(), s.message())),
            })?
            .into_inner();
        let svid = response
            .svid
            .ok_or_else(|| JwtSvidError::Unavailable("the server returned no JWT-SVID".into()))?;
        let issued = from_unix_seconds(svid.issued_at);
        let expires = from_unix_seconds(svid.expires_at);
        if let Ok(mut cache) = self.jwt_cache.lock() {
            if cache.len() >= JWT_CACHE_LIMIT {
                cache.retain(|_, (_, _, exp)| *exp > now);
                if cache.len() >= JWT_CACHE_LIMIT {
                    cache.clear();
                }
            }
            cache.insert(key, (svid.token.clone(), issued, expires));
        }
        Ok(svid.token)
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
