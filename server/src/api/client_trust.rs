//! Client certificates on the TCP listener, judged by the trust bundle as
//! it is now (DESIGN.md invariant 9): at the handshake, at every request,
//! and whenever the bundle changes.
//!
//! - [`ClientTrust`] follows the CA's bundle. Its verifier is rebuilt from
//!   the bundle's X.509 authorities when they change (found on use, so
//!   nothing lags behind the CA's publication) and numbered by a
//!   generation. It is the listener's [`ClientCertVerifier`]: client
//!   certificates are optional (agents attest anonymously; anyone may
//!   fetch the bundle), and a chain whose leaf has expired but is
//!   otherwise valid passes the handshake so that authorization can refuse
//!   the call with `PermissionDenied` ("SVID is expired"), as SPIRE does.
//! - [`PeerChain`] is one connection's client chain with the verdict on it,
//!   cached for the generation it was reached in: a request costs one
//!   atomic load while the bundle's authorities stay the same, and one
//!   chain verification after they change. `auth.rs` refuses a request
//!   whose chain is no longer [`PeerChain::trusted`];
//!   [`PeerChain::until_untrusted`] resolves when a bundle change leaves
//!   the chain untrusted, and `revocable.rs` closes the connection then.
//!
//! Session resumption is off on the listener (`tls.rs`): a resumed session
//! would restore a chain without any verifier seeing it.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DistinguishedName, RootCertStore};
use rustls_pki_types::{CertificateDer, UnixTime};
use spinel_spiffe::{Clock, TrustBundle};
use tokio::sync::watch;

/// Client certificate trust that follows the CA's bundle.
#[derive(Debug)]
pub struct ClientTrust {
    provider: Arc<CryptoProvider>,
    clock: Clock,
    bundles: watch::Receiver<TrustBundle>,
    current: RwLock<Arc<Trust>>,
}

/// The verifier of one set of X.509 authorities.
#[derive(Debug)]
struct Trust {
    /// Starts at 1; every rebuild adds one.
    generation: u64,
    /// The authorities (DER) it was built from.
    roots: Vec<Vec<u8>>,
    /// `None`: no usable authority, no client certificate is trusted.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl Trust {
    fn build(generation: u64, roots: Vec<Vec<u8>>, provider: &Arc<CryptoProvider>) -> Trust {
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(
            roots.iter().map(|der| CertificateDer::from(der.as_slice())),
        );
        let verifier = if added == 0 {
            tracing::error!(
                "the trust bundle has no usable X.509 authority: no client certificate is trusted"
            );
            None
        } else {
            WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .allow_unauthenticated()
                .build()
                .inspect_err(|e| tracing::error!(error = %e, "cannot build the client certificate verifier: no client certificate is trusted"))
                .ok()
        };
        Trust {
            generation,
            roots,
            verifier,
        }
    }

    /// Verifies a chain; an expired leaf is checked as of its last valid
    /// second (authorization enforces, and reports, the expiry).
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let Some(inner) = &self.verifier else {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ));
        };
        match inner.verify_client_cert(end_entity, intermediates, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) => {
                let last_valid = x509_parser::parse_x509_certificate(end_entity)
                    .ok()
                    .and_then(|(_, c)| u64::try_from(c.validity().not_after.timestamp()).ok())
                    .ok_or(rustls::Error::InvalidCertificate(
                        CertificateError::BadEncoding,
                    ))?;
                inner.verify_client_cert(
                    end_entity,
                    intermediates,
                    UnixTime::since_unix_epoch(Duration::from_secs(last_valid)),
                )
            }
            other => other,
        }
    }
}

impl ClientTrust {
    /// Trust in the X.509 authorities of the bundles `bundles` sees.
    pub fn new(
        bundles: watch::Receiver<TrustBundle>,
        provider: Arc<CryptoProvider>,
        clock: Clock,
    ) -> Arc<Self> {
        let roots = bundles.borrow().x509_authorities.clone();
        let trust = Trust::build(1, roots, &provider);
        Arc::new(ClientTrust {
            provider,
            clock,
            bundles,
            current: RwLock::new(Arc::new(trust)),
        })
    }

    /// The trust of the bundle published last, rebuilt first if its
    /// authorities changed. The bundle is only ever borrowed last and
    /// briefly, never while waiting for the lock here.
    fn current(&self) -> Arc<Trust> {
        let trust = match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if self.bundles.borrow().x509_authorities == trust.roots {
            return trust;
        }
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let roots = self.bundles.borrow().x509_authorities.clone();
        if guard.roots != roots {
            let next = Trust::build(guard.generation + 1, roots, &self.provider);
            tracing::info!(
                authorities = next.roots.len(),
                generation = next.generation,
                "trust bundle changed; client certificates are checked against the new authorities"
            );
            *guard = Arc::new(next);
        }
        guard.clone()
    }

    fn now(&self) -> UnixTime {
        UnixTime::since_unix_epoch(
            self.clock
                .now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        )
    }
}

impl ClientCertVerifier for ClientTrust {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client with a certificate always sends it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current().verify(end_entity, intermediates, now)
    }

    spinel_spiffe::handshake_signatures_by_provider!();
}

/// The client certificate chain (leaf first) of one connection, verified
/// at the handshake, with the verdict on it against the current bundle.
/// Derefs to the chain.
#[derive(Debug)]
pub struct PeerChain {
    certs: Vec<CertificateDer<'static>>,
    trust: Arc<ClientTrust>,
    /// `generation << 1 | trusted`; 0 before the first check.
    verdict: AtomicU64,
}

impl PeerChain {
    /// The chain a connection presented, judged by `trust` from now on.
    pub fn new(certs: Vec<CertificateDer<'static>>, trust: Arc<ClientTrust>) -> Arc<Self> {
        Arc::new(PeerChain {
            certs,
            trust,
            verdict: AtomicU64::new(0),
        })
    }

    /// Whether the chain verifies against the bundle as it is now (cached
    /// while the bundle's X.509 authorities stay the same).
    pub fn trusted(&self) -> bool {
        let trust = self.trust.current();
        let seen = self.verdict.load(Ordering::Acquire);
        if seen >> 1 == trust.generation {
            return seen & 1 == 1;
        }
        let ok = match self.certs.split_first() {
            Some((leaf, intermediates)) => {
                trust.verify(leaf, intermediates, self.trust.now()).is_ok()
            }
            None => false,
        };
        self.verdict
            .store(trust.generation << 1 | u64::from(ok), Ordering::Release);
        ok
    }

    /// Resolves once the chain no longer verifies: at once if it does not
    /// now, else at the bundle change that leaves it untrusted. Never
    /// resolves if the CA stops publishing (the server is shutting down).
    pub async fn until_untrusted(self: Arc<Self>, remote: Option<SocketAddr>) {
        let mut bundles = self.trust.bundles.clone();
        bundles.mark_unchanged();
        while self.trusted() {
            if bundles.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        let id = self
            .certs
            .first()
            .and_then(|leaf| spinel_spiffe::tls::uri_sans(leaf).into_iter().next())
            .unwrap_or_default();
        tracing::info!(
            spiffe_id = %id,
            remote = ?remote,
            "closing the connection: its client certificate no longer chains to the trust bundle"
        );
    }
}

impl Deref for PeerChain {
    type Target = [CertificateDer<'static>];

    fn deref(&self) -> &Self::Target {
        &self.certs
    }
}

#[cfg(test)]
mod tests;
