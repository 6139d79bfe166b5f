//! The configured CA bundle and the chain check against it.
//!
//! The path is built and checked by `rustls-webpki` (signatures, validity
//! at the request's time, `cA` and path length, name constraints), with
//! any extended key usage accepted, as SPIRE asks Go for
//! `ExtKeyUsageAny`. The answer is the verified chain above the leaf,
//! root included, for the `ca:fingerprint` selectors.

use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};

/// Signature algorithms accepted on certificates of the chain.
static ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// Why a CA bundle file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to load trust bundle {path:?}: {reason}")]
pub struct CaBundleError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// The trusted roots of `ca_bundle_path(s)`.
#[derive(Debug, Clone)]
pub struct CaBundle {
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

/// Accepts any extended key usage, or none (Go's `ExtKeyUsageAny`).
struct AnyUsage;

impl ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, _usages: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

impl CaBundle {
    /// A bundle of DER root certificates; each must be usable as a trust
    /// anchor.
    pub fn from_der(roots: Vec<Vec<u8>>) -> Result<Self, String> {
        let roots: Vec<CertificateDer<'static>> =
            roots.into_iter().map(CertificateDer::from).collect();
        let anchors = roots
            .iter()
            .enumerate()
            .map(|(i, der)| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|a| a.to_owned())
                    .map_err(|e| format!("certificate {i} is not usable as a root: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CaBundle { roots, anchors })
    }

    /// Reads the PEM files (every `CERTIFICATE` block of each, at least
    /// one per file).
    pub fn from_pem_files(paths: &[PathBuf]) -> Result<Self, CaBundleError> {
        let mut all = Vec::new();
        for path in paths {
            all.extend(read_pem_certificates(path)?);
        }
        Self::from_der(all).map_err(|reason| CaBundleError {
            path: paths.first().cloned().unwrap_or_default(),
            reason,
        })
    }

    /// How many roots the bundle holds.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether the bundle holds no root.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Verifies `leaf` with `intermediates` at `now`; returns the DER
    /// certificates of the verified chain above the leaf, root last.
    pub fn verify(
        &self,
        leaf: &[u8],
        intermediates: &[Vec<u8>],
        now: UnixTime,
    ) -> Result<Vec<Vec<u8>>, String> {
        let leaf = CertificateDer::from(leaf);
        let cert = EndEntityCert::try_from(&leaf).map_err(|e| e.to_string())?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let path = cert
            .verify_for_usage(
                ALGORITHMS,
                &self.anchors,
                &intermediates,
                now,
                AnyUsage,
                None,
                None,
            )
            .map_err(|e| e.to_string())?;
        let mut above: Vec<Vec<u8>> = path
            .intermediate_certificates()
            .map(|c| c.der().to_vec())
            .collect();
        // The anchor is one of ours: find its certificate.
        let anchor = path.anchor();
        let root = self
            .anchors
            .iter()
            .position(|a| std::ptr::eq(a, anchor))
            .and_then(|i| self.roots.get(i))
            .ok_or("the verified chain ends at an unknown root")?;
        above.push(root.to_vec());
        Ok(above)
    }
}

/// The DER certificates of a PEM file.
fn read_pem_certificates(path: &Path) -> Result<Vec<Vec<u8>>, CaBundleError> {
    let fail = |reason: String| CaBundleError {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut certs = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        let pem = pem.map_err(|e| fail(format!("not PEM: {e}")))?;
        if pem.label != "CERTIFICATE" {
            return Err(fail(format!(
                "holds a {:?} block: only CERTIFICATE blocks are allowed",
                pem.label
            )));
        }
        x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| fail(format!("certificate {} does not parse: {e}", certs.len())))?;
        certs.push(pem.contents);
    }
    if certs.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(certs)
}
