//! Unit tests of JWT-SVID validation (`jwt.rs`).

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
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
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

fn claims_with(extra: Value) -> Value {
    let mut claims = good_claims();
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

#[test]
fn refuses_nbf_and_iat_in_the_future_beyond_the_leeway() {
    let s = signer();
    let b = bundles(&s);
    let header = json!({"alg": "ES256", "kid": "k1"});
    let now = 1500;
    // Within the 60 s leeway: accepted.
    for claim in ["nbf", "iat"] {
        let t = token(&s, header.clone(), claims_with(json!({ claim: now + 60 })));
        assert!(validate(&t, "vault", &b, now).is_ok(), "{claim}");
    }
    let t = token(&s, header.clone(), claims_with(json!({"nbf": now + 61})));
    assert_eq!(
        validate(&t, "vault", &b, now).unwrap_err(),
        JwtError::NotYetValid
    );
    let t = token(&s, header.clone(), claims_with(json!({"iat": now + 61})));
    assert_eq!(
        validate(&t, "vault", &b, now).unwrap_err(),
        JwtError::IssuedInTheFuture
    );
    let t = token(&s, header, claims_with(json!({"nbf": "soon"})));
    assert_eq!(
        validate(&t, "vault", &b, now).unwrap_err(),
        JwtError::MissingClaim("nbf")
    );
}

#[test]
fn refuses_crit_and_headers_outside_alg_kid_typ() {
    let s = signer();
    let b = bundles(&s);
    for (name, value) in [
        ("crit", json!(["exp"])),
        ("crit", json!([])),
        ("jku", json!("https://evil.example/keys")),
        ("jwk", json!({"kty": "EC"})),
        ("x5c", json!(["AAAA"])),
        ("cty", json!("JWT")),
        ("b64", json!(false)),
    ] {
        let mut header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        header[name] = value;
        let t = token(&s, header, good_claims());
        assert_eq!(
            validate(&t, "vault", &b, 1500).unwrap_err(),
            JwtError::Header(name.to_owned()),
            "{name}"
        );
    }
}
