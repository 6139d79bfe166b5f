//! The certificates of a Workload API response: `X509SVID.x509_svid` and
//! the bundles are concatenated DER certificates.

use anyhow::Context as _;
use x509_parser::certificate::X509Certificate;

/// A certificate with its DER.
pub(crate) struct Cert<'a> {
    /// The DER encoding.
    pub der: &'a [u8],
    /// The parsed certificate.
    pub parsed: X509Certificate<'a>,
}

/// Splits concatenated DER certificates.
pub(crate) fn parse_certs(der: &[u8]) -> anyhow::Result<Vec<Cert<'_>>> {
    let mut out = Vec::new();
    let mut rest = der;
    while !rest.is_empty() {
        let (after, parsed) = x509_parser::parse_x509_certificate(rest)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("certificate does not parse")?;
        out.push(Cert {
            der: &rest[..rest.len() - after.len()],
            parsed,
        });
        rest = after;
    }
    Ok(out)
}
