//! Identifiers of CA certificates, as the LocalAuthority API and the
//! journal name them: subject key IDs and the signer's key ID, in
//! lowercase hex.
//!
//! Users: the authorities (`authority.rs`), the manual operations
//! (`manual.rs`) and the disk UpstreamAuthority (`crate::upstream`).

use x509_parser::extensions::ParsedExtension;

use super::CaError;

/// The subject key ID of a certificate, lowercase hex; SHA-1 of the public
/// key (RFC 5280 method 1) when the certificate carries none.
pub fn subject_key_id(cert_der: &[u8]) -> Result<String, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| CaError::State(format!("unreadable CA certificate: {e}")))?;
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectKeyIdentifier(id) = ext.parsed_extension() {
            return Ok(hex(id.0));
        }
    }
    let spk = &cert.public_key().subject_public_key.data;
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, spk);
    Ok(hex(digest.as_ref()))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Subject key ID (hex) of the certificate that signed `cert`, from its
/// authority key identifier; empty if it carries none.
pub fn upstream_signer_id(cert: &x509_parser::certificate::X509Certificate<'_>) -> String {
    for ext in cert.extensions() {
        if let ParsedExtension::AuthorityKeyIdentifier(aki) = ext.parsed_extension() {
            if let Some(id) = &aki.key_identifier {
                return hex(id.0);
            }
        }
    }
    String::new()
}
