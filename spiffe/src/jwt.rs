//! JWT-SVID validation.
//!
//! A JWT-SVID is a compact JWS whose header names an allowed asymmetric
//! `alg` (RS/ES/PS 256/384/512; never `none` or HMAC) and the `kid` of a key
//! in the bundle of the subject's trust domain. Its claims must hold a valid
//! SPIFFE ID in `sub`, an `aud` containing the expected audience, and an
//! `exp` in the future.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::{Map, Value};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::id::{parse_id, SpiffeId, TrustDomain};
use crate::TrustBundle;

/// A token that passed validation.
#[derive(Debug, Clone)]
pub struct ValidatedJwt {
    /// The `sub` claim.
    pub spiffe_id: SpiffeId,
    /// All claims.
    pub claims: Map<String, Value>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` is missing or not allowed.
    #[error("unsupported token algorithm {0:?}")]
    Algorithm(String),
    /// `typ` is present and neither `JWT` nor `JOSE`.
    #[error("unsupported token type {0:?}")]
    Type(String),
    /// The header has no `kid`.
    #[error("token header is missing the key ID")]
    MissingKeyId,
    /// A required claim is missing or of the wrong type.
    #[error("token is missing the {0:?} claim")]
    MissingClaim(&'static str),
    /// `sub` is not a SPIFFE ID.
    #[error("token has an invalid subject: {0}")]
    Subject(String),
    /// No bundle for the subject's trust domain.
    #[error("no keys found for trust domain {0:?}")]
    NoBundle(String),
    /// The bundle has no key with the token's `kid`.
    #[error("no JWT authority {kid:?} in the bundle of {trust_domain:?}")]
    UnknownKey {
        /// The token's key ID.
        kid: String,
        /// The subject's trust domain.
        trust_domain: String,
    },
    /// The signature does not verify.
    #[error("token signature does not verify")]
    Signature,
    /// `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// `aud` does not contain the expected audience.
    #[error("expected audience {expected:?} not in token audience {actual:?}")]
    Audience {
        /// The audience asked for.
        expected: String,
        /// The token's audience.
        actual: Vec<String>,
    },
}

fn part(token: &str, index: usize) -> Result<Map<String, Value>, JwtError> {
    let text = token
        .split('.')
        .nth(index)
        .ok_or_else(|| JwtError::Malformed("expected three dot-separated parts".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwtError::Malformed("part is not base64url".into()))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed("part is not a JSON object".into())),
    }
}

/// A JSON object: a JOSE header or a claims set.
pub type JsonObject = Map<String, Value>;

/// Header and claims, without checking anything (for display only).
pub fn decode_unverified(token: &str) -> Result<(JsonObject, JsonObject), JwtError> {
    if token.split('.').count() != 3 {
        return Err(JwtError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    }
    Ok((part(token, 0)?, part(token, 1)?))
}

fn algorithm(alg: &str) -> Result<&'static dyn VerificationAlgorithm, JwtError> {
    Ok(match alg {
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
        "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
        "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
        "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
        "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
        other => return Err(JwtError::Algorithm(other.to_owned())),
    })
}

/// Validates `token` for `audience` against the bundles `bundles` returns,
/// at `now_unix` seconds.
pub fn validate(
    token: &str,
    audience: &str,
    bundles: &dyn Fn(&TrustDomain) -> Option<TrustBundle>,
    now_unix: i64,
) -> Result<ValidatedJwt, JwtError> {
    let (header, claims) = decode_unverified(token)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let verifier = algorithm(alg)?;
    if let Some(typ) = header.get("typ") {
        match typ.as_str() {
            Some("JWT" | "JOSE") => {}
            _ => return Err(JwtError::Type(typ.to_string())),
        }
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or(JwtError::MissingKeyId)?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(JwtError::MissingClaim("sub"))?;
    let spiffe_id = parse_id(sub).map_err(|e| JwtError::Subject(e.to_string()))?;
    let td = spiffe_id.trust_domain();
    let bundle = bundles(td).ok_or_else(|| JwtError::NoBundle(td.to_string()))?;
    let authority = bundle
        .jwt_authorities
        .iter()
        .find(|a| a.key_id == kid)
        .ok_or_else(|| JwtError::UnknownKey {
            kid: kid.to_owned(),
            trust_domain: td.to_string(),
        })?;
    let (_, spki) =
        SubjectPublicKeyInfo::from_der(&authority.public_key).map_err(|_| JwtError::Signature)?;
    let (signing_input, sig) = token.rsplit_once('.').ok_or(JwtError::Signature)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| JwtError::Signature)?;
    UnparsedPublicKey::new(verifier, spki.subject_public_key.data.as_ref())
        .verify(signing_input.as_bytes(), &sig)
        .map_err(|_| JwtError::Signature)?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(JwtError::MissingClaim("exp"))?;
    if exp <= now_unix {
        return Err(JwtError::Expired);
    }
    let aud: Vec<String> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => return Err(JwtError::MissingClaim("aud")),
    };
    if !aud.iter().any(|a| a == audience) {
        return Err(JwtError::Audience {
            expected: audience.to_owned(),
            actual: aud,
        });
    }
    Ok(ValidatedJwt { spiffe_id, claims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::JwtAuthority;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair};
    use serde_json::json;

    struct Signer {
        pair: EcdsaKeyPair,
        spki: Vec<u8>,
    }

    fn signer() -> Signer {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let mut spki = hex_prefix();
        spki.extend_from_slice(pair.public_key().as_ref());
        Signer { pair, spki }
    }

    fn hex_prefix() -> Vec<u8> {
        // SubjectPublicKeyInfo prefix for an uncompressed P-256 point.
        vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ]
    }

    fn token(s: &Signer, header: Value, claims: Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!("{}.{}", enc(&header), enc(&claims));
        let sig = s.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn bundles(s: &Signer) -> impl Fn(&TrustDomain) -> Option<TrustBundle> + '_ {
        move |td: &TrustDomain| {
            (td.as_str() == "example.org").then(|| {
                let mut b = TrustBundle::new(td.clone());
                b.jwt_authorities.push(JwtAuthority {
                    key_id: "k1".into(),
                    public_key: s.spki.clone(),
                    expires_at: 0,
                });
                b
            })
        }
    }

    fn good_claims() -> Value {
        json!({"sub": "spiffe://example.org/w", "aud": ["vault", "db"], "exp": 2000, "iat": 1000})
    }

    #[test]
    fn accepts_a_good_token() {
        let s = signer();
        let t = token(
            &s,
            json!({"alg": "ES256", "kid": "k1", "typ": "JWT"}),
            good_claims(),
        );
        let v = validate(&t, "vault", &bundles(&s), 1500).unwrap();
        assert_eq!(v.spiffe_id.to_string(), "spiffe://example.org/w");
        assert_eq!(v.claims["iat"], 1000);
    }

    #[test]
    fn refuses_bad_tokens() {
        let s = signer();
        let header = json!({"alg": "ES256", "kid": "k1"});
        let b = bundles(&s);
        let t = token(&s, header.clone(), good_claims());
        assert_eq!(
            validate(&t, "vault", &b, 2000).unwrap_err(),
            JwtError::Expired
        );
        assert!(matches!(
            validate(&t, "other", &b, 1500),
            Err(JwtError::Audience { .. })
        ));
        let t = token(&s, json!({"alg": "ES256", "kid": "nope"}), good_claims());
        assert!(matches!(
            validate(&t, "vault", &b, 1500),
            Err(JwtError::UnknownKey { .. })
        ));
        let t = token(&s, json!({"alg": "none", "kid": "k1"}), good_claims());
        assert!(matches!(
            validate(&t, "vault", &b, 1500),
            Err(JwtError::Algorithm(_))
        ));
        let t = token(&s, json!({"alg": "HS256", "kid": "k1"}), good_claims());
        assert!(matches!(
            validate(&t, "vault", &b, 1500),
            Err(JwtError::Algorithm(_))
        ));
        let t = token(&s, json!({"alg": "ES256"}), good_claims());
        assert_eq!(
            validate(&t, "vault", &b, 1500).unwrap_err(),
            JwtError::MissingKeyId
        );
        let foreign = json!({"sub": "spiffe://other.org/w", "aud": "vault", "exp": 2000});
        let t = token(&s, header.clone(), foreign);
        assert!(matches!(
            validate(&t, "vault", &b, 1500),
            Err(JwtError::NoBundle(_))
        ));
        let no_aud = json!({"sub": "spiffe://example.org/w", "exp": 2000});
        let t = token(&s, header.clone(), no_aud);
        assert_eq!(
            validate(&t, "vault", &b, 1500).unwrap_err(),
            JwtError::MissingClaim("aud")
        );
        let no_exp = json!({"sub": "spiffe://example.org/w", "aud": "vault"});
        let t = token(&s, header.clone(), no_exp);
        assert_eq!(
            validate(&t, "vault", &b, 1500).unwrap_err(),
            JwtError::MissingClaim("exp")
        );
        // A signature from another key.
        let t = token(&signer(), header, good_claims());
        assert_eq!(
            validate(&t, "vault", &b, 1500).unwrap_err(),
            JwtError::Signature
        );
        assert!(matches!(
            validate("a.b", "vault", &b, 1500),
            Err(JwtError::Malformed(_))
        ));
    }
}
