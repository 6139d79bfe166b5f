//! Certificate helpers of the manager: the validity of a DER certificate,
//! and a fresh key with its CSR (for the agent SVID and workload SVIDs).

use std::time::SystemTime;

use spinel_spiffe::clock::from_unix_seconds;
use zeroize::Zeroizing;

use super::error::ManagerError;

/// Validity of a DER certificate.
pub(crate) fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((
        from_unix_seconds(cert.validity().not_before.timestamp()),
        from_unix_seconds(cert.validity().not_after.timestamp()),
    ))
}

/// A fresh ec-p256 key (PKCS#8) and a CSR for it.
pub(crate) fn key_and_csr() -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), ManagerError> {
    let key = rcgen::KeyPair::generate().map_err(|e| ManagerError::Key(e.to_string()))?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .map_err(|e| ManagerError::Key(e.to_string()))?;
    Ok((Zeroizing::new(key.serialize_der()), csr.der().to_vec()))
}
