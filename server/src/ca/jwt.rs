//! JWT-SVID signing: a compact JWS with header `{alg, kid, typ}` and claims
//! `sub`, `aud`, `exp`, `iat` and, when configured, `iss`.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};
use spinel_spiffe::clock::to_unix_seconds;
use spinel_spiffe::SpiffeId;

use super::authority::JwtKey;
use super::{CaError, JwtSvid};

/// A new random key ID (32 alphanumerics, as SPIRE makes them).
pub fn new_key_id() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// Signs a JWT-SVID.
pub fn sign(
    key: &JwtKey,
    spiffe_id: &SpiffeId,
    audience: &[String],
    ttl: Duration,
    issuer: Option<&str>,
    now: SystemTime,
) -> Result<JwtSvid, CaError> {
    if audience.is_empty() || audience.iter().any(String::is_empty) {
        return Err(CaError::InvalidRequest(
            "audience is required and may not hold empty values".into(),
        ));
    }
    let signer = key
        .key
        .as_ref()
        .ok_or_else(|| CaError::State("the active JWT key has no private key".into()))?;
    if key.not_after <= now {
        return Err(CaError::State("the active JWT key has expired".into()));
    }
    let expires_at = (now + ttl).min(key.not_after);
    let header = json!({ "alg": signer.jws_alg(), "kid": key.kid, "typ": "JWT" });
    let aud = if audience.len() == 1 {
        Value::String(audience[0].clone())
    } else {
        json!(audience)
    };
    let mut claims = json!({
        "sub": spiffe_id.to_string(),
        "aud": aud,
        "exp": to_unix_seconds(expires_at),
        "iat": to_unix_seconds(now),
    });
    if let (Some(iss), Some(obj)) = (issuer, claims.as_object_mut()) {
        obj.insert("iss".into(), Value::String(iss.to_owned()));
    }
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", encode(&header), encode(&claims));
    let sig = signer.sign_jws(signing_input.as_bytes())?;
    Ok(JwtSvid {
        token: format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)),
        issued_at: now,
        expires_at,
    })
}
