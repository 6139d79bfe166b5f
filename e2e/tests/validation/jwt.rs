//! The agent's `ValidateJWTSVID` against tokens whose signature is good
//! but whose content a JWT-SVID must not have. The tokens are signed with
//! a key this test owns, published as the JWT authority of a federated
//! trust domain (`bundle set`) that the caller's entry federates with, so
//! the agent holds the key and the signature verifies. Before the fix the
//! agent accepted `nbf` and `iat` hours ahead and unknown `crit` or `jku`
//! headers.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use spiffe::{TrustDomain, WorkloadApiClient};
use spinel_test_fixtures::process::{my_uid, write_file};

use crate::support::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

const FOREIGN_TD: &str = "foreign.test";
const KID: &str = "test-key";
const AUDIENCE: &str = "db";

struct Signer(EcdsaKeyPair);

impl Signer {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Signer(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap(),
        )
    }

    /// A SPIFFE bundle with this key as the only JWT authority.
    fn bundle_json(&self) -> String {
        let point = self.0.public_key().as_ref();
        json!({"keys": [{
            "use": "jwt-svid",
            "kid": KID,
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
        .to_string()
    }

    fn token(&self, header: &Value, claims: &Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!("{}.{}", enc(header), enc(claims));
        let sig = self.0.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn header() -> Value {
    json!({"alg": "ES256", "kid": KID, "typ": "JWT"})
}

fn claims() -> Value {
    let now = now();
    json!({
        "sub": format!("spiffe://{FOREIGN_TD}/service"),
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_refuses_future_times_and_forbidden_headers() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let signer = Signer::new();
    let bundle = server.dir.path().join("foreign.json");
    write_file(&bundle, &signer.bundle_json()).unwrap();
    let td_id = format!("spiffe://{FOREIGN_TD}");
    server
        .cli(&[
            "bundle",
            "set",
            "-id",
            &td_id,
            "-format",
            "spiffe",
            "-path",
            &bundle.display().to_string(),
        ])
        .unwrap()
        .ok()
        .unwrap();
    let alias = "spiffe://example.org/node";
    let token = server.generate_token(Some(alias)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    server
        .create_entry(&[
            "-parentID",
            alias,
            "-spiffeID",
            "spiffe://example.org/validator",
            "-selector",
            &format!("unix:uid:{}", my_uid()),
            "-federatesWith",
            &td_id,
        ])
        .unwrap();
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let foreign = TrustDomain::new(FOREIGN_TD).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(bundles) = client.fetch_jwt_bundles().await {
            if bundles.get(&foreign).is_some() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A good token validates: the key and the set-up are right.
    let good = signer.token(&header(), &claims());
    let validated = client.validate_jwt_token(AUDIENCE, &good).await.unwrap();
    assert_eq!(
        validated.spiffe_id().to_string(),
        format!("spiffe://{FOREIGN_TD}/service")
    );
    // Within the 60 s leeway for clock skew: still fine.
    let mut skewed = claims();
    skewed["iat"] = json!(now() + 30);
    skewed["nbf"] = json!(now() + 30);
    client
        .validate_jwt_token(AUDIENCE, &signer.token(&header(), &skewed))
        .await
        .unwrap();

    let mut refused: Vec<(&str, String)> = Vec::new();
    for (what, claim) in [("nbf an hour ahead", "nbf"), ("iat an hour ahead", "iat")] {
        let mut c = claims();
        c[claim] = json!(now() + 3600);
        refused.push((what, signer.token(&header(), &c)));
    }
    for (what, name, value) in [
        ("crit", "crit", json!(["exp"])),
        ("jku", "jku", json!("https://attacker.example/keys")),
        ("x5u", "x5u", json!("https://attacker.example/cert")),
    ] {
        let mut h = header();
        h[name] = value;
        refused.push((what, signer.token(&h, &claims())));
    }
    let mut long_sub = claims();
    long_sub["sub"] = json!(format!("spiffe://{FOREIGN_TD}/{}", "s".repeat(2048)));
    refused.push(("sub over 2048 bytes", signer.token(&header(), &long_sub)));

    for (what, token) in refused {
        match client.validate_jwt_token(AUDIENCE, &token).await {
            Ok(_) => panic!("{what}: the agent validated the token"),
            Err(e) => assert!(e.is_invalid_argument(), "{what}: {e}"),
        }
    }
}
