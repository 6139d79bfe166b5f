//! X.509 certificates: the CA certificate and X509-SVID leaves.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use spinel_spiffe::clock::to_unix_seconds;
use time::OffsetDateTime;

use super::authority::X509Authority;
use super::{CaConfig, CaError, X509Svid, X509SvidParams, BACKDATE};
use crate::keymanager::SigningKey;

fn signing(e: impl std::fmt::Display) -> CaError {
    CaError::Signing(e.to_string())
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and no leading zero byte
    SerialNumber::from(bytes.to_vec())
}

fn uri(s: &str) -> Result<SanType, CaError> {
    Ok(SanType::URI(s.try_into().map_err(signing)?))
}

/// Makes the self-signed CA certificate for `key`. Returns (DER, NotBefore, NotAfter).
pub fn make_ca_cert(
    config: &CaConfig,
    key: &SigningKey,
    now: SystemTime,
) -> Result<(Vec<u8>, SystemTime, SystemTime), CaError> {
    let not_before = now - BACKDATE;
    let mut not_after = now + config.ca_ttl;
    if let Some(upstream) = &config.upstream {
        // The Spinel CA never outlives the certificate that signs it.
        not_after = not_after.min(upstream.not_after());
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let subject = &config.ca_subject;
    let countries = if subject.country.is_empty() && subject.organization.is_empty() {
        vec!["US".to_owned()]
    } else {
        subject.country.clone()
    };
    let orgs = if subject.country.is_empty() && subject.organization.is_empty() {
        vec!["SPIFFE".to_owned()]
    } else {
        subject.organization.clone()
    };
    for c in countries {
        dn.push(DnType::CountryName, c);
    }
    for o in orgs {
        dn.push(DnType::OrganizationName, o);
    }
    if !subject.common_name.is_empty() {
        dn.push(DnType::CommonName, subject.common_name.clone());
    }
    params.distinguished_name = dn;
    params.subject_alt_names = vec![uri(&config.trust_domain.id_string())?];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial());
    params.not_before = OffsetDateTime::from(not_before);
    params.not_after = OffsetDateTime::from(not_after);
    let pair = key.rcgen_key_pair()?;
    let cert = match &config.upstream {
        None => params.self_signed(&pair).map_err(signing)?,
        Some(upstream) => {
            params.use_authority_key_identifier_extension = true;
            let upstream_pair = upstream.key_pair().map_err(CaError::Signing)?;
            let issuer =
                Issuer::from_ca_cert_der(&CertificateDer::from(upstream.cert_der()), upstream_pair)
                    .map_err(signing)?;
            params.signed_by(&pair, &issuer).map_err(signing)?
        }
    };
    Ok((
        cert.der().to_vec(),
        truncate(not_before),
        truncate(not_after),
    ))
}

/// Certificates carry whole seconds.
fn truncate(t: SystemTime) -> SystemTime {
    spinel_spiffe::clock::from_unix_seconds(to_unix_seconds(t))
}

/// An X.509 authority ready to sign: its key parsed once and its issuer
/// name and key identifier read once, rather than for every SVID. Made
/// from the active authority and dropped when it changes (`Ca::x509_signer`).
pub struct X509Signer {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate this signer was made from (which authority it is).
    cert_der: Vec<u8>,
    not_after: SystemTime,
    /// What follows the leaf in an SVID chain: nothing when self-signed,
    /// the Spinel CA and the upstream intermediates under an upstream.
    chain_tail: Vec<Vec<u8>>,
}

impl std::fmt::Debug for X509Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Signer")
            .field("not_after", &self.not_after)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl X509Signer {
    /// A signer for `ca`, which must hold its key.
    pub fn new(ca: &X509Authority) -> Result<Self, CaError> {
        let key = ca
            .key
            .as_ref()
            .ok_or_else(|| CaError::State("the active CA has no signing key".into()))?;
        let pair = key.rcgen_key_pair()?;
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca.cert_der.as_slice()), pair)
            .map_err(signing)?;
        // With an UpstreamAuthority the chain carries the Spinel CA and the
        // upstream intermediates, so that it verifies against the upstream roots.
        let mut chain_tail = Vec::new();
        if !ca.upstream_roots.is_empty() {
            chain_tail.push(ca.cert_der.clone());
            chain_tail.extend(ca.upstream_chain.iter().cloned());
        }
        Ok(X509Signer {
            issuer,
            cert_der: ca.cert_der.clone(),
            not_after: ca.not_after,
            chain_tail,
        })
    }

    /// Whether this signer was made from `ca` (same certificate, hence the
    /// same key).
    pub fn is_for(&self, ca: &X509Authority) -> bool {
        self.cert_der == ca.cert_der && ca.key.is_some()
    }

    /// Signs an X509-SVID leaf for `params`.
    pub fn sign(
        &self,
        params: &X509SvidParams,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<X509Svid, CaError> {
        if self.not_after <= now {
            return Err(CaError::State("the active CA has expired".into()));
        }
        let not_after = (now + ttl).min(self.not_after);
        let mut cert = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, "SPIRE");
        if let Some(first) = params.dns_names.first() {
            dn.push(DnType::CommonName, first.clone());
        }
        cert.distinguished_name = dn;
        let mut sans = vec![uri(&params.spiffe_id.to_string())?];
        for name in &params.dns_names {
            sans.push(SanType::DnsName(name.as_str().try_into().map_err(|e| {
                CaError::InvalidRequest(format!("DNS name {name:?}: {e}"))
            })?));
        }
        cert.subject_alt_names = sans;
        cert.is_ca = IsCa::ExplicitNoCa;
        cert.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        cert.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        cert.use_authority_key_identifier_extension = true;
        let serial = serial();
        let serial_decimal = decimal(serial.as_ref());
        cert.serial_number = Some(serial);
        cert.not_before = OffsetDateTime::from(now - BACKDATE);
        cert.not_after = OffsetDateTime::from(not_after);
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&params.public_key)
            .map_err(|e| CaError::InvalidCsr(format!("unusable public key: {e}")))?;
        let leaf = cert.signed_by(&public_key, &self.issuer).map_err(signing)?;
        let mut chain = Vec::with_capacity(1 + self.chain_tail.len());
        chain.push(leaf.der().to_vec());
        chain.extend(self.chain_tail.iter().cloned());
        Ok(X509Svid {
            chain,
            serial_number: serial_decimal,
            not_after: truncate(not_after),
        })
    }
}

/// Big-endian unsigned bytes as a decimal string.
fn decimal(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = vec![0];
    for &b in bytes {
        let mut carry = b as u32;
        for d in digits.iter_mut() {
            let v = (*d as u32) * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal_serials() {
        assert_eq!(super::decimal(&[0x01, 0x00]), "256");
        assert_eq!(super::decimal(&[0xff]), "255");
        assert_eq!(super::decimal(&[]), "0");
    }
}
