//! TLS for the TCP listener: the server's own X509-SVID, and client
//! certificates checked against the current trust bundle.
//!
//! - [`ServerCertResolver`] serves the server's SVID
//!   (`spiffe://<td>/spire/server`), swapped in place by [`maintain`] at
//!   half its lifetime and whenever the bundle changes (CA rotation).
//! - [`BundleClientVerifier`] makes client certificates optional (agents
//!   attest anonymously; everyone may fetch the bundle) and verifies the ones
//!   sent against the bundle of the moment, rebuilt on every bundle change.
//!   A chain whose leaf has expired but is otherwise valid is let through the
//!   handshake so that the authorization layer can refuse the call with
//!   `PermissionDenied` ("SVID is expired"), as SPIRE does, instead of a
//!   bare handshake failure the agent cannot act on.
//! - ALPN is `h2` only: the listener speaks gRPC.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use spinel_spiffe::{Clock, TrustBundle};

use crate::ca::Ca;

/// What went wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA could not issue the server's certificate.
    #[error("cannot issue the server certificate: {0}")]
    Issue(#[from] crate::ca::CaError),
    /// The issued key or chain is unusable by rustls.
    #[error("unusable server certificate or key: {0}")]
    Key(String),
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The ring provider, shared by everything TLS in the server.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Serves whichever server certificate is current.
#[derive(Debug)]
pub struct ServerCertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCertResolver {
    /// A resolver serving `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        ServerCertResolver {
            current: RwLock::new(key),
        }
    }

    /// Replaces the served certificate.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        match self.current.write() {
            Ok(mut guard) => *guard = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }

    fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for ServerCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// A fresh server certificate from the CA, as rustls wants it, with the
/// time its leaf expires.
pub fn issue_server_key(
    ca: &Ca,
    dns_names: &[String],
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, SystemTime), TlsError> {
    let (chain, pkcs8) = ca.server_tls_identity(dns_names)?;
    let not_after = chain
        .first()
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf).ok())
        .map(|(_, cert)| {
            let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
        })
        .ok_or_else(|| TlsError::Key("the issued chain has no parseable leaf".into()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8));
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let chain = chain.into_iter().map(CertificateDer::from).collect();
    Ok((Arc::new(CertifiedKey::new(chain, signing_key)), not_after))
}

/// Verifies optional client certificates against the current bundle.
#[derive(Debug)]
pub struct BundleClientVerifier {
    provider: Arc<CryptoProvider>,
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl BundleClientVerifier {
    /// A verifier trusting the X.509 authorities of `bundle`.
    pub fn new(bundle: &TrustBundle, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let inner = build_inner(bundle, &provider)?;
        Ok(BundleClientVerifier {
            provider,
            inner: RwLock::new(inner),
        })
    }

    /// Trusts the authorities of `bundle` from now on. A bundle without any
    /// usable authority leaves the previous trust in place (and says so).
    pub fn update(&self, bundle: &TrustBundle) {
        match build_inner(bundle, &self.provider) {
            Ok(inner) => match self.inner.write() {
                Ok(mut guard) => *guard = inner,
                Err(poisoned) => *poisoned.into_inner() = inner,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot trust the new bundle for client certificates; keeping the previous one");
            }
        }
    }

    fn get(&self) -> Arc<dyn ClientCertVerifier> {
        match self.inner.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

fn build_inner(
    bundle: &TrustBundle,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(
        bundle
            .x509_authorities
            .iter()
            .map(|der| CertificateDer::from(der.as_slice())),
    );
    if added == 0 {
        return Err(TlsError::Config(
            "the trust bundle has no usable X.509 authority".into(),
        ));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

impl ClientCertVerifier for BundleClientVerifier {
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
        let inner = self.get();
        match inner.verify_client_cert(end_entity, intermediates, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) => {
                // Check the chain as of the leaf's last valid second; the
                // caller's expiry is enforced (and reported) by authorization.
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

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.get().supported_verify_schemes()
    }
}

/// The TLS configuration of the TCP listener.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<ServerCertResolver>,
    verifier: Arc<BundleClientVerifier>,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Keeps the TLS material current until the task is dropped: a new server
/// certificate at half the current one's lifetime, and new client trust plus
/// a new server certificate whenever the bundle changes.
pub async fn maintain(
    ca: Arc<Ca>,
    clock: Clock,
    dns_names: Vec<String>,
    mut not_after: SystemTime,
    resolver: Arc<ServerCertResolver>,
    verifier: Arc<BundleClientVerifier>,
) {
    let provider = provider();
    let mut bundles = ca.watch_bundle();
    bundles.mark_unchanged();
    let mut issued_at = clock.now();
    loop {
        let lifetime = not_after.duration_since(issued_at).unwrap_or_default();
        let renew_at = issued_at + lifetime / 2;
        let bundle_changed = tokio::select! {
            changed = bundles.changed() => {
                if changed.is_err() {
                    // The CA is gone: the server is shutting down.
                    return;
                }
                true
            }
            () = tokio::time::sleep_until(clock.instant_at(renew_at)) => false,
        };
        if bundle_changed {
            let bundle = bundles.borrow_and_update().clone();
            verifier.update(&bundle);
            tracing::info!(
                sequence = bundle.sequence,
                "trust bundle changed; client certificate trust updated"
            );
        }
        match issue_server_key(&ca, &dns_names, &provider) {
            Ok((key, expiry)) => {
                resolver.set(key);
                issued_at = clock.now();
                not_after = expiry;
                tracing::debug!("server TLS certificate renewed");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot renew the server TLS certificate; retrying in 10 s");
                issued_at = clock.now();
                not_after = issued_at + Duration::from_secs(20);
            }
        }
    }
}
