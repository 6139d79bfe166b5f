//! JWT-SVID validation. The fuzzer chooses the header and claims, the
//! token is signed with a test key in the bundle, and then the fuzzer may
//! edit the token's bytes (or replace it outright). Invariants:
//!
//! - never accepts a token whose signature is bad: an accepted token's
//!   signed part (`header.claims`) is byte for byte one this target
//!   signed, and its signature verifies under the test key;
//! - what is accepted meets every rule (allowed header, `sub` a SPIFFE ID
//!   of the bundle's trust domain, audience, `exp`, `nbf`, `iat`);
//! - a token that meets every rule and was not edited is accepted.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Map, Value};
use spinel_spiffe::bundle::{JwtAuthority, TrustBundle};
use spinel_spiffe::id::MAX_ID_LEN;
use spinel_spiffe::jwt::{self, LEEWAY_SECONDS};
use spinel_spiffe::TrustDomain;

const NOW: i64 = 1_800_000_000;
const AUDIENCE: &str = "spiffe://example.org/db";
const SIGNING_KID: &str = "k1";
const OTHER_KID: &str = "k2";

struct Keys {
    signer: EcdsaKeyPair,
    bundle: TrustBundle,
    rng: SystemRandom,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rng = SystemRandom::new();
        let load = |which| {
            EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &spinel_fuzz::test_key_pkcs8(which),
                &rng,
            )
            .expect("test key loads")
        };
        let (signer, other) = (load(1), load(2));
        let spki = |key: &EcdsaKeyPair| {
            // The SPKI prefix of an uncompressed P-256 point.
            let mut der = vec![
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
            ];
            der.extend_from_slice(key.public_key().as_ref());
            der
        };
        let mut bundle = TrustBundle::new(TrustDomain::new("example.org").expect("valid"));
        for (kid, key) in [(SIGNING_KID, &signer), (OTHER_KID, &other)] {
            bundle.jwt_authorities.push(JwtAuthority {
                key_id: kid.to_owned(),
                public_key: spki(key),
                expires_at: 0,
            });
        }
        Keys {
            signer,
            bundle,
            rng,
        }
    })
}

#[derive(Debug, Arbitrary)]
enum Alg {
    Es256,
    Es384,
    Rs256,
    Hs256,
    None,
    Missing,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Kid {
    Signing,
    Other,
    Empty,
    Missing,
    Any(String),
}

#[derive(Debug, Arbitrary)]
enum Sub {
    /// `spiffe://example.org/<path>`.
    InDomain(String),
    /// `spiffe://other.org/w`.
    Foreign,
    Missing,
    Any(String),
}

#[derive(Debug, Arbitrary)]
enum Aud {
    Expected,
    ExpectedAmong(Vec<String>),
    Any(Vec<String>),
    Missing,
    Number(i64),
}

#[derive(Debug, Arbitrary)]
enum Edit {
    Set(u16, u8),
    Insert(u16, u8),
    Remove(u16),
}

#[derive(Debug, Arbitrary)]
struct Input {
    alg: Alg,
    kid: Kid,
    typ: Option<String>,
    extra_header: Option<(String, String)>,
    sub: Sub,
    aud: Aud,
    /// `exp` relative to now; `None` leaves it out.
    exp: Option<i32>,
    nbf: Option<i32>,
    iat: Option<i32>,
    /// `nbf` as a fraction (`1.5` seconds after `nbf`).
    fractional_nbf: bool,
    edits: Vec<Edit>,
    /// Validate this text instead of a signed token.
    raw: Option<String>,
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn build(input: &Input) -> (String, bool) {
    let mut valid = true;
    let mut header = Map::new();
    let alg = match &input.alg {
        Alg::Es256 => Some("ES256".to_owned()),
        Alg::Es384 => Some("ES384".to_owned()),
        Alg::Rs256 => Some("RS256".to_owned()),
        Alg::Hs256 => Some("HS256".to_owned()),
        Alg::None => Some("none".to_owned()),
        Alg::Missing => None,
        Alg::Other(s) => Some(s.clone()),
    };
    if let Some(alg) = alg {
        header.insert("alg".into(), json!(alg));
    }
    let kid = match &input.kid {
        Kid::Signing => Some(SIGNING_KID.to_owned()),
        Kid::Other => Some(OTHER_KID.to_owned()),
        Kid::Empty => Some(String::new()),
        Kid::Missing => None,
        Kid::Any(s) => Some(s.clone()),
    };
    if let Some(kid) = kid {
        header.insert("kid".into(), json!(kid));
    }
    if let Some(typ) = &input.typ {
        header.insert("typ".into(), json!(typ));
    }
    if let Some((name, value)) = &input.extra_header {
        // May replace `alg`, `kid` or `typ`: validity is judged on the
        // header as it ends up, below.
        header.insert(name.clone(), json!(value));
    }
    valid &= header.get("alg") == Some(&json!("ES256"));
    valid &= header.get("kid") == Some(&json!(SIGNING_KID));
    valid &= header
        .get("typ")
        .is_none_or(|typ| typ == "JWT" || typ == "JOSE");
    valid &= header
        .keys()
        .all(|k| matches!(k.as_str(), "alg" | "kid" | "typ"));

    let mut claims = Map::new();
    match &input.sub {
        Sub::InDomain(path) => {
            let path: String = path
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .collect();
            let path = if path.is_empty() {
                "w".to_owned()
            } else {
                path
            };
            let sub = format!("spiffe://example.org/{path}");
            valid &= sub.len() <= MAX_ID_LEN;
            claims.insert("sub".into(), json!(sub));
        }
        Sub::Foreign => {
            valid = false;
            claims.insert("sub".into(), json!("spiffe://other.org/w"));
        }
        Sub::Missing => valid = false,
        Sub::Any(s) => {
            valid = false; // may be valid; not asserted either way
            claims.insert("sub".into(), json!(s));
        }
    }
    match &input.aud {
        Aud::Expected => {
            claims.insert("aud".into(), json!(AUDIENCE));
        }
        Aud::ExpectedAmong(others) => {
            let mut all = others.clone();
            all.push(AUDIENCE.to_owned());
            claims.insert("aud".into(), json!(all));
        }
        Aud::Any(list) => {
            valid &= list.iter().any(|a| a == AUDIENCE);
            claims.insert("aud".into(), json!(list));
        }
        Aud::Missing => valid = false,
        Aud::Number(n) => {
            valid = false;
            claims.insert("aud".into(), json!(n));
        }
    }
    match input.exp {
        Some(exp) => {
            valid &= exp > 0;
            claims.insert("exp".into(), json!(NOW + i64::from(exp)));
        }
        None => valid = false,
    }
    if let Some(nbf) = input.nbf {
        let at = NOW + i64::from(nbf);
        if input.fractional_nbf {
            valid &= at + 1 <= NOW + LEEWAY_SECONDS;
            claims.insert("nbf".into(), json!(at as f64 + 0.5));
        } else {
            valid &= at <= NOW + LEEWAY_SECONDS;
            claims.insert("nbf".into(), json!(at));
        }
    }
    if let Some(iat) = input.iat {
        valid &= i64::from(iat) <= LEEWAY_SECONDS;
        claims.insert("iat".into(), json!(NOW + i64::from(iat)));
    }

    let signing_input = format!(
        "{}.{}",
        b64(&Value::Object(header)),
        b64(&Value::Object(claims))
    );
    let keys = keys();
    let sig = keys
        .signer
        .sign(&keys.rng, signing_input.as_bytes())
        .expect("signing works");
    (
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
        valid,
    )
}

fn apply(token: &str, edits: &[Edit]) -> String {
    let mut bytes = token.as_bytes().to_vec();
    for edit in edits {
        let at = |i: u16, len: usize| usize::from(i) % len.max(1);
        match *edit {
            Edit::Set(i, b) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                bytes[i] = b;
            }
            Edit::Insert(i, b) => {
                let i = at(i, bytes.len() + 1);
                bytes.insert(i, b);
            }
            Edit::Remove(i) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                bytes.remove(i);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fuzz_target!(|input: Input| {
    let keys = keys();
    let bundles = |td: &TrustDomain| (td.as_str() == "example.org").then(|| keys.bundle.clone());
    let (signed, valid) = build(&input);
    let (token, edited) = match &input.raw {
        Some(raw) => (raw.clone(), true),
        None => {
            let token = apply(&signed, &input.edits);
            let edited = token != signed;
            (token, edited)
        }
    };
    let result = jwt::validate(&token, AUDIENCE, &bundles, NOW);

    if let Ok(ok) = &result {
        // The signed part is ours: editing it never gets through.
        let (signing_input, sig) = token.rsplit_once('.').expect("three parts");
        let (ours, _) = signed.rsplit_once('.').expect("three parts");
        assert_eq!(
            signing_input, ours,
            "accepted a token whose signed part was changed"
        );
        let sig = URL_SAFE_NO_PAD.decode(sig).expect("signature is base64url");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, keys.signer.public_key().as_ref())
            .verify(signing_input.as_bytes(), &sig)
            .expect("accepted a token whose signature does not verify");
        let (header, claims) = jwt::decode_unverified(&token).expect("decodes");
        assert_eq!(header.get("alg"), Some(&json!("ES256")));
        assert_eq!(header.get("kid"), Some(&json!(SIGNING_KID)));
        assert!(header
            .keys()
            .all(|k| matches!(k.as_str(), "alg" | "kid" | "typ")));
        assert_eq!(ok.spiffe_id.trust_domain().as_str(), "example.org");
        assert_eq!(claims.get("sub"), Some(&json!(ok.spiffe_id.to_string())));
        assert!(claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|e| e > NOW));
        let aud = claims.get("aud").expect("aud");
        assert!(aud == AUDIENCE || aud.as_array().is_some_and(|a| a.contains(&json!(AUDIENCE))));
        for name in ["nbf", "iat"] {
            if let Some(at) = claims.get(name) {
                let at = at.as_f64().expect("a number");
                assert!(at <= (NOW + LEEWAY_SECONDS) as f64, "{name} in the future");
            }
        }
    }
    if valid && !edited {
        assert!(result.is_ok(), "a valid token was refused: {result:?}");
    }
});
