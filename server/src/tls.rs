//! TLS pieces shared by the server's listeners: the crypto provider, a
//! swappable served certificate, the API listener's X509-SVID and
//! configuration, and certificate files read from disk.
//!
//! Users: `run.rs` (the API's TCP listener), the federation bundle
//! endpoint and poller (`federation/`), OIDC discovery (`oidc/`).
//!
//! - [`provider`] is the one crypto provider (ring) of all of them.
//! - [`ServerCertResolver`] serves whichever certificate is current; for
//!   the API listener that is the server's SVID
//!   (`spiffe://<td>/spire/server`), swapped in place by [`maintain`] at
//!   half its lifetime and whenever the bundle changes (CA rotation).
//! - Client certificates on the API listener are optional and judged by
//!   [`ClientTrust`] against the bundle
//!   as it is at the handshake, and again at every request
//!   (`api/client_trust.rs`).
//! - No session resumption: no session cache, no TLS 1.3 tickets, no TLS
//!   1.2 tickets. A resumed session restores the client's chain without
//!   any verifier seeing it, so a certificate whose CA has left the bundle
//!   would be taken at its word (DESIGN.md invariant 9). Agents keep their
//!   connections open, so the cost is a full handshake per reconnect.
//! - ALPN is `h2` only: the listener speaks gRPC.
//! - [`load_cert_files`] reads a configured PEM chain and key
//!   (`serving_cert_file` of the bundle endpoint's `https_web` profile and
//!   of OIDC discovery); [`reload_cert_files`] re-reads them every
//!   `file_sync_interval`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spinel_spiffe::Clock;

use crate::api::client_trust::ClientTrust;
use crate::ca::Ca;
use crate::config::ServingCertFile;

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

/// The TLS configuration of the TCP listener: client certificates judged
/// by `trust`, no session resumption.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<ServerCertResolver>,
    trust: Arc<ClientTrust>,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(trust)
        .with_cert_resolver(resolver);
    // No resumption: nothing stored for TLS 1.2 session IDs or stateful
    // TLS 1.3 tickets, no TLS 1.3 tickets sent. The builder's ticketer
    // already produces no (stateless) tickets; the unit test checks all three.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Keeps the server certificate current until the task is dropped: a new
/// one at half the current one's lifetime and whenever the bundle changes
/// (client trust follows the bundle by itself, see `client_trust.rs`).
pub async fn maintain(
    ca: Arc<Ca>,
    clock: Clock,
    dns_names: Vec<String>,
    mut not_after: SystemTime,
    resolver: Arc<ServerCertResolver>,
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
            let sequence = bundles.borrow_and_update().sequence;
            tracing::debug!(
                sequence,
                "trust bundle changed; renewing the server certificate"
            );
        }
        match issue_server_key(&ca, &dns_names, &provider) {
            Ok((key, expiry)) => {
                resolver.set(key);
                crate::metrics::metrics().svid_rotations.inc();
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

/// Default `file_sync_interval` of `serving_cert_file`.
pub const DEFAULT_FILE_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct CertFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Loads a PEM certificate chain and key as rustls wants them.
pub fn load_cert_files(
    files: &ServingCertFile,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, CertFileError> {
    let bad = |path: &Path, reason: String| CertFileError {
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file_path)
        .map_err(|e| bad(&files.cert_file_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&files.cert_file_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(&files.cert_file_path, "no certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file_path)
        .map_err(|e| bad(&files.key_file_path, format!("no usable private key: {e}")))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(&files.key_file_path, e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Re-reads `files` into `resolver` every `file_sync_interval` (at least
/// a second) until the task is dropped; a failed read keeps the current
/// certificate and logs a warning naming `what` (`"bundle endpoint"`).
pub async fn reload_cert_files(
    files: ServingCertFile,
    resolver: Arc<ServerCertResolver>,
    provider: Arc<CryptoProvider>,
    what: &'static str,
) {
    let every = files
        .file_sync_interval
        .unwrap_or(DEFAULT_FILE_SYNC_INTERVAL)
        .max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        match load_cert_files(&files, &provider) {
            Ok(key) => resolver.set(key),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the {what} certificate; keeping the current one")
            }
        }
    }
}

#[cfg(test)]
mod tests;
