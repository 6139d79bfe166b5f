//! The upstream CA's private key file, in every encoding SPIRE's
//! `UpstreamAuthority "disk"` reads: PKCS#8 (`PRIVATE KEY`), SEC1
//! (`EC PRIVATE KEY`, what `openssl ecparam -genkey` writes and what SPIRE's
//! own `conf/server/dummy_upstream_ca.key` is) and PKCS#1
//! (`RSA PRIVATE KEY`, `openssl genrsa`).
//!
//! The signing backend (rcgen over ring) takes PKCS#8 only, so SEC1 and
//! PKCS#1 keys are re-encoded as PKCS#8 here. What the backend cannot sign
//! with (P-521, RSA under 2048 bits, encrypted files) is refused with the
//! reason, never as a bare "unsupported".

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, PrivateKeyInfo};
use rsa::traits::PublicKeyParts;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

/// `rsaEncryption`.
const OID_RSA: &str = "1.2.840.113549.1.1.1";
/// `id-ecPublicKey`.
const OID_EC: &str = "1.2.840.10045.2.1";
/// `prime256v1` (P-256).
const OID_P256: &str = "1.2.840.10045.3.1.7";
/// `secp384r1` (P-384).
const OID_P384: &str = "1.3.132.0.34";
/// `secp521r1` (P-521).
const OID_P521: &str = "1.3.132.0.35";
/// `id-Ed25519`.
const OID_ED25519: &str = "1.3.101.112";
/// The DER of the `secp521r1` OID, to name it inside a SEC1 key.
const DER_P521: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
/// The smallest RSA modulus ring signs with.
const MIN_RSA_BITS: usize = 2048;

/// A private key read from PEM, re-encoded as PKCS#8.
#[derive(Debug)]
pub struct UpstreamKey {
    /// The key, PKCS#8 DER.
    pub der: PrivateKeyDer<'static>,
    /// What it is, for logs: e.g. `EC P-384 (SEC1 "EC PRIVATE KEY")`.
    pub kind: String,
}

/// Reads the one private key in `pem`. The error is the reason, without the
/// file name (the caller adds it) and without key material.
pub fn read_private_key(pem: &[u8]) -> Result<UpstreamKey, String> {
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| format!("not valid PEM: {e}"))?;
        let der = Zeroizing::new(der);
        if matches!(
            kind,
            SectionKind::PrivateKey | SectionKind::EcPrivateKey | SectionKind::RsaPrivateKey
        ) {
            keys.push((kind, der));
        }
    }
    let text = String::from_utf8_lossy(pem);
    if keys.is_empty() {
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || text.contains("Proc-Type: 4,ENCRYPTED")
        {
            return Err(
                "the private key is encrypted; SPIRE and Spinel read only unencrypted keys \
                 (decrypt it with `openssl pkey -in <file> -out <file>`)"
                    .into(),
            );
        }
        return Err(
            "no PEM private key found (expected one \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \
             \"RSA PRIVATE KEY\" block)"
                .into(),
        );
    }
    if keys.len() > 1 {
        return Err(format!(
            "holds {} private keys; exactly one is expected",
            keys.len()
        ));
    }
    let (kind, der) = keys.remove(0);
    match kind {
        SectionKind::EcPrivateKey => from_sec1(&der),
        SectionKind::RsaPrivateKey => from_pkcs1(&der),
        _ => from_pkcs8(&der),
    }
}

fn pkcs8(der: &[u8], kind: String) -> UpstreamKey {
    UpstreamKey {
        der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec())),
        kind,
    }
}

/// SEC1 `EC PRIVATE KEY`: P-256 or P-384.
fn from_sec1(der: &[u8]) -> Result<UpstreamKey, String> {
    let label = "SEC1 \"EC PRIVATE KEY\"";
    if let Ok(key) = p256::SecretKey::from_sec1_der(der) {
        let doc = key
            .to_pkcs8_der()
            .map_err(|e| format!("cannot re-encode the P-256 key as PKCS#8: {e}"))?;
        return Ok(pkcs8(doc.as_bytes(), format!("EC P-256 ({label})")));
    }
    if let Ok(key) = p384::SecretKey::from_sec1_der(der) {
        let doc = key
            .to_pkcs8_der()
            .map_err(|e| format!("cannot re-encode the P-384 key as PKCS#8: {e}"))?;
        return Ok(pkcs8(doc.as_bytes(), format!("EC P-384 ({label})")));
    }
    if der.windows(DER_P521.len()).any(|w| w == DER_P521) {
        return Err(p521_refused(label));
    }
    Err(format!(
        "{label}: not a valid P-256 or P-384 key (truncated, or another curve?)"
    ))
}

fn p521_refused(label: &str) -> String {
    format!(
        "{label}: an EC P-521 key; Spinel signs with P-256, P-384, RSA (2048 bits or more) \
         or Ed25519 keys (its signing library has no P-521)"
    )
}

/// PKCS#1 `RSA PRIVATE KEY`.
fn from_pkcs1(der: &[u8]) -> Result<UpstreamKey, String> {
    let label = "PKCS#1 \"RSA PRIVATE KEY\"";
    let key = rsa::RsaPrivateKey::from_pkcs1_der(der)
        .map_err(|e| format!("{label}: not a valid RSA key: {e}"))?;
    let bits = key.size() * 8;
    check_rsa_bits(label, bits)?;
    let doc = key
        .to_pkcs8_der()
        .map_err(|e| format!("cannot re-encode the RSA key as PKCS#8: {e}"))?;
    Ok(pkcs8(doc.as_bytes(), format!("RSA {bits} bits ({label})")))
}

fn check_rsa_bits(label: &str, bits: usize) -> Result<(), String> {
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "{label}: an RSA key of {bits} bits; at least {MIN_RSA_BITS} bits are required"
        ));
    }
    Ok(())
}

/// PKCS#8 `PRIVATE KEY`: the algorithm is checked so that a refusal names it.
fn from_pkcs8(der: &[u8]) -> Result<UpstreamKey, String> {
    let label = "PKCS#8 \"PRIVATE KEY\"";
    let info = PrivateKeyInfo::try_from(der)
        .map_err(|e| format!("{label}: not a valid PKCS#8 key: {e}"))?;
    let alg = info.algorithm.oid.to_string();
    let curve = info
        .algorithm
        .parameters_oid()
        .ok()
        .map(|oid| oid.to_string());
    let kind = match (alg.as_str(), curve.as_deref()) {
        (OID_EC, Some(OID_P256)) => "EC P-256".to_owned(),
        (OID_EC, Some(OID_P384)) => "EC P-384".to_owned(),
        (OID_EC, Some(OID_P521)) => return Err(p521_refused(label)),
        (OID_EC, other) => {
            return Err(format!(
                "{label}: an EC key on curve {}; P-256 and P-384 are supported",
                other.unwrap_or("(none given)")
            ))
        }
        (OID_RSA, _) => {
            let key = rsa::RsaPrivateKey::from_pkcs1_der(info.private_key)
                .map_err(|e| format!("{label}: not a valid RSA key: {e}"))?;
            let bits = key.size() * 8;
            check_rsa_bits(label, bits)?;
            format!("RSA {bits} bits")
        }
        (OID_ED25519, _) => "Ed25519".to_owned(),
        (other, _) => {
            return Err(format!(
                "{label}: a key of algorithm {other}; EC (P-256, P-384), RSA and Ed25519 keys are supported"
            ))
        }
    };
    Ok(pkcs8(der, format!("{kind} ({label})")))
}
