//! Certificate signing requests: only the public key is taken, after the
//! signature is verified (invariant 1).

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use super::CaError;

/// Parses a PKCS#10 CSR, verifies its signature, and returns only its
/// public key (DER SubjectPublicKeyInfo). Names in the CSR are ignored.
pub fn verify_csr(csr_der: &[u8]) -> Result<Vec<u8>, CaError> {
    let (rest, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| CaError::InvalidCsr(format!("does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(CaError::InvalidCsr("trailing bytes after the CSR".into()));
    }
    csr.verify_signature()
        .map_err(|_| CaError::InvalidCsr("signature does not verify".into()))?;
    Ok(csr.certification_request_info.subject_pki.raw.to_vec())
}
