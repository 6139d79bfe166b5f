//! The certificate authority: the trust domain's X.509 CA and JWT signing key.
//!
//! [`Ca`] signs X509-SVIDs and JWT-SVIDs and publishes the trust bundle.
//! Rules it keeps:
//! - the SPIFFE ID, DNS names and TTL of an SVID come from the caller's
//!   [`X509SvidParams`] (the registration entry), never from a CSR; a CSR
//!   only contributes its public key, after its signature is verified
//!   ([`verify_csr`], invariant 1);
//! - no SVID outlives the CA that signs it (invariant 4); NotBefore is
//!   backdated by [`BACKDATE`] for clock skew;
//! - the CA key and certificate are kept by the [`KeyManager`] and the
//!   datastore, so a restart keeps the same bundle;
//! - time comes from [`Clock`], so rotation is tested with paused time.
//!
//! Authorities (`authority.rs`) rotate on SPIRE's schedule, and operators
//! drive them by hand through the LocalAuthority API (`manual.rs`:
//! prepare, activate, taint, revoke; `operations.rs`: the [`Ca`] methods).
//! Every change goes through one serialised path that writes the journal
//! before the new state signs or is acknowledged (invariant 6). With an
//! [`UpstreamCa`] (`UpstreamAuthority "disk"`), the X.509 CA is an
//! intermediate: SVID chains carry it and the bundle holds the upstream
//! roots. Certificates are named by their subject key ID (`key_id.rs`,
//! also used by the upstream authority).

mod authority;
mod csr;
mod jwt;
mod key_id;
mod manual;
mod operations;
mod shared_bundle;
mod x509;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use spinel_spiffe::{Clock, SpiffeId, TrustBundle, TrustDomain};
use tokio::sync::watch;

use crate::datastore::DataStore;
use crate::keymanager::{KeyManager, KeyType};

pub use authority::{Authorities, Published};
pub use csr::verify_csr;
pub use key_id::subject_key_id;
pub use manual::{AuthorityInfo, AuthorityKind, AuthorityState};

pub use crate::upstream::UpstreamCa;

/// How far NotBefore is set before "now".
pub const BACKDATE: Duration = Duration::from_secs(10);

/// CA settings, from the `server {}` config block.
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// This server's name for its CA journal in the datastore (servers
    /// sharing one database each keep their own CA); see
    /// `run::server_id`.
    pub server_id: String,
    /// Key type of the X.509 CA (`ca_key_type`, default ec-p256).
    pub ca_key_type: KeyType,
    /// Key type of the JWT signing key (`jwt_key_type`, default: `ca_key_type`).
    pub jwt_key_type: KeyType,
    /// CA certificate lifetime (`ca_ttl`, default 24h).
    pub ca_ttl: Duration,
    /// CA subject (`ca_subject`): country, organization, common name.
    pub ca_subject: CaSubject,
    /// Default X509-SVID TTL (`default_x509_svid_ttl`, default 1h).
    pub default_x509_svid_ttl: Duration,
    /// Default JWT-SVID TTL (`default_jwt_svid_ttl`, default 5m).
    pub default_jwt_svid_ttl: Duration,
    /// `iss` claim of JWT-SVIDs (`jwt_issuer`), if any.
    pub jwt_issuer: Option<String>,
    /// The UpstreamAuthority that signs the X.509 CA, if any (the CA is
    /// then an intermediate and the bundle holds the upstream roots).
    pub upstream: Option<UpstreamCa>,
}

/// The CA certificate's subject.
#[derive(Debug, Clone, Default)]
pub struct CaSubject {
    /// C= values.
    pub country: Vec<String>,
    /// O= values.
    pub organization: Vec<String>,
    /// CN=.
    pub common_name: String,
}

/// What an X509-SVID is made of, decided by the server, not the requester.
#[derive(Debug, Clone)]
pub struct X509SvidParams {
    /// The one URI SAN.
    pub spiffe_id: SpiffeId,
    /// DER SubjectPublicKeyInfo (from a verified CSR).
    pub public_key: Vec<u8>,
    /// DNS SANs; the first is also the subject CN.
    pub dns_names: Vec<String>,
    /// Lifetime; `None` for the default. Clamped to the CA's NotAfter.
    pub ttl: Option<Duration>,
}

/// A signed X509-SVID.
#[derive(Debug, Clone)]
pub struct X509Svid {
    /// Leaf first, then any intermediates up to (not including) the root; DER.
    pub chain: Vec<Vec<u8>>,
    /// Decimal serial number of the leaf.
    pub serial_number: String,
    /// NotAfter of the leaf.
    pub not_after: SystemTime,
}

/// A signed JWT-SVID.
#[derive(Debug, Clone)]
pub struct JwtSvid {
    /// The compact JWS.
    pub token: String,
    /// `iat`.
    pub issued_at: SystemTime,
    /// `exp`.
    pub expires_at: SystemTime,
}

/// What went wrong in the CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The CSR does not parse or its signature does not verify.
    #[error("invalid CSR: {0}")]
    InvalidCsr(String),
    /// The request itself is unacceptable (e.g. an empty audience).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A key could not be made or used.
    #[error(transparent)]
    Key(#[from] crate::keymanager::KeyError),
    /// The datastore failed.
    #[error(transparent)]
    DataStore(#[from] crate::datastore::DataStoreError),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// Stored CA state is inconsistent with the keys (e.g. a key is missing).
    #[error("CA state is inconsistent: {0}")]
    State(String),
    /// A manual authority operation names the wrong authority (empty ID,
    /// the active one where an old one is needed, an unknown ID).
    #[error("invalid authority ID: {0}")]
    InvalidAuthority(String),
    /// A manual authority operation is out of order (activate with nothing
    /// prepared, taint twice, revoke an untainted authority).
    #[error("{0}")]
    OutOfOrder(String),
}

/// The certificate authority. Cheap to share as `Arc<Ca>`.
#[derive(Debug)]
pub struct Ca {
    config: CaConfig,
    keys: Arc<dyn KeyManager>,
    datastore: Arc<dyn DataStore>,
    clock: Clock,
    state: RwLock<Authorities>,
    /// The active X.509 authority ready to sign (key parsed, issuer read),
    /// made on first use and dropped whenever the authorities change.
    signer: RwLock<Option<Arc<x509::X509Signer>>>,
    bundle_tx: watch::Sender<TrustBundle>,
    /// Serialises every change of the authorities (rotation and manual
    /// operations), so each is journaled before the next starts.
    changes: tokio::sync::Mutex<()>,
}

impl Ca {
    /// Loads the CA from the key manager and datastore, or makes a new one,
    /// and stores the trust domain's bundle in the datastore.
    pub async fn start(
        config: CaConfig,
        keys: Arc<dyn KeyManager>,
        datastore: Arc<dyn DataStore>,
        clock: Clock,
    ) -> Result<Arc<Ca>, CaError> {
        let authorities = match datastore.get_ca_journal(&config.server_id).await? {
            Some(journal) => Authorities::load(&journal, keys.as_ref())?,
            None => {
                tracing::info!(trust_domain = %config.trust_domain, "no CA yet: making a new X.509 CA and JWT key");
                Authorities::create(&config, keys.as_ref(), clock.now())?
            }
        };
        let ca = Arc::new(Ca {
            bundle_tx: watch::Sender::new(TrustBundle::new(config.trust_domain.clone())),
            config,
            keys,
            datastore,
            clock,
            state: RwLock::new(authorities),
            signer: RwLock::new(None),
            changes: tokio::sync::Mutex::new(()),
        });
        // An active CA that has already expired (a long outage) is replaced at once.
        ca.rotate_if_due().await?;
        ca.persist_and_publish().await?;
        Ok(ca)
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Authorities>, CaError> {
        self.state
            .read()
            .map_err(|_| CaError::State("CA state lock poisoned".into()))
    }

    /// Saves the journal and publishes the bundle (datastore + watchers).
    /// Failpoint `ca:start:journal-written` between the two.
    async fn persist_and_publish(&self) -> Result<(), CaError> {
        let journal = self.read()?.journal()?;
        self.datastore
            .set_ca_journal(&self.config.server_id, journal)
            .await?;
        spinel_spiffe::failpoint::hit("ca:start:journal-written");
        self.publish_bundle().await
    }

    /// Merges this server's authorities into the trust domain's stored
    /// bundle, which other servers on the same datastore share (a new
    /// sequence number when it changed; see `shared_bundle`), records
    /// what it published in the journal, and tells the watchers about the
    /// stored bundle. Called with the change lock held, or at start.
    async fn publish_bundle(&self) -> Result<(), CaError> {
        let now = self.clock.now();
        let (own, withdrawn, published) = {
            let state = self.read()?;
            let own = state.bundle(&self.config.trust_domain, now);
            let withdrawn = state.published.withdrawn_from(&own);
            (own, withdrawn, state.published.clone())
        };
        let stored = self
            .datastore
            .update_bundle(self.config.trust_domain.as_str(), &|current| {
                shared_bundle::merge(current, &own, &withdrawn, now)
            })
            .await?;
        let now_published = Published::of(&own);
        if now_published != published {
            let journal = {
                let mut state = self
                    .state
                    .write()
                    .map_err(|_| CaError::State("CA state lock poisoned".into()))?;
                state.published = now_published;
                state.journal()?
            };
            self.datastore
                .set_ca_journal(&self.config.server_id, journal)
                .await?;
        }
        let bundle = match &stored {
            Some(stored) => shared_bundle::to_trust_bundle(stored, &self.config.trust_domain),
            None => own,
        };
        self.bundle_tx.send_if_modified(|current| {
            if *current == bundle {
                false
            } else {
                *current = bundle;
                true
            }
        });
        Ok(())
    }

    /// Reads the stored bundle again after another server changed it:
    /// serves and trusts what it holds now, and puts this server's
    /// authorities back if that change lost them.
    pub async fn refresh_shared_bundle(&self) -> Result<(), CaError> {
        let _held = self.changes.lock().await;
        self.publish_bundle().await
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.config.trust_domain
    }

    /// The default X509-SVID TTL.
    pub fn default_x509_svid_ttl(&self) -> Duration {
        self.config.default_x509_svid_ttl
    }

    /// The default JWT-SVID TTL.
    pub fn default_jwt_svid_ttl(&self) -> Duration {
        self.config.default_jwt_svid_ttl
    }

    /// NotAfter of the active X.509 CA.
    pub fn ca_not_after(&self) -> Option<SystemTime> {
        self.read().ok().map(|s| s.active_x509().not_after)
    }

    /// NotAfter of the active JWT key.
    pub fn jwt_key_not_after(&self) -> Option<SystemTime> {
        self.read().ok().map(|s| s.active_jwt().not_after)
    }

    /// The current bundle of this trust domain (all X.509 and JWT
    /// authorities still in use).
    pub fn bundle(&self) -> TrustBundle {
        self.bundle_tx.borrow().clone()
    }

    /// A receiver that sees every new bundle.
    pub fn watch_bundle(&self) -> watch::Receiver<TrustBundle> {
        self.bundle_tx.subscribe()
    }

    /// Signs an X509-SVID with the active X.509 CA. Safe to call from many
    /// threads at once: batches are signed on every core.
    pub fn sign_x509_svid(&self, params: X509SvidParams) -> Result<X509Svid, CaError> {
        check_id_length(&params.spiffe_id)?;
        let signer = self.x509_signer()?;
        let ttl = params.ttl.unwrap_or(self.config.default_x509_svid_ttl);
        let svid = signer.sign(&params, ttl, self.clock.now())?;
        crate::metrics::metrics().x509_svids_signed.inc();
        Ok(svid)
    }

    /// The signer of the active X.509 authority: the cached one while it is
    /// still the active authority, else a new one (which is then cached).
    fn x509_signer(&self) -> Result<Arc<x509::X509Signer>, CaError> {
        let state = self.read()?;
        let active = state.active_x509();
        let cached = self
            .signer
            .read()
            .map_err(|_| CaError::State("CA signer lock poisoned".into()))?
            .clone();
        if let Some(signer) = cached.filter(|s| s.is_for(active)) {
            return Ok(signer);
        }
        let signer = Arc::new(x509::X509Signer::new(active)?);
        // Made while holding the state read lock, so no change of the
        // authorities can have been installed in between.
        *self
            .signer
            .write()
            .map_err(|_| CaError::State("CA signer lock poisoned".into()))? = Some(signer.clone());
        Ok(signer)
    }

    /// Forgets the cached signer (the authorities changed).
    fn drop_signer(&self) {
        if let Ok(mut signer) = self.signer.write() {
            *signer = None;
        }
    }

    /// Signs a JWT-SVID with the active JWT key (`kid` = its key ID).
    pub fn sign_jwt_svid(
        &self,
        spiffe_id: &SpiffeId,
        audience: &[String],
        ttl: Option<Duration>,
    ) -> Result<JwtSvid, CaError> {
        check_id_length(spiffe_id)?;
        let state = self.read()?;
        let ttl = ttl.unwrap_or(self.config.default_jwt_svid_ttl);
        let svid = jwt::sign(
            state.active_jwt(),
            spiffe_id,
            audience,
            ttl,
            self.config.jwt_issuer.as_deref(),
            self.clock.now(),
        )?;
        crate::metrics::metrics().jwt_svids_signed.inc();
        Ok(svid)
    }

    /// A fresh TLS identity for the server itself: an X509-SVID for
    /// `spiffe://<td>/spire/server` (DNS SANs `dns_names`) with a new key.
    /// Returns (chain DER leaf first, PKCS#8 private key DER).
    pub fn server_tls_identity(
        &self,
        dns_names: &[String],
    ) -> Result<(Vec<Vec<u8>>, Vec<u8>), CaError> {
        let key = crate::keymanager::SigningKey::generate("server-tls", KeyType::EcP256)?;
        let svid = self.sign_x509_svid(X509SvidParams {
            spiffe_id: spinel_spiffe::id::server_id(&self.config.trust_domain),
            public_key: key.public_key_der().to_vec(),
            dns_names: dns_names.to_vec(),
            ttl: Some(self.config.default_x509_svid_ttl),
        })?;
        Ok((svid.chain, key.pkcs8_der().to_vec()))
    }

    /// Prepares or activates the next authorities when their time has come.
    /// Returns whether anything changed.
    async fn rotate_if_due(&self) -> Result<bool, CaError> {
        let now = self.clock.now();
        self.change("ca:rotate:journal-written", |next, config, keys| {
            let changed = next.advance(config, keys, now)?;
            Ok((changed, changed))
        })
        .await
    }

    /// Runs rotation until the task is dropped: prepares the next CA and JWT
    /// key ahead of time, publishes them in the bundle, and activates them.
    pub async fn run_rotation(self: Arc<Self>) {
        loop {
            let next = match self.read() {
                Ok(state) => state.next_event(),
                Err(e) => {
                    tracing::error!(error = %e, "CA rotation stopped");
                    return;
                }
            };
            // Wake at the next prepare/activate/expiry point, and at least
            // every 10 minutes to prune expired authorities.
            let at = self.clock.instant_at(next);
            let cap = tokio::time::Instant::now() + Duration::from_secs(600);
            tokio::time::sleep_until(at.min(cap)).await;
            match self.rotate_if_due().await {
                Ok(true) => tracing::info!("CA authorities rotated"),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "CA rotation failed; retrying in 10 s");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            }
        }
    }
}

/// Refuses to sign for an ID over the SPIFFE spec's 2,048 bytes, wherever
/// it came from (an entry stored before the API checked the length).
fn check_id_length(id: &SpiffeId) -> Result<(), CaError> {
    spinel_spiffe::id::check_length(&id.to_string())
        .map_err(|e| CaError::InvalidRequest(e.to_string()))
}

#[cfg(test)]
mod manual_tests;
#[cfg(test)]
mod tests;
