//! The SPIFFE trust bundle and its JSON form.
//!
//! A bundle is a JSON Web Key Set with two SPIFFE members,
//! `spiffe_sequence` and `spiffe_refresh_hint`. X.509 authorities are keys
//! with `use: "x509-svid"` carrying exactly one CA certificate in `x5c`; JWT
//! authorities are keys with `use: "jwt-svid"` and a `kid`. Keys of an
//! unknown `use` or `kty` are skipped when reading, as the standard asks.
//!
//! JWT authorities are held as DER `SubjectPublicKeyInfo`, the form SPIRE's
//! API carries; [`spki_to_jwk`] and [`jwk_to_spki`] convert for EC P-256,
//! P-384, P-521 and RSA keys.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::id::TrustDomain;

/// A trust domain's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    /// Whose bundle this is.
    pub trust_domain: TrustDomain,
    /// CA certificates (DER) that X509-SVIDs of the trust domain chain to.
    pub x509_authorities: Vec<Vec<u8>>,
    /// Keys that JWT-SVIDs of the trust domain are signed with.
    pub jwt_authorities: Vec<JwtAuthority>,
    /// Increases on every change.
    pub sequence: u64,
    /// How often (seconds) consumers should poll for a new bundle; 0 if unset.
    pub refresh_hint: i64,
}

/// A JWT signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthority {
    /// The `kid` that JWT-SVIDs name in their header.
    pub key_id: String,
    /// DER-encoded SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// Unix seconds after which the key is no longer used; 0 if unknown.
    pub expires_at: i64,
}

/// Why a bundle or key could not be read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The document is not JSON of the bundle's shape.
    #[error("bundle is not valid JSON: {0}")]
    Json(String),
    /// A key of the bundle is malformed.
    #[error("bundle key {index}: {reason}")]
    Key {
        /// Position of the key in `keys`.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A public key has an algorithm or curve this codec does not handle.
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
}

impl TrustBundle {
    /// An empty bundle of `trust_domain`.
    pub fn new(trust_domain: TrustDomain) -> Self {
        TrustBundle {
            trust_domain,
            x509_authorities: Vec::new(),
            jwt_authorities: Vec::new(),
            sequence: 0,
            refresh_hint: 0,
        }
    }

    /// The bundle as SPIFFE bundle JSON.
    pub fn to_json(&self) -> Result<String, BundleError> {
        let mut keys = Vec::new();
        for der in &self.x509_authorities {
            let mut jwk = cert_jwk(der)?;
            jwk.insert("use".into(), json!("x509-svid"));
            jwk.insert("x5c".into(), json!([STANDARD.encode(der)]));
            keys.push(Value::Object(jwk));
        }
        keys.extend(self.jwks_keys()?);
        let mut doc = Map::new();
        doc.insert("keys".into(), Value::Array(keys));
        if self.refresh_hint > 0 {
            doc.insert("spiffe_refresh_hint".into(), json!(self.refresh_hint));
        }
        doc.insert("spiffe_sequence".into(), json!(self.sequence));
        serde_json::to_string_pretty(&Value::Object(doc))
            .map_err(|e| BundleError::Json(e.to_string()))
    }

    /// Only the JWT authorities, as a plain JWKS document: what the Workload
    /// API's `FetchJWTBundles` and OIDC discovery's `/keys` serve.
    pub fn to_jwks_json(&self) -> Result<String, BundleError> {
        let doc = json!({ "keys": self.jwks_keys()? });
        serde_json::to_string(&doc).map_err(|e| BundleError::Json(e.to_string()))
    }

    fn jwks_keys(&self) -> Result<Vec<Value>, BundleError> {
        self.jwt_authorities
            .iter()
            .map(|a| {
                let mut jwk = spki_to_jwk(&a.public_key)?;
                jwk.insert("use".into(), json!("jwt-svid"));
                jwk.insert("kid".into(), json!(a.key_id));
                Ok(Value::Object(jwk))
            })
            .collect()
    }

    /// Reads SPIFFE bundle JSON (or a plain JWKS) for `trust_domain`.
    pub fn from_json(trust_domain: TrustDomain, text: &[u8]) -> Result<Self, BundleError> {
        let doc: Value =
            serde_json::from_slice(text).map_err(|e| BundleError::Json(e.to_string()))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| BundleError::Json("missing \"keys\" array".into()))?;
        let mut bundle = TrustBundle::new(trust_domain);
        bundle.sequence = doc
            .get("spiffe_sequence")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        // A hint that is not a positive number of seconds is no hint (and
        // would not be written back).
        bundle.refresh_hint = doc
            .get("spiffe_refresh_hint")
            .and_then(Value::as_i64)
            .filter(|hint| *hint > 0)
            .unwrap_or(0);
        for (index, key) in keys.iter().enumerate() {
            let bad = |reason: &str| BundleError::Key {
                index,
                reason: reason.to_owned(),
            };
            let Some(key) = key.as_object() else {
                return Err(bad("not an object"));
            };
            if !matches!(key.get("kty").and_then(Value::as_str), Some("EC" | "RSA")) {
                continue;
            }
            match key.get("use").and_then(Value::as_str) {
                Some("x509-svid") => {
                    let x5c = key
                        .get("x5c")
                        .and_then(Value::as_array)
                        .ok_or_else(|| bad("x509-svid key without x5c"))?;
                    if x5c.len() != 1 {
                        return Err(bad(
                            "x509-svid key must hold exactly one certificate in x5c",
                        ));
                    }
                    let der = x5c[0]
                        .as_str()
                        .and_then(|s| STANDARD.decode(s).ok())
                        .ok_or_else(|| bad("x5c entry is not base64"))?;
                    x509_parser::parse_x509_certificate(&der)
                        .map_err(|e| bad(&format!("x5c certificate does not parse: {e}")))?;
                    bundle.x509_authorities.push(der);
                }
                Some("jwt-svid") => {
                    let kid = key
                        .get("kid")
                        .and_then(Value::as_str)
                        .filter(|k| !k.is_empty())
                        .ok_or_else(|| bad("jwt-svid key without kid"))?;
                    let public_key = jwk_to_spki(key).map_err(|e| bad(&e.to_string()))?;
                    bundle.jwt_authorities.push(JwtAuthority {
                        key_id: kid.to_owned(),
                        public_key,
                        expires_at: 0,
                    });
                }
                _ => continue,
            }
        }
        Ok(bundle)
    }

    /// The X.509 authorities as concatenated DER, as the Workload API sends them.
    pub fn x509_der_concat(&self) -> Vec<u8> {
        self.x509_authorities.concat()
    }

    /// The X.509 authorities as PEM.
    pub fn x509_pem(&self) -> String {
        self.x509_authorities
            .iter()
            .map(|der| pem_encode("CERTIFICATE", der))
            .collect()
    }
}

/// PEM-encodes `der` under `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn cert_jwk(der: &[u8]) -> Result<Map<String, Value>, BundleError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| BundleError::UnsupportedKey(format!("certificate does not parse: {e}")))?;
    spki_to_jwk(cert.public_key().raw)
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const CURVES: [(&str, &str, usize); 3] = [
    ("1.2.840.10045.3.1.7", "P-256", 32),
    ("1.3.132.0.34", "P-384", 48),
    ("1.3.132.0.35", "P-521", 66),
];

/// Converts a DER SubjectPublicKeyInfo to JWK members (`kty`, `crv`, `x`, `y` or `n`, `e`).
pub fn spki_to_jwk(spki_der: &[u8]) -> Result<Map<String, Value>, BundleError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| BundleError::UnsupportedKey(format!("public key does not parse: {e}")))?;
    let mut jwk = Map::new();
    match spki.parsed() {
        Ok(PublicKey::EC(point)) => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            let (_, crv, len) = CURVES
                .iter()
                .find(|(oid, _, _)| *oid == curve_oid)
                .ok_or_else(|| BundleError::UnsupportedKey(format!("EC curve {curve_oid}")))?;
            let data = point.data();
            if data.len() != 1 + 2 * len || data[0] != 4 {
                return Err(BundleError::UnsupportedKey(
                    "compressed or malformed EC point".into(),
                ));
            }
            jwk.insert("kty".into(), json!("EC"));
            jwk.insert("crv".into(), json!(crv));
            jwk.insert("x".into(), json!(URL_SAFE_NO_PAD.encode(&data[1..=*len])));
            jwk.insert("y".into(), json!(URL_SAFE_NO_PAD.encode(&data[1 + len..])));
        }
        Ok(PublicKey::RSA(rsa)) => {
            jwk.insert("kty".into(), json!("RSA"));
            jwk.insert(
                "n".into(),
                json!(URL_SAFE_NO_PAD.encode(strip_zeros(rsa.modulus))),
            );
            jwk.insert(
                "e".into(),
                json!(URL_SAFE_NO_PAD.encode(strip_zeros(rsa.exponent))),
            );
        }
        _ => {
            return Err(BundleError::UnsupportedKey(format!(
                "algorithm {}",
                spki.algorithm.algorithm.to_id_string()
            )))
        }
    }
    Ok(jwk)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[start..]
}

/// Converts JWK members back to a DER SubjectPublicKeyInfo.
pub fn jwk_to_spki(jwk: &Map<String, Value>) -> Result<Vec<u8>, BundleError> {
    let member = |name: &str| -> Result<Vec<u8>, BundleError> {
        jwk.get(name)
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
            .filter(|bytes| !bytes.is_empty())
            .ok_or_else(|| {
                BundleError::UnsupportedKey(format!(
                    "JWK member {name:?} missing, empty or not base64url"
                ))
            })
    };
    match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => {
            let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
            let (curve_oid, _, len) = CURVES
                .iter()
                .find(|(_, name, _)| *name == crv)
                .ok_or_else(|| BundleError::UnsupportedKey(format!("EC curve {crv:?}")))?;
            let (x, y) = (member("x")?, member("y")?);
            if x.len() != *len || y.len() != *len {
                return Err(BundleError::UnsupportedKey(
                    "EC coordinates of the wrong length".into(),
                ));
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let alg = der::sequence(&[der::oid(OID_EC), der::oid(curve_oid)]);
            Ok(der::sequence(&[alg, der::bit_string(&point)]))
        }
        Some("RSA") => {
            let (n, e) = (member("n")?, member("e")?);
            let key = der::sequence(&[der::uint(&n), der::uint(&e)]);
            let alg = der::sequence(&[der::oid(OID_RSA), vec![0x05, 0x00]]);
            Ok(der::sequence(&[alg, der::bit_string(&key)]))
        }
        other => Err(BundleError::UnsupportedKey(format!("JWK kty {other:?}"))),
    }
}

/// Just enough DER to build a SubjectPublicKeyInfo.
mod der {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(bytes.len() - 1);
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(body);
        out
    }

    pub(super) fn sequence(items: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &items.concat())
    }

    pub(super) fn bit_string(bytes: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8];
        body.extend_from_slice(bytes);
        tlv(0x03, &body)
    }

    pub(super) fn uint(bytes: &[u8]) -> Vec<u8> {
        let start = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len().saturating_sub(1));
        let mut body = Vec::with_capacity(bytes.len() + 1);
        if bytes.get(start).is_some_and(|&b| b & 0x80 != 0) {
            body.push(0);
        }
        body.extend_from_slice(&bytes[start..]);
        tlv(0x02, &body)
    }

    /// Encodes a dotted OID (all arcs after the first two fit in u64).
    pub(super) fn oid(dotted: &str) -> Vec<u8> {
        let arcs: Vec<u64> = dotted.split('.').filter_map(|a| a.parse().ok()).collect();
        let mut body = Vec::new();
        if arcs.len() >= 2 {
            push_base128(&mut body, arcs[0] * 40 + arcs[1]);
            for &arc in &arcs[2..] {
                push_base128(&mut body, arc);
            }
        }
        tlv(0x06, &body)
    }

    fn push_base128(out: &mut Vec<u8>, mut v: u64) {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        out.extend_from_slice(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn ca(alg: &'static rcgen::SignatureAlgorithm) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (
            cert.der().to_vec(),
            rcgen::PublicKeyData::subject_public_key_info(&key),
        )
    }

    #[test]
    fn round_trips_ec_and_rsa_keys() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ] {
            let (_, spki) = ca(alg);
            let jwk = spki_to_jwk(&spki).unwrap();
            assert_eq!(jwk_to_spki(&jwk).unwrap(), spki);
        }
        // A fixed 2048-bit RSA key pair is costly to generate; build an SPKI by hand.
        let mut jwk = Map::new();
        jwk.insert("kty".into(), json!("RSA"));
        jwk.insert("n".into(), json!(URL_SAFE_NO_PAD.encode([0xc1u8; 256])));
        jwk.insert("e".into(), json!("AQAB"));
        let spki = jwk_to_spki(&jwk).unwrap();
        let back = spki_to_jwk(&spki).unwrap();
        assert_eq!(back.get("n"), jwk.get("n"));
        assert_eq!(back.get("e"), jwk.get("e"));
    }

    #[test]
    fn bundle_json_round_trip() {
        let (cert, spki) = ca(&rcgen::PKCS_ECDSA_P256_SHA256);
        let bundle = TrustBundle {
            trust_domain: td(),
            x509_authorities: vec![cert],
            jwt_authorities: vec![JwtAuthority {
                key_id: "k1".into(),
                public_key: spki,
                expires_at: 0,
            }],
            sequence: 7,
            refresh_hint: 300,
        };
        let json = bundle.to_json().unwrap();
        let doc: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["spiffe_sequence"], 7);
        assert_eq!(doc["spiffe_refresh_hint"], 300);
        assert_eq!(doc["keys"][0]["use"], "x509-svid");
        assert!(doc["keys"][0].get("kid").is_none());
        assert_eq!(doc["keys"][1]["use"], "jwt-svid");
        assert_eq!(doc["keys"][1]["kid"], "k1");
        assert_eq!(
            TrustBundle::from_json(td(), json.as_bytes()).unwrap(),
            bundle
        );
    }

    #[test]
    fn skips_unknown_keys_and_refuses_bad_ones() {
        let doc = br#"{"keys":[{"kty":"OKP","use":"x509-svid"},{"kty":"EC","use":"enc"}]}"#;
        let b = TrustBundle::from_json(td(), doc).unwrap();
        assert!(b.x509_authorities.is_empty() && b.jwt_authorities.is_empty());
        let doc = br#"{"keys":[{"kty":"EC","use":"jwt-svid","crv":"P-256","x":"AA","y":"AA"}]}"#;
        let err = TrustBundle::from_json(td(), doc).unwrap_err();
        assert!(err.to_string().contains("without kid"), "{err}");
        let doc = br#"{"keys":[{"kty":"EC","use":"x509-svid","x5c":[]}]}"#;
        assert!(TrustBundle::from_json(td(), doc).is_err());
        assert!(TrustBundle::from_json(td(), b"{}").is_err());
    }

    /// Found by the `bundle_json` fuzz target: a negative hint was kept
    /// when read but never written, so the bundle did not round-trip.
    #[test]
    fn a_negative_refresh_hint_reads_as_unset() {
        let doc = br#"{"keys":[],"spiffe_refresh_hint":-5}"#;
        let bundle = TrustBundle::from_json(td(), doc).unwrap();
        assert_eq!(bundle.refresh_hint, 0);
        let json = bundle.to_json().unwrap();
        assert_eq!(
            TrustBundle::from_json(td(), json.as_bytes()).unwrap(),
            bundle
        );
    }

    /// Found by the `bundle_json` fuzz target: an RSA JWK with an empty
    /// `n` or `e` was read into a key that could not be written back, so
    /// the bundle holding it could no longer be served as JSON.
    #[test]
    fn an_rsa_jwk_with_an_empty_member_is_refused() {
        for (n, e) in [("", "AQAB"), ("wcHB", ""), ("", "")] {
            let doc = format!(
                r#"{{"keys":[{{"kty":"RSA","use":"jwt-svid","kid":"a","n":"{n}","e":"{e}"}}]}}"#
            );
            let err = TrustBundle::from_json(td(), doc.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("empty"), "{err}");
        }
    }

    #[test]
    fn pem_lines_are_64_columns() {
        let pem = pem_encode("CERTIFICATE", &[7u8; 100]);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
    }
}
