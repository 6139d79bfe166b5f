//! What the attestor takes from the certificates it is sent: key type
//! and size (checked before any signature work), the leaf's key usage,
//! the facts selectors and agent IDs are made of, and the check of the
//! challenge response against the leaf's key.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::traits::PublicKeyParts;
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::wire::{combined_digest, Challenge, Response};
use super::{MAX_RSA_BITS, MIN_RSA_BITS};

/// The public key of a leaf, ready to check signatures.
#[derive(Debug, Clone)]
pub enum LeafKey {
    /// RSA, [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] bits.
    Rsa(rsa::RsaPublicKey),
    /// ECDSA on P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA on P-384.
    P384(p384::ecdsa::VerifyingKey),
}

/// The leaf's facts.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Its key.
    pub key: LeafKey,
    /// Lowercase hex SHA-1 of its DER.
    pub fingerprint: String,
    /// The subject's common name (the last one, as Go reads it); empty if
    /// none.
    pub common_name: String,
    /// The serial number, lowercase hex of even length.
    pub serial_hex: String,
    /// `<key> -> <value>` of its `x509pop://<td>/<key>/<value>` URI SANs.
    pub san_selectors: std::collections::BTreeMap<String, String>,
}

/// Lowercase hex SHA-1 of `der` (SPIRE's fingerprint).
pub fn fingerprint(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Bits of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    match bytes.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => (bytes.len() - i) * 8 - bytes[i].leading_zeros() as usize,
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after the certificate".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Refuses an RSA key over [`MAX_RSA_BITS`] in a certificate, before any
/// signature over it is checked.
pub fn check_key_size(der: &[u8]) -> Result<(), String> {
    let cert = parse(der)?;
    if let Ok(PublicKey::RSA(rsa)) = cert.public_key().parsed() {
        let bits = bit_length(rsa.modulus);
        if bits > MAX_RSA_BITS {
            return Err(format!(
                "RSA key of {bits} bits is larger than the {MAX_RSA_BITS} bits allowed"
            ));
        }
    }
    Ok(())
}

/// Parses the leaf: its key must be RSA ([`MIN_RSA_BITS`] to
/// [`MAX_RSA_BITS`] bits) or ECDSA P-256/P-384, and its key usage must
/// include `digitalSignature`.
pub fn parse_leaf(der: &[u8], trust_domain: &str) -> Result<Leaf, String> {
    let cert = parse(der)?;
    let spki = cert.public_key();
    let key = match spki
        .parsed()
        .map_err(|e| format!("unreadable public key: {e}"))?
    {
        PublicKey::RSA(rsa) => {
            let bits = bit_length(rsa.modulus);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(format!(
                    "RSA key of {bits} bits: only {MIN_RSA_BITS} to {MAX_RSA_BITS} bits are supported"
                ));
            }
            let n = rsa::BigUint::from_bytes_be(rsa.modulus);
            let e = rsa::BigUint::from_bytes_be(rsa.exponent);
            LeafKey::Rsa(
                rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
                    .map_err(|e| format!("unusable RSA key: {e}"))?,
            )
        }
        PublicKey::EC(point) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve {
                Some(oid) if oid == OID_EC_P256 => LeafKey::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(point.data())
                        .map_err(|_| "unusable P-256 key".to_owned())?,
                ),
                Some(oid) if oid == OID_NIST_EC_P384 => LeafKey::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(point.data())
                        .map_err(|_| "unusable P-384 key".to_owned())?,
                ),
                _ => {
                    return Err(
                        "unsupported elliptic curve: only P-256 and P-384 are supported".into(),
                    )
                }
            }
        }
        _ => {
            return Err("unsupported public key type: only RSA and ECDSA keys are supported".into())
        }
    };
    let digital_signature = cert
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|ku| ku.value.digital_signature());
    if !digital_signature {
        return Err("certificate not intended for digital signature use".into());
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .last()
        .unwrap_or_default()
        .to_owned();
    let serial = cert.tbs_certificate.serial.to_str_radix(16);
    let serial_hex = if serial.len() % 2 == 1 {
        format!("0{serial}")
    } else {
        serial
    };
    Ok(Leaf {
        key,
        fingerprint: fingerprint(der),
        common_name,
        serial_hex,
        san_selectors: san_selectors(&cert, trust_domain),
    })
}

/// `x509pop://<td>/<key>/<value>` URI SANs as `key -> value` (the last
/// one of a key wins, as in SPIRE's map).
fn san_selectors(
    cert: &X509Certificate<'_>,
    trust_domain: &str,
) -> std::collections::BTreeMap<String, String> {
    let prefix = format!("x509pop://{trust_domain}/");
    let mut out = std::collections::BTreeMap::new();
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return out;
    };
    for name in &san.value.general_names {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(rest) = uri.strip_prefix(&prefix) else {
            continue;
        };
        // The URL path, decoded, without query or fragment.
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        let Ok(path) = percent_encoding::percent_decode_str(path).decode_utf8() else {
            continue;
        };
        if let Some((key, value)) = path.trim_matches('/').split_once('/') {
            out.insert(key.to_owned(), value.to_owned());
        }
    }
    out
}

/// A fresh challenge for `key`.
pub fn challenge_for(key: &LeafKey, nonce: [u8; 32]) -> Challenge {
    let nonce = super::wire::NonceChallenge {
        nonce: super::wire::Bytes(nonce.to_vec()),
    };
    match key {
        LeafKey::Rsa(_) => Challenge {
            rsa_signature: Some(nonce),
            ecdsa_signature: None,
        },
        LeafKey::P256(_) | LeafKey::P384(_) => Challenge {
            rsa_signature: None,
            ecdsa_signature: Some(nonce),
        },
    }
}

/// Checks `response` to the challenge with `nonce` against `key`.
pub fn verify_response(key: &LeafKey, nonce: &[u8], response: &Response) -> Result<(), String> {
    match key {
        LeafKey::Rsa(key) => {
            let answer = response
                .rsa_signature
                .as_ref()
                .ok_or("expecting RSA response")?;
            let digest = combined_digest(nonce, &answer.nonce.0).ok_or("invalid response nonce")?;
            // Go signs with the longest salt (PSSSaltLengthAuto), ring and
            // most others with a salt as long as the hash: accept both.
            let hash_len = 32;
            let em_len = (key.n().bits() - 1).div_ceil(8);
            let longest = em_len.saturating_sub(2 + hash_len);
            let ok = [hash_len, longest].into_iter().any(|salt| {
                key.verify(
                    rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
                    &digest,
                    &answer.signature.0,
                )
                .is_ok()
            });
            ok.then_some(())
                .ok_or_else(|| "RSA signature verify failed".into())
        }
        LeafKey::P256(key) => {
            let EcdsaParts { digest, r, s } = ecdsa_parts(response, nonce, 32)?;
            let sig = p256::ecdsa::Signature::from_scalars(
                *p256::FieldBytes::from_slice(&r),
                *p256::FieldBytes::from_slice(&s),
            )
            .map_err(|_| "ECDSA signature verify failed".to_owned())?;
            key.verify_prehash(&digest, &sig)
                .map_err(|_| "ECDSA signature verify failed".into())
        }
        LeafKey::P384(key) => {
            let EcdsaParts { digest, r, s } = ecdsa_parts(response, nonce, 48)?;
            let sig = p384::ecdsa::Signature::from_scalars(
                *p384::FieldBytes::from_slice(&r),
                *p384::FieldBytes::from_slice(&s),
            )
            .map_err(|_| "ECDSA signature verify failed".to_owned())?;
            key.verify_prehash(&digest, &sig)
                .map_err(|_| "ECDSA signature verify failed".into())
        }
    }
}

/// The signed digest and `r`, `s` left-padded to the curve's size.
struct EcdsaParts {
    digest: [u8; 32],
    r: Vec<u8>,
    s: Vec<u8>,
}

/// The [`EcdsaParts`] of `response`, `r` and `s` padded to `size` bytes.
fn ecdsa_parts(response: &Response, nonce: &[u8], size: usize) -> Result<EcdsaParts, String> {
    let answer = response
        .ecdsa_signature
        .as_ref()
        .ok_or("expecting ECDSA response")?;
    let digest = combined_digest(nonce, &answer.nonce.0).ok_or("invalid response nonce")?;
    let pad = |v: &[u8]| -> Result<Vec<u8>, String> {
        let v = &v[v.iter().position(|b| *b != 0).unwrap_or(v.len())..];
        if v.len() > size {
            return Err("ECDSA signature verify failed".into());
        }
        let mut out = vec![0u8; size - v.len()];
        out.extend_from_slice(v);
        Ok(out)
    };
    Ok(EcdsaParts {
        digest,
        r: pad(&answer.r.0)?,
        s: pad(&answer.s.0)?,
    })
}
