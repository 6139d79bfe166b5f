//! Checking that one certificate signed another, for every signature
//! algorithm SPIRE (Go's `crypto/x509`) verifies in an upstream chain:
//! RSA PKCS#1 v1.5 and RSA-PSS with SHA-256/384/512, ECDSA with
//! SHA-256/384/512 and Ed25519.
//!
//! x509-parser (over ring) covers all of them but ECDSA with SHA-512,
//! which ring lacks; that one is checked here with the RSA-free RustCrypto
//! curves (P-256, P-384), hashing with ring. SHA-1 and MD5 signatures are
//! refused as Go refuses them; an algorithm nobody here knows is named.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::x509::SubjectPublicKeyInfo;

/// `ecdsa-with-SHA512`.
const ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
/// `id-ecPublicKey`'s named curves.
const CURVE_P256: &str = "1.2.840.10045.3.1.7";
const CURVE_P384: &str = "1.3.132.0.34";

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureProblem {
    /// Signed with an algorithm Go refuses as insecure (SHA-1, MD5).
    Insecure(String),
    /// Signed with an algorithm (or key) this code cannot check.
    Unsupported(String),
    /// The signature does not verify with the issuer's key.
    Invalid(String),
}

impl std::fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureProblem::Insecure(alg) => write!(
                f,
                "it is signed with {alg}, which SPIRE and Spinel refuse as insecure"
            ),
            SignatureProblem::Unsupported(alg) => {
                write!(f, "it is signed with {alg}, which Spinel cannot verify")
            }
            SignatureProblem::Invalid(alg) => write!(
                f,
                "its {alg} signature does not verify with the issuer's public key"
            ),
        }
    }
}

/// The usual name of a signature algorithm OID (the OID itself when unknown).
pub fn algorithm_name(oid: &str) -> String {
    let name = match oid {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "Ed25519",
        other => return format!("algorithm {other}"),
    };
    name.to_owned()
}

fn insecure(oid: &str) -> bool {
    matches!(
        oid,
        "1.2.840.113549.1.1.4" | "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" | "1.2.840.10045.4.1"
    )
}

/// Checks that `cert` was signed by the key in `issuer`.
pub fn verify_signed_by(
    cert: &X509Certificate<'_>,
    issuer: &SubjectPublicKeyInfo<'_>,
) -> Result<(), SignatureProblem> {
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    let name = algorithm_name(&oid);
    if insecure(&oid) {
        return Err(SignatureProblem::Insecure(name));
    }
    if oid == ECDSA_SHA512 {
        return ecdsa_sha512(cert, issuer, name);
    }
    match cert.verify_signature(Some(issuer)) {
        Ok(()) => Ok(()),
        Err(X509Error::SignatureUnsupportedAlgorithm) => {
            let curve = issuer_curve(issuer);
            Err(SignatureProblem::Unsupported(match curve {
                Some(curve) => format!("{name} over an EC key on curve {curve}"),
                None => name,
            }))
        }
        Err(_) => Err(SignatureProblem::Invalid(name)),
    }
}

fn issuer_curve(issuer: &SubjectPublicKeyInfo<'_>) -> Option<String> {
    let params = issuer.algorithm.parameters.as_ref()?;
    let oid = params.as_oid().ok()?.to_id_string();
    Some(match oid.as_str() {
        CURVE_P256 => "P-256".to_owned(),
        CURVE_P384 => "P-384".to_owned(),
        "1.3.132.0.35" => "P-521".to_owned(),
        _ => oid,
    })
}

/// ECDSA with SHA-512 over a P-256 or P-384 key (the digest truncated to
/// the curve's size, as ECDSA prescribes).
fn ecdsa_sha512(
    cert: &X509Certificate<'_>,
    issuer: &SubjectPublicKeyInfo<'_>,
    name: String,
) -> Result<(), SignatureProblem> {
    let digest = ring::digest::digest(&ring::digest::SHA512, cert.tbs_certificate.as_ref());
    let point = issuer.subject_public_key.data.as_ref();
    let sig = cert.signature_value.data.as_ref();
    let invalid = || SignatureProblem::Invalid(name.clone());
    let ok = match issuer_curve(issuer).as_deref() {
        Some("P-256") => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| invalid())?;
            let sig = p256::ecdsa::Signature::from_der(sig).map_err(|_| invalid())?;
            key.verify_prehash(digest.as_ref(), &sig).is_ok()
        }
        Some("P-384") => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| invalid())?;
            let sig = p384::ecdsa::Signature::from_der(sig).map_err(|_| invalid())?;
            key.verify_prehash(digest.as_ref(), &sig).is_ok()
        }
        Some(curve) => {
            return Err(SignatureProblem::Unsupported(format!(
                "{name} over an EC key on curve {curve}"
            )))
        }
        None => return Err(invalid()),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid())
    }
}
