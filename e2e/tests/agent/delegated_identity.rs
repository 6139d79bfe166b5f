//! End to end: SPIRE's Delegated Identity API on the agent's admin socket,
//! called with the `spire-api` crate's client (rust-spiffe's, generated
//! from spire-api-sdk's protos, independent of Spinel's). The test process
//! is the delegate: an entry for its uid gives it the SPIFFE ID listed in
//! `authorized_delegates`; the workloads it asks about are other entries,
//! named by selectors or by the pid of a child process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use futures::StreamExt;
use spiffe::TrustDomain;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};
use spire_api::pb::spire::api::agent::delegatedidentity::v1::delegated_identity_client::DelegatedIdentityClient as RawClient;
use spire_api::pb::spire::api::agent::delegatedidentity::v1::{
    FetchJwtsviDsRequest, SubscribeToJwtBundlesRequest, SubscribeToX509sviDsRequest,
};
use spire_api::pb::spire::api::types::Selector as RawSelector;
use spire_api::selectors::Selector;
use spire_api::{DelegateAttestationRequest, DelegatedIdentityClient};

const AGENT_ALIAS: &str = "spiffe://example.org/node";
const DELEGATE: &str = "spiffe://example.org/delegate";
const WORKLOAD: &str = "spiffe://example.org/payments";
/// What the delegate says the workload is (a superset of its entry's
/// selectors, as a real attestation would give).
const WORKLOAD_SELECTORS: &[(&str, &str)] = &[
    ("unix", "uid:4242"),
    ("k8s", "ns:payments"),
    ("k8s", "sa:api"),
];

/// A child process that lives until dropped.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    server: ServerHandle,
    agent: AgentHandle,
    admin: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(authorized_delegates: &str) -> Setup {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let admin = dir.path().join("admin/admin.sock");
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            agent_extra: format!(
                "    admin_socket_path = \"{}\"\n    authorized_delegates = {authorized_delegates}",
                admin.display()
            ),
            ..Default::default()
        },
    )
    .unwrap();
    Setup {
        server,
        agent,
        admin,
        _dir: dir,
    }
}

impl Setup {
    fn entry(&self, spiffe_id: &str, selectors: &[String], extra: &[&str]) -> String {
        let mut args = vec!["-parentID", AGENT_ALIAS, "-spiffeID", spiffe_id];
        for s in selectors {
            args.extend(["-selector", s.as_str()]);
        }
        args.extend(extra);
        self.server.create_entry(&args).unwrap()
    }

    /// An entry for the test process's uid: its identity on the admin socket.
    fn register_self(&self, spiffe_id: &str) -> String {
        let uid = rustix::process::getuid().as_raw();
        self.entry(spiffe_id, &[format!("unix:uid:{uid}")], &[])
    }

    async fn client(&self) -> DelegatedIdentityClient {
        DelegatedIdentityClient::connect_to(format!("unix://{}", self.admin.display()))
            .await
            .unwrap()
    }

    async fn raw_client(&self) -> RawClient<tonic::transport::Channel> {
        let endpoint =
            spiffe::transport::Endpoint::parse(&format!("unix://{}", self.admin.display()))
                .unwrap();
        RawClient::new(
            spiffe::transport::connector::connect(&endpoint)
                .await
                .unwrap(),
        )
    }
}

fn workload_selectors() -> Vec<Selector> {
    WORKLOAD_SELECTORS
        .iter()
        .map(|(k, v)| Selector::Generic(((*k).into(), (*v).into())))
        .collect()
}

/// The formatted error of a call that must fail with `code`.
fn assert_code<T: std::fmt::Debug>(
    result: Result<T, spire_api::DelegatedIdentityError>,
    code: &str,
) -> String {
    let err = result.expect_err("the call should have been refused");
    let text = format!("{err:?}");
    assert!(text.contains(code), "expected {code}: {text}");
    text
}

/// Retries `call` (the agent needs a moment to sync new entries) until it
/// succeeds, for up to 30 s.
async fn eventually<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, spire_api::DelegatedIdentityError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegate_gets_other_workloads_svids_and_others_are_refused() {
    let setup = start(&format!("[\"{DELEGATE}\"]"));
    let client = setup.client().await;
    let by_selectors = || DelegateAttestationRequest::for_selectors(workload_selectors()).unwrap();

    // No identity at all: refused.
    let text = assert_code(client.fetch_x509_bundles().await, "PermissionDenied");
    assert!(text.contains("no identity issued"), "{text}");

    // An identity, but not a listed one: refused.
    let other = setup.register_self("spiffe://example.org/not-a-delegate");
    eventually("the denial of a non-delegate", || async {
        match client.fetch_x509_bundles().await {
            Err(e) if format!("{e:?}").contains("not configured as an authorized delegate") => {
                Ok(())
            }
            Err(e) => Err(e),
            Ok(_) => panic!("a caller that is no delegate got bundles"),
        }
    })
    .await;
    assert_code(
        client.fetch_x509_svid(by_selectors()).await,
        "PermissionDenied",
    );
    setup
        .server
        .cli(&["entry", "delete", "-entryID", &other])
        .unwrap();

    // The delegate, and the workloads it asks about: one ordinary entry,
    // one admin and one downstream entry with the same selectors (never
    // delegated).
    setup.register_self(DELEGATE);
    let workload_entry = ["unix:uid:4242".to_owned(), "k8s:ns:payments".to_owned()];
    setup.entry(WORKLOAD, &workload_entry, &["-hint", "payments"]);
    setup.entry(
        "spiffe://example.org/payments-admin",
        &workload_entry,
        &["-admin"],
    );
    setup.entry(
        "spiffe://example.org/payments-downstream",
        &workload_entry,
        &["-downstream"],
    );

    let svid = eventually("the workload's X509-SVID", || {
        client.fetch_x509_svid(by_selectors())
    })
    .await;
    assert_eq!(svid.spiffe_id().to_string(), WORKLOAD);
    assert_eq!(svid.hint(), Some("payments"));

    // The bundles verify the SVID; the key is the leaf's.
    let bundles = client.fetch_x509_bundles().await.unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let bundle = bundles.get(&td).expect("own trust domain bundle");
    assert!(!bundle.authorities().is_empty());
    let svid_pem = pem_chain(svid.cert_chain().iter().map(|c| c.as_ref()));
    let ca_pem = pem_chain(bundle.authorities().iter().map(|c| c.as_ref()));
    openssl_verify(&ca_pem, &svid_pem);
    check_key_matches(svid.private_key().as_ref(), svid.leaf().as_ref());

    // Every SVID of the response (raw client: the crate keeps the first):
    // only the ordinary entry's, never the admin or downstream one's.
    let mut raw = setup.raw_client().await;
    let raw_selectors: Vec<RawSelector> = WORKLOAD_SELECTORS
        .iter()
        .map(|(k, v)| RawSelector {
            r#type: (*k).into(),
            value: (*v).into(),
        })
        .collect();
    let mut stream = raw
        .subscribe_to_x509svi_ds(SubscribeToX509sviDsRequest {
            selectors: raw_selectors.clone(),
            pid: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let ids: Vec<String> = first
        .x509_svids
        .iter()
        .map(|s| {
            let id = s.x509_svid.as_ref().unwrap().id.as_ref().unwrap();
            format!("spiffe://{}{}", id.trust_domain, id.path)
        })
        .collect();
    assert_eq!(ids, [WORKLOAD]);

    // A new entry for the same workload is pushed on the open stream.
    setup.entry(
        "spiffe://example.org/payments-batch",
        &workload_entry[..1],
        &[],
    );
    let next = tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("no update pushed after a new entry")
        .unwrap()
        .unwrap();
    let mut ids: Vec<String> = next
        .x509_svids
        .iter()
        .map(|s| {
            let id = s.x509_svid.as_ref().unwrap().id.as_ref().unwrap();
            format!("spiffe://{}{}", id.trust_domain, id.path)
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [WORKLOAD, "spiffe://example.org/payments-batch"]);

    // The crate's stream: a workload with no entry yet gets an empty
    // response first, then its SVID once an entry appears.
    let late = DelegateAttestationRequest::for_selectors(vec![Selector::Generic((
        "unix".into(),
        "uid:5151".into(),
    ))])
    .unwrap();
    let mut svids = client.stream_x509_svids(late).await.unwrap();
    let empty = svids.next().await.unwrap();
    assert!(
        matches!(empty, Err(spire_api::DelegatedIdentityError::EmptyResponse)),
        "{empty:?}"
    );
    setup.entry(
        "spiffe://example.org/late",
        &["unix:uid:5151".to_owned()],
        &[],
    );
    let pushed = tokio::time::timeout(Duration::from_secs(30), svids.next())
        .await
        .expect("no update pushed")
        .unwrap()
        .unwrap();
    assert_eq!(pushed.spiffe_id().to_string(), "spiffe://example.org/late");

    // JWT-SVIDs for an audience, valid against the JWT bundles (checked
    // with `jsonwebtoken`, another independent implementation).
    let jwts = client
        .fetch_jwt_svids(&["vault"], by_selectors())
        .await
        .unwrap();
    let parsed = client.fetch_jwt_bundles().await.unwrap();
    assert!(parsed.get(&td).is_some());
    let jwks = raw
        .subscribe_to_jwt_bundles(SubscribeToJwtBundlesRequest {})
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap()
        .bundles
        .remove("spiffe://example.org")
        .expect("the JWT bundle keyed by trust domain ID");
    let mut subjects: Vec<String> = jwts
        .iter()
        .map(|j| verify_jwt(&jwks, j.token(), "vault").unwrap())
        .collect();
    subjects.sort();
    assert_eq!(subjects, [WORKLOAD, "spiffe://example.org/payments-batch"]);
    assert!(verify_jwt(&jwks, jwts[0].token(), "other").is_err());

    // By pid: the agent attests a child process (same uid as the test,
    // so it is the delegate's own workload here).
    let child = Sleeper(Command::new("sleep").arg("60").spawn().unwrap());
    let by_pid = client
        .fetch_x509_svid(DelegateAttestationRequest::for_pid(child.0.id()).unwrap())
        .await
        .unwrap();
    assert_eq!(by_pid.spiffe_id().to_string(), DELEGATE);
    let jwt_by_pid = client
        .fetch_jwt_svids(
            &["vault"],
            DelegateAttestationRequest::for_pid(child.0.id()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(jwt_by_pid[0].spiffe_id().to_string(), DELEGATE);

    // Malformed requests: both or neither of selectors and pid, a
    // selector that is no `type:value`.
    let both = raw
        .subscribe_to_x509svi_ds(SubscribeToX509sviDsRequest {
            selectors: raw_selectors.clone(),
            pid: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(both.code(), tonic::Code::InvalidArgument, "{both:?}");
    let bad = raw
        .subscribe_to_x509svi_ds(SubscribeToX509sviDsRequest {
            selectors: vec![RawSelector {
                r#type: "unix".into(),
                value: String::new(),
            }],
            pid: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("unix:"), "{bad:?}");
    let no_audience = raw
        .fetch_jwtsvi_ds(FetchJwtsviDsRequest {
            audience: vec![],
            selectors: raw_selectors.clone(),
            pid: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        no_audience.code(),
        tonic::Code::InvalidArgument,
        "{no_audience:?}"
    );

    // Unauthorized on the open stream: the delegate's entry goes, the
    // stream ends with PermissionDenied at the next update.
    let mut bundle_stream = client.stream_jwt_bundles().await.unwrap();
    bundle_stream.next().await.unwrap().unwrap();
    let delegate_entry = list_entry_id(&setup, DELEGATE);
    setup
        .server
        .cli(&["entry", "delete", "-entryID", &delegate_entry])
        .unwrap()
        .ok()
        .unwrap();
    let mut svid_stream_gone = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
            Ok(Err(status)) => {
                assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
                svid_stream_gone = true;
                break;
            }
            Ok(Ok(Some(_))) => continue,
            other => panic!("the stream neither updated nor ended: {other:?}"),
        }
    }
    assert!(svid_stream_gone, "{}", setup.agent.log());
    assert_code(
        client.fetch_x509_svid(by_selectors()).await,
        "PermissionDenied",
    );
}

/// A rotated X509-SVID is pushed on the open stream: a 10 s SVID is
/// renewed at about half its life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_pushed_on_the_open_stream() {
    let setup = start(&format!("[\"{DELEGATE}\"]"));
    setup.register_self(DELEGATE);
    setup.entry(
        WORKLOAD,
        &["unix:uid:4242".to_owned()],
        &["-x509SVIDTTL", "10"],
    );
    let client = setup.client().await;
    let request = || DelegateAttestationRequest::for_selectors(workload_selectors()).unwrap();
    // Once the delegate and the workload are both served, subscribe.
    eventually("the workload's X509-SVID", || {
        client.fetch_x509_svid(request())
    })
    .await;
    let mut svids = client.stream_x509_svids(request()).await.unwrap();
    let first = svids.next().await.unwrap().unwrap();
    let rotated = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let next = svids.next().await.unwrap().unwrap();
            if next.leaf() != first.leaf() {
                return next;
            }
        }
    })
    .await
    .expect("no rotated SVID pushed within 20 s");
    assert_eq!(rotated.spiffe_id().to_string(), WORKLOAD);
    let not_after = |der: &[u8]| {
        x509_parser::parse_x509_certificate(der)
            .unwrap()
            .1
            .validity()
            .not_after
            .timestamp()
    };
    assert!(not_after(rotated.leaf().as_ref()) > not_after(first.leaf().as_ref()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_authorized_delegates_nobody_may_call() {
    let setup = start("[]");
    setup.register_self(DELEGATE);
    let client = setup.client().await;
    // Once the agent serves the entry (the Workload API gives the test
    // process its SVID), the refusal is the empty list's, not a missing
    // identity's.
    let workload = spiffe::WorkloadApiClient::connect_to(setup.agent.endpoint())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while workload.fetch_x509_svid().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            setup.agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = assert_code(client.fetch_x509_bundles().await, "PermissionDenied");
    assert!(
        text.contains("not configured as an authorized delegate"),
        "{text}"
    );
    assert_code(
        client
            .fetch_jwt_svids(
                &["vault"],
                DelegateAttestationRequest::for_selectors(workload_selectors()).unwrap(),
            )
            .await,
        "PermissionDenied",
    );
    assert!(setup.agent.log().contains("authorized_delegates is empty"));
}

/// The `sub` of `token` when it verifies with a key of the JWKS `jwks`
/// for `audience`.
fn verify_jwt(jwks: &[u8], token: &str, audience: &str) -> Result<String, String> {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
    let set: JwkSet = serde_json::from_slice(jwks).map_err(|e| e.to_string())?;
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("unknown kid")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    let data = decode::<serde_json::Value>(token, &key, &validation).map_err(|e| e.to_string())?;
    Ok(data.claims["sub"].as_str().unwrap_or_default().to_owned())
}

fn list_entry_id(setup: &Setup, spiffe_id: &str) -> String {
    let out = setup
        .server
        .cli(&["entry", "show", "-spiffeID", spiffe_id, "-output", "json"])
        .unwrap()
        .ok()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["entries"][0]["id"].as_str().unwrap().to_owned()
}

fn pem_chain<'a>(ders: impl Iterator<Item = &'a [u8]>) -> String {
    use base64::Engine;
    let mut out = String::new();
    for der in ders {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// `openssl verify` (an independent X.509 path validator) accepts the
/// leaf against the bundle.
fn openssl_verify(ca_pem: &str, chain_pem: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&leaf, chain_pem).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The PKCS#8 key is the one the leaf certifies: a signature made with it
/// verifies with the leaf's public key.
fn check_key_matches(pkcs8: &[u8], leaf_der: &[u8]) {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der).unwrap();
    assert_eq!(
        key.public_key().as_ref(),
        cert.public_key().subject_public_key.data.as_ref()
    );
}
