//! Checking SVIDs as a TLS peer would.

use rustls_pki_types::{CertificateDer, UnixTime};

/// Verifies `chain` (DER, leaf first) against `roots` (DER) for TLS client
/// authentication at the current time, as an mTLS server checks a peer.
pub fn verify_chain(chain: &[Vec<u8>], roots: &[Vec<u8>]) -> Result<(), String> {
    let roots: Vec<CertificateDer<'static>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.clone()))
        .collect();
    let anchors: Vec<_> = roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let chain: Vec<CertificateDer<'static>> = chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let leaf_der = chain.first().ok_or("empty chain")?;
    let leaf = webpki::EndEntityCert::try_from(leaf_der).map_err(|e| e.to_string())?;
    leaf.verify_for_usage(
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .all,
        &anchors,
        &chain[1..],
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}
