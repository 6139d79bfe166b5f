//! Property tests (proptest, default 256 cases each) for the parsers of
//! this crate: SPIFFE IDs, selectors, SPIFFE bundle JSON and JWT-SVID
//! validation. Each asserts an invariant (round trip, limits, what is never
//! accepted), not only that nothing panics. They run in the normal test
//! suite and take well under a second together.

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::bundle::{JwtAuthority, TrustBundle};
use crate::id::{self, IdError, TrustDomain, MAX_ID_LEN};
use crate::jwt::{self, JwtError};
use crate::selector::Selector;

// --- SPIFFE IDs ---

/// A valid trust domain name.
fn trust_domain() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

/// A valid path segment (not `.` or `..`).
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,30}".prop_filter("dot segments are not allowed", |s| s != "." && s != "..")
}

/// A valid SPIFFE ID within the length limit.
fn valid_id() -> impl Strategy<Value = String> {
    (trust_domain(), prop::collection::vec(segment(), 0..8)).prop_map(|(td, segments)| {
        let mut id = format!("spiffe://{td}");
        for s in segments {
            id.push('/');
            id.push_str(&s);
        }
        id
    })
}

/// A character that may appear in no trust domain and no path segment.
fn forbidden_char() -> impl Strategy<Value = char> {
    any::<char>().prop_filter("allowed in a path", |c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
    })
}

proptest! {
    #[test]
    fn id_parse_display_parse_round_trips(text in valid_id()) {
        let parsed = id::parse_id(&text).unwrap();
        let shown = parsed.to_string();
        prop_assert_eq!(&shown, &text);
        prop_assert_eq!(id::parse_id(&shown).unwrap(), parsed);
    }

    #[test]
    fn id_length_limit_is_2048_bytes(td in trust_domain(), extra in 0usize..64) {
        let base = format!("spiffe://{td}/");
        let at_limit = format!("{base}{}", "p".repeat(MAX_ID_LEN - base.len()));
        prop_assert!(id::parse_id(&at_limit).is_ok());
        let over = format!("{at_limit}{}", "q".repeat(extra + 1));
        let refused = matches!(id::parse_id(&over), Err(IdError::TooLong { max: MAX_ID_LEN, .. }));
        prop_assert!(refused);
    }

    #[test]
    fn id_never_accepts_a_forbidden_character(
        text in valid_id(),
        bad in forbidden_char(),
        at in any::<prop::sample::Index>(),
    ) {
        // Anywhere after `spiffe://`: in the trust domain or the path.
        let offsets: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .filter(|&i| i > "spiffe://".len())
            .collect();
        let offset = offsets[at.index(offsets.len())];
        let mut broken = text.clone();
        broken.insert(offset, bad);
        prop_assert!(id::parse_id(&broken).is_err(), "accepted {:?}", broken);
    }

    #[test]
    fn id_accepts_only_what_it_would_print(text in "spiffe://[a-zA-Z0-9./%:@?#_-]{0,40}") {
        if let Ok(parsed) = id::parse_id(&text) {
            prop_assert_eq!(parsed.to_string(), text);
        }
    }
}

// --- selectors ---

proptest! {
    #[test]
    fn selector_parse_display_parse_round_trips(
        kind in "[^:\\p{Cc}]{1,20}",
        value in "[^\\p{Cc}]{1,40}",
    ) {
        let selector = Selector::new(kind, value).unwrap();
        let shown = selector.to_string();
        prop_assert_eq!(Selector::parse(&shown).unwrap(), selector);
    }

    #[test]
    fn selector_never_accepts_control_characters(
        text in "[a-z]{1,8}:[a-z:]{1,16}",
        bad in "\\p{Cc}",
        at in any::<prop::sample::Index>(),
    ) {
        let offset = at.index(text.len() + 1);
        let mut broken = text.clone();
        broken.insert_str(offset, &bad);
        prop_assert!(Selector::parse(&broken).is_err(), "accepted {:?}", broken);
    }

    #[test]
    fn selector_accepts_only_what_it_would_print(text in "\\PC{0,30}") {
        if let Ok(selector) = Selector::parse(&text) {
            prop_assert!(!selector.kind.is_empty() && !selector.value.is_empty());
            prop_assert_eq!(selector.to_string(), text);
        }
    }
}

// --- SPIFFE bundle JSON ---

/// Two CA certificates, made once.
fn ca_certs() -> &'static [Vec<u8>] {
    static CERTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CERTS.get_or_init(|| {
        (0..2)
            .map(|i| {
                let key = rcgen::KeyPair::generate().unwrap();
                let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, format!("ca {i}"));
                params.self_signed(&key).unwrap().der().to_vec()
            })
            .collect()
    })
}

/// One key of a bundle document: an X.509 authority (by index into
/// [`ca_certs`]), a JWT authority (kid, EC P-256 coordinates) or a key the
/// reader must skip (unknown `use` or `kty`).
fn bundle_key() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0usize..2).prop_map(|i| json!({
            "use": "x509-svid",
            "kty": "EC",
            "x5c": [STANDARD.encode(&ca_certs()[i])],
        })),
        ("[a-zA-Z0-9]{1,32}", any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(kid, x, y)| json!({
            "use": "jwt-svid",
            "kid": kid,
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        })),
        "[a-z]{1,8}".prop_map(|u| json!({"use": format!("other-{u}"), "kty": "EC"})),
        "[A-Z]{1,3}".prop_map(|k| json!({"use": "jwt-svid", "kid": "k", "kty": format!("X{k}")})),
    ]
}

proptest! {
    #[test]
    fn bundle_parse_serialize_parse_round_trips(
        keys in prop::collection::vec(bundle_key(), 0..6),
        sequence in any::<u64>(),
        refresh_hint in 0i64..=i64::MAX,
    ) {
        let doc = json!({
            "keys": keys,
            "spiffe_sequence": sequence,
            "spiffe_refresh_hint": refresh_hint,
        });
        let td = TrustDomain::new("example.org").unwrap();
        let first = TrustBundle::from_json(td.clone(), doc.to_string().as_bytes()).unwrap();
        let known = keys
            .iter()
            .filter(|k| matches!(k["use"].as_str(), Some("x509-svid" | "jwt-svid")))
            .filter(|k| matches!(k["kty"].as_str(), Some("EC" | "RSA")))
            .count();
        prop_assert_eq!(first.x509_authorities.len() + first.jwt_authorities.len(), known);
        let second = TrustBundle::from_json(td, first.to_json().unwrap().as_bytes()).unwrap();
        prop_assert_eq!(second, first);
    }

    #[test]
    fn bundle_reader_never_panics_on_any_json(text in "\\PC{0,200}") {
        let td = TrustDomain::new("example.org").unwrap();
        if let Ok(bundle) = TrustBundle::from_json(td.clone(), text.as_bytes()) {
            let again = TrustBundle::from_json(td, bundle.to_json().unwrap().as_bytes());
            prop_assert_eq!(again.unwrap(), bundle);
        }
    }
}

// --- JWT-SVID validation ---

/// One P-256 key pair and its DER SubjectPublicKeyInfo, made once.
fn jwt_key() -> &'static (EcdsaKeyPair, Vec<u8>) {
    static KEY: OnceLock<(EcdsaKeyPair, Vec<u8>)> = OnceLock::new();
    KEY.get_or_init(|| {
        let rng = SystemRandom::new();
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        // SubjectPublicKeyInfo prefix of an uncompressed P-256 point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        (pair, spki)
    })
}

const NOW: i64 = 1_700_000_000;

/// A token signed with [`jwt_key`] for `sub`, `aud`, and its signature.
fn signed(sub: &str, aud: &str) -> (String, Vec<u8>) {
    let header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
    let claims = json!({"sub": sub, "aud": aud, "exp": NOW + 300, "iat": NOW});
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", enc(&header), enc(&claims));
    let sig = jwt_key()
        .0
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap();
    (input, sig.as_ref().to_vec())
}

fn validate(token: &str, aud: &str) -> Result<jwt::ValidatedJwt, JwtError> {
    let lookup = |td: &TrustDomain| {
        let mut bundle = TrustBundle::new(td.clone());
        bundle.jwt_authorities.push(JwtAuthority {
            key_id: "k1".into(),
            public_key: jwt_key().1.clone(),
            expires_at: 0,
        });
        Some(bundle)
    };
    jwt::validate(token, aud, &lookup, NOW)
}

proptest! {
    #[test]
    fn jwt_with_changed_signature_bytes_is_refused(
        sub in valid_id().prop_filter("a workload ID has a path", |s| s.matches('/').count() > 2),
        aud in "[a-z]{1,12}",
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (input, mut sig) = signed(&sub, &aud);
        let good = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        prop_assert!(validate(&good, &aud).is_ok());
        let i = at.index(sig.len());
        sig[i] ^= flip;
        let bad = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        prop_assert_eq!(validate(&bad, &aud).unwrap_err(), JwtError::Signature);
    }

    #[test]
    fn jwt_with_any_other_signature_is_refused(
        sig in prop::collection::vec(any::<u8>(), 0..80),
        aud in "[a-z]{1,12}",
    ) {
        let (input, _) = signed("spiffe://example.org/w", &aud);
        let bad = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        prop_assert!(validate(&bad, &aud).is_err());
    }
}
