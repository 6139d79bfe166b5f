//! UpstreamAuthority: an outside CA that signs the server's X.509 CA.
//!
//! With an upstream authority the server's CA is an intermediate: every
//! X509-SVID chain carries it (leaf, Spinel CA, upstream intermediates),
//! and the trust bundle holds the upstream roots instead of the Spinel CA,
//! so rotating the Spinel CA never changes the trust anchors.
//!
//! Supported: `UpstreamAuthority "disk"` ([`disk`]), a certificate and key
//! read from files (`cert_file_path`, `key_file_path`, optional
//! `bundle_file_path`). Errors name the file and what is wrong with it.

pub mod disk;
pub mod keys;
pub mod signature;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

pub use disk::{load_disk, DiskUpstreamConfig};

/// What went wrong loading an upstream authority.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// A file could not be read.
    #[error("UpstreamAuthority \"disk\": {what} {path}: cannot read: {reason}")]
    Read {
        /// Which setting names the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A certificate file holds no usable certificate.
    #[error("UpstreamAuthority \"disk\": {what} {path}: {reason}")]
    BadCertificate {
        /// Which setting names the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong (no PEM certificate, unparsable, ...).
        reason: String,
    },
    /// The upstream certificate may not sign certificates.
    #[error(
        "UpstreamAuthority \"disk\": cert_file_path {path}: the certificate is not a CA ({reason})"
    )]
    NotCa {
        /// The certificate file.
        path: PathBuf,
        /// Which constraint is missing.
        reason: String,
    },
    /// The key file holds no usable private key (never key material).
    #[error("UpstreamAuthority \"disk\": key_file_path {path}: {reason}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is not the certificate's key.
    #[error("UpstreamAuthority \"disk\": key_file_path {key} does not match the certificate in cert_file_path {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// A loaded upstream CA: its certificate, key, intermediates and roots.
#[derive(Clone)]
pub struct UpstreamCa {
    cert_der: Vec<u8>,
    key: Arc<rustls_pki_types::PrivateKeyDer<'static>>,
    chain: Vec<Vec<u8>>,
    roots: Vec<Vec<u8>>,
    authority_id: String,
    not_after: SystemTime,
}

impl std::fmt::Debug for UpstreamCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCa")
            .field("authority_id", &self.authority_id)
            .field("chain_len", &self.chain.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl UpstreamCa {
    /// The certificate that signs the Spinel CA, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificates from the signing one up to (not including) the
    /// root, DER; what an X509-SVID chain carries after the Spinel CA.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The upstream roots: the trust bundle's X.509 authorities.
    pub fn roots(&self) -> &[Vec<u8>] {
        &self.roots
    }

    /// Subject key ID (lowercase hex) of the signing certificate.
    pub fn authority_id(&self) -> &str {
        &self.authority_id
    }

    /// NotAfter of the signing certificate; the Spinel CA never outlives it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The signing key as an rcgen key pair.
    pub fn key_pair(&self) -> Result<rcgen::KeyPair, String> {
        rcgen::KeyPair::try_from(self.key.as_ref())
            .map_err(|e| format!("upstream key unusable: {e}"))
    }
}
