//! JWT-SVID validation.
//!
//! A JWT-SVID is a compact JWS whose header names an allowed asymmetric
//! `alg` (RS/ES/PS 256/384/512; never `none` or HMAC) and the `kid` of a key
//! in the bundle of the subject's trust domain. Its claims must hold a valid
//! SPIFFE ID in `sub`, an `aud` containing the expected audience, and an
//! `exp` in the future.
//!
//! The header may hold only `alg`, `kid` and `typ` (SPEC-NOTES: "no other
//! header"): `crit` is refused, as go-jose (under SPIRE and go-spiffe)
//! refuses critical extensions it does not implement, and so are `jku`,
//! `jwk`, `x5u`, `x5c` and the rest, which would name keys from outside the
//! bundle. `nbf` and `iat`, when present, must be numbers no later than now
//! plus [`LEEWAY_SECONDS`] (go-jose's default leeway, which SPIRE's and
//! go-spiffe's validators use). `exp` gets no leeway: a token is expired
//! from its `exp` second on (stricter than go-jose, which accepts it for
//! another minute).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::{Map, Value};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::id::{parse_id, SpiffeId, TrustDomain};
use crate::TrustBundle;

/// Clock skew allowed for `nbf` and `iat` (seconds): go-jose's
/// `DefaultLeeway`, one minute.
pub const LEEWAY_SECONDS: i64 = 60;

/// The only header parameters a JWT-SVID may carry.
const ALLOWED_HEADERS: &[&str] = &["alg", "kid", "typ"];

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
    /// `nbf` is later than now plus the leeway.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` is later than now plus the leeway.
    #[error("token issued in the future")]
    IssuedInTheFuture,
    /// The header holds a parameter a JWT-SVID must not have (`crit`,
    /// `jku`, `jwk`, `x5c`, ...: anything but `alg`, `kid` and `typ`).
    #[error("token header parameter {0:?} is not allowed in a JWT-SVID")]
    Header(String),
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

/// The optional NumericDate claim `name`, in whole seconds (a fraction
/// rounds up, so a limit is never loosened); not a number is refused.
fn numeric_date(claims: &JsonObject, name: &'static str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => match (value.as_i64(), value.as_f64()) {
            (Some(seconds), _) => Ok(Some(seconds)),
            #[allow(clippy::cast_possible_truncation)]
            (None, Some(seconds)) if seconds.is_finite() => Ok(Some(seconds.ceil() as i64)),
            _ => Err(JwtError::MissingClaim(name)),
        },
    }
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
    if let Some(name) = header
        .keys()
        .find(|k| !ALLOWED_HEADERS.contains(&k.as_str()))
    {
        return Err(JwtError::Header(name.clone()));
    }
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
    let latest = now_unix.saturating_add(LEEWAY_SECONDS);
    if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf > latest) {
        return Err(JwtError::NotYetValid);
    }
    if numeric_date(&claims, "iat")?.is_some_and(|iat| iat > latest) {
        return Err(JwtError::IssuedInTheFuture);
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
mod tests;
