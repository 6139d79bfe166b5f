//! OIDC discovery end to end: a real server with `jwt_issuer` and
//! `oidc_discovery`, a real agent, and a JWT-SVID verified by an
//! independent library (`jsonwebtoken`) given only the issuer URL: the
//! test fetches `/.well-known/openid-configuration`, follows `jwks_uri`,
//! picks the key by `kid` and checks signature, issuer and audience.
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::free_port;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

/// A plain HTTP/1.0 GET of `url` (`http://host:port/path`): status and body.
fn http_get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: String,
    iss: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_svid_verifies_from_the_issuer_url_alone() {
    let port = free_port().unwrap();
    let issuer = format!("http://127.0.0.1:{port}");
    let server = ServerHandle::start(ServerOptions {
        server_extra: format!(
            r#"    jwt_issuer = "{issuer}"
    oidc_discovery {{
        address = "127.0.0.1"
        port = {port}
        domains = ["127.0.0.1", "localhost"]
        insecure_http = true
    }}"#
        ),
        ..Default::default()
    })
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
    let id = "spiffe://example.org/oidc-workload";
    server
        .create_entry(&[
            "-parentID",
            alias,
            "-spiffeID",
            id,
            "-selector",
            &format!("unix:uid:{}", my_uid()),
        ])
        .unwrap();
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let svid = loop {
        if let Ok(svid) = client.fetch_jwt_svid(["vault"], None).await {
            break svid;
        }
        assert!(Instant::now() < deadline, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Discovery, from the issuer URL only.
    let (status, body) = http_get(&format!("{issuer}/.well-known/openid-configuration"));
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["issuer"], issuer.as_str());
    assert_eq!(doc["authorization_endpoint"], "");
    assert_eq!(
        doc["response_types_supported"],
        serde_json::json!(["id_token"])
    );
    assert_eq!(
        doc["subject_types_supported"],
        serde_json::json!(["public"])
    );
    let algs = doc["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.iter().any(|a| a == "ES256") && algs.iter().any(|a| a == "RS256"));
    let jwks_uri = doc["jwks_uri"].as_str().unwrap();
    let (status, body) = http_get(jwks_uri);
    assert_eq!(status, 200, "{body}");
    let raw: serde_json::Value = serde_json::from_str(&body).unwrap();
    for key in raw["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "sig", "{key}");
        assert!(key["kid"].is_string() && key["alg"].is_string(), "{key}");
    }
    let jwks: JwkSet = serde_json::from_str(&body).unwrap();

    // Verify with the key named by the token's kid.
    let header = decode_header(svid.token()).unwrap();
    let kid = header.kid.clone().expect("kid");
    let jwk = jwks.find(&kid).expect("the token's kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer.as_str()]);
    validation.set_audience(&["vault"]);
    let data = decode::<Claims>(svid.token(), &key, &validation).unwrap();
    assert_eq!(data.claims.sub, id);
    assert_eq!(data.claims.iss, issuer);
    // A wrong audience is refused by the same library.
    let mut wrong = Validation::new(header.alg);
    wrong.set_audience(&["someone-else"]);
    assert!(decode::<Claims>(svid.token(), &key, &wrong).is_err());

    // Unknown paths and hosts outside `domains` are 404.
    assert_eq!(http_get(&format!("{issuer}/nothing")).0, 404);

    // Rotate the JWT key by hand: prepare publishes the next key in the
    // JWKS, activate makes the server sign with it. A verifier that only
    // knows the issuer URL keeps working across it: the new token's kid is
    // found by discovery again, and the old token still verifies.
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["localauthority", "jwt"];
        all.extend_from_slice(args);
        all.extend(["-output", "json"]);
        serde_json::from_str(&server.cli(&all).unwrap().ok().unwrap().stdout).unwrap()
    };
    let prepared = json(&["prepare"]);
    let next_kid = prepared["prepared_authority"]["authority_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(next_kid, kid);
    let activated = json(&["activate", "-authorityID", &next_kid]);
    assert_eq!(
        activated["activated_authority"]["authority_id"],
        next_kid.as_str()
    );
    // A new audience: the agent has no cached token for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rotated = loop {
        let svid = client
            .fetch_jwt_svid(["vault-after-rotation"], None)
            .await
            .unwrap();
        if decode_header(svid.token()).unwrap().kid.as_deref() == Some(next_kid.as_str()) {
            break svid;
        }
        assert!(
            Instant::now() < deadline,
            "no JWT-SVID signed with {next_kid}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let doc: serde_json::Value =
        serde_json::from_str(&http_get(&format!("{issuer}/.well-known/openid-configuration")).1)
            .unwrap();
    let jwks: JwkSet =
        serde_json::from_str(&http_get(doc["jwks_uri"].as_str().unwrap()).1).unwrap();
    let verify = |token: &str, audience: &str| {
        let header = decode_header(token).unwrap();
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .unwrap_or_else(|| panic!("kid {:?} not in the JWKS", header.kid));
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[audience]);
        decode::<Claims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims
    };
    assert_eq!(verify(rotated.token(), "vault-after-rotation").sub, id);
    assert_eq!(
        verify(svid.token(), "vault").sub,
        id,
        "the pre-rotation token"
    );
    drop(agent);
}
