//! End to end: a real `spinel-server` and real `spinel-agent` processes,
//! configured and driven through their CLIs as an operator would, checked
//! with an independent SPIFFE client (the `spiffe` crate from crates.io).
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use spiffe::{SpiffeId, WorkloadApiClient};
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::spinel::entry_id_of;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{parse_x509_certificate, X509Certificate};

const AGENT_ALIAS: &str = "spiffe://example.org/myagent";

/// A server, one agent attested with a join token whose alias is
/// `spiffe://example.org/myagent`.
fn trust_domain() -> (ServerHandle, AgentHandle) {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    (server, agent)
}

async fn client(agent: &AgentHandle) -> WorkloadApiClient {
    WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap()
}

/// Fetches until the agent has an SVID with `id` for us, or 30 s pass.
async fn wait_for_svid(client: &WorkloadApiClient, id: &str) -> spiffe::X509Svid {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(svids) = client.fetch_all_x509_svids().await {
            if let Some(svid) = svids.into_iter().find(|s| s.spiffe_id().to_string() == id) {
                return svid;
            }
        }
        assert!(Instant::now() < deadline, "no SVID for {id} within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn jwt_part(token: &str, index: usize) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(index).expect("compact JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn jwt_claims(token: &str) -> serde_json::Value {
    jwt_part(token, 1)
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    parse_x509_certificate(der).expect("DER certificate").1
}

fn uri_and_dns_sans(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push((*u).to_owned()),
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                _ => {}
            }
        }
    }
    (uris, dns)
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_gets_x509_svid_with_the_spiffe_profile() {
    let (server, agent) = trust_domain();
    let uid = my_uid().to_string();
    let created = Instant::now();
    let selector = format!("unix:uid:{uid}");
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/myservice",
            "-selector",
            &selector,
            "-dns",
            "example.org",
            "-dns",
            "www.example.org",
            "-hint",
            "myservice",
            "-x509SVIDTTL",
            "120",
        ])
        .unwrap();
    let client = client(&agent).await;
    let svid = wait_for_svid(&client, "spiffe://example.org/myservice").await;
    eprintln!(
        "entry create -> SVID on the Workload API: {:?}",
        created.elapsed()
    );

    assert_eq!(svid.hint(), Some("myservice"));
    let leaf = parse(svid.leaf().as_bytes());
    let (uris, dns) = uri_and_dns_sans(&leaf);
    assert_eq!(
        uris,
        vec!["spiffe://example.org/myservice".to_owned()],
        "exactly one URI SAN"
    );
    assert_eq!(
        dns,
        vec!["example.org".to_owned(), "www.example.org".to_owned()]
    );
    let cn: Vec<_> = leaf
        .subject()
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    assert_eq!(cn, vec!["example.org"], "CN is the first DNS name");

    let mut key_usage_seen = false;
    let mut eku_seen = false;
    for ext in leaf.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => assert!(!bc.ca, "leaf must not be a CA"),
            ParsedExtension::KeyUsage(ku) => {
                key_usage_seen = true;
                assert!(ext.critical, "key usage is critical");
                assert!(ku.digital_signature());
                assert!(!ku.key_cert_sign() && !ku.crl_sign());
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                eku_seen = true;
                assert!(eku.server_auth && eku.client_auth);
            }
            _ => {}
        }
    }
    assert!(key_usage_seen && eku_seen);

    // Chains to the bundle, and never outlives the CA that signed it.
    let bundles = client.fetch_x509_bundles().await.unwrap();
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let bundle = bundles.get(&td).expect("own trust domain bundle");
    let issuer = bundle
        .authorities()
        .iter()
        .map(|c| parse(c.as_bytes()))
        .find(|ca| leaf.verify_signature(Some(ca.public_key())).is_ok())
        .expect("leaf signed by a CA of the bundle");
    assert!(leaf.validity().not_after <= issuer.validity().not_after);
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert!(
        (120..=140).contains(&lifetime),
        "TTL from the entry (+ backdating): {lifetime}"
    );

    // The CLI's `api fetch x509 -write` writes the same material.
    let out_dir = tempfile::tempdir().unwrap();
    let out = agent
        .cli(&[
            "api",
            "fetch",
            "x509",
            "-write",
            out_dir.path().to_str().unwrap(),
        ])
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        out.stdout.contains("spiffe://example.org/myservice"),
        "{}",
        out.stdout
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_gets_and_validates_jwt_svids() {
    let (server, agent) = trust_domain();
    let selector = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/jwt-workload",
            "-selector",
            &selector,
            "-hint",
            "jwt",
            "-jwtSVIDTTL",
            "60",
        ])
        .unwrap();
    let client = client(&agent).await;
    wait_for_svid(&client, "spiffe://example.org/jwt-workload").await;

    let id = SpiffeId::new("spiffe://example.org/jwt-workload").unwrap();
    let svid = client
        .fetch_jwt_svid(["vault", "db"], Some(&id))
        .await
        .unwrap();
    assert_eq!(svid.spiffe_id(), &id);
    assert!(!svid.key_id().is_empty(), "kid is required");
    let mut aud: Vec<_> = svid.audience().to_vec();
    aud.sort();
    assert_eq!(aud, vec!["db".to_owned(), "vault".to_owned()]);
    let claims = jwt_claims(svid.token());
    assert_eq!(claims["sub"], "spiffe://example.org/jwt-workload");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 60, "JWT TTL from the entry");
    let header = jwt_part(svid.token(), 0);
    assert_eq!(header["kid"], svid.key_id());
    assert!(
        matches!(header["alg"].as_str(), Some("ES256" | "ES384" | "RS256")),
        "{header}"
    );

    let jwt_bundles = client.fetch_jwt_bundles().await.unwrap();
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let bundle = jwt_bundles.get(&td).expect("JWT bundle of example.org");
    assert!(
        bundle.find_jwt_authority(svid.key_id()).is_some(),
        "kid is in the JWT bundle"
    );

    let validated = client
        .validate_jwt_token("vault", svid.token())
        .await
        .unwrap();
    assert_eq!(validated.spiffe_id(), &id);
    assert!(client
        .validate_jwt_token("someone-else", svid.token())
        .await
        .is_err());

    // Asking for an ID the workload does not have is refused.
    let other = SpiffeId::new("spiffe://example.org/not-mine").unwrap();
    assert!(client
        .fetch_jwt_svid(["vault"], Some(&other))
        .await
        .is_err());
    // An empty audience is refused.
    assert!(client
        .fetch_jwt_svid(Vec::<String>::new(), None)
        .await
        .is_err());
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_reaches_the_stream_before_expiry() {
    let (server, agent) = trust_domain();
    let selector = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/short-lived",
            "-selector",
            &selector,
            "-x509SVIDTTL",
            "8",
        ])
        .unwrap();
    let client = client(&agent).await;
    wait_for_svid(&client, "spiffe://example.org/short-lived").await;
    let mut stream = client.stream_x509_svids().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let first_leaf = first.leaf().as_bytes().to_vec();
    let first_not_after = parse(&first_leaf).validity().not_after.timestamp();
    let next = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let svid = stream.next().await.expect("stream open").expect("update");
            if svid.leaf().as_bytes() != first_leaf.as_slice() {
                return svid;
            }
        }
    })
    .await
    .expect("a rotated SVID within 30 s");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        now < first_not_after,
        "rotation arrived before the old SVID expired"
    );
    let next_leaf = parse(next.leaf().as_bytes());
    assert!(next_leaf.validity().not_after.timestamp() > first_not_after);
    assert_eq!(
        next.spiffe_id().to_string(),
        "spiffe://example.org/short-lived"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_without_identity_or_header_are_refused() {
    let (server, agent) = trust_domain();
    let selector = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/only-me",
            "-selector",
            &selector,
        ])
        .unwrap();
    let client = client(&agent).await;
    wait_for_svid(&client, "spiffe://example.org/only-me").await;

    // Missing security header: InvalidArgument, from a raw gRPC client.
    let status = raw_fetch_without_header(&agent).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // Another uid gets no identity (needs root to run as another user).
    if my_uid() == 0 {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        for dir in [
            agent.dir.path().to_path_buf(),
            agent.socket_path.parent().unwrap().to_path_buf(),
        ] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // The build directory may not be reachable by another user: run a copy.
        let binary = agent.dir.path().join("spinel-agent");
        std::fs::copy(spinel_test_fixtures::bin_path("spinel-agent"), &binary).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new(&binary)
            .args([
                "api",
                "fetch",
                "x509",
                "-socketPath",
                agent.socket_path.to_str().unwrap(),
            ])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(!out.status.success(), "uid 65534 must not get an SVID");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("PermissionDenied") || stderr.contains("no identity issued"),
            "stderr: {stderr}"
        );
    } else {
        eprintln!("not root: the second-uid check needs root and ran only the header check");
    }
    drop(server);
}

async fn raw_fetch_without_header(agent: &AgentHandle) -> tonic::Status {
    use spinel_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
    let path = agent.socket_path.clone();
    let channel = tonic::transport::Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap();
    let mut raw = SpiffeWorkloadApiClient::new(channel);
    match raw
        .fetch_x509svid(spinel_proto::workload::X509svidRequest::default())
        .await
    {
        Ok(mut resp) => match resp.get_mut().message().await {
            Err(status) => status,
            Ok(m) => panic!("expected an error, got {m:?}"),
        },
        Err(status) => status,
    }
}

#[test]
fn join_token_attests_exactly_one_agent() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    // Sequential reuse.
    let token = server.generate_token(None).unwrap();
    let _first = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let second = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    );
    let err = second.expect_err("a used join token must be refused");
    assert!(format!("{err:#}").contains("join token"), "{err:#}");

    // Concurrent use: four agents race for one token; exactly one wins.
    let token = server.generate_token(None).unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let token = token.clone();
                let server = &server;
                s.spawn(move || {
                    AgentHandle::start(
                        server,
                        AgentOptions {
                            join_token: Some(token),
                            ..Default::default()
                        },
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "exactly one agent attests with one token");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_restart_keeps_serving_without_a_new_token() {
    let (server, mut agent) = trust_domain();
    let selector = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/survivor",
            "-selector",
            &selector,
        ])
        .unwrap();
    wait_for_svid(&client(&agent).await, "spiffe://example.org/survivor").await;
    // The config still names the (now used) token: attesting again would
    // fail, so serving after restart proves the stored SVID was reused.
    agent.stop().unwrap();
    agent.start_process().unwrap();
    wait_for_svid(&client(&agent).await, "spiffe://example.org/survivor").await;
    assert_eq!(
        server
            .cli(&["agent", "list"])
            .unwrap()
            .stdout
            .matches("spiffe://example.org/spire/agent/join_token/")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_restart_keeps_entries_and_bundle() {
    let (mut server, agent) = trust_domain();
    let selector = format!("unix:uid:{}", my_uid());
    let entry_id = server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/persistent",
            "-selector",
            &selector,
        ])
        .unwrap();
    let bundle_before = server.bundle_pem().unwrap();
    server.restart().unwrap();
    assert_eq!(
        server.bundle_pem().unwrap(),
        bundle_before,
        "same CA after restart"
    );
    let shown = server
        .cli(&["entry", "show", "-entryID", &entry_id])
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(entry_id_of(&shown.stdout).unwrap(), entry_id);
    assert!(shown.stdout.contains("spiffe://example.org/persistent"));
    // The agent reconnects on its own and keeps serving.
    wait_for_svid(&client(&agent).await, "spiffe://example.org/persistent").await;
}

#[test]
fn bad_registrations_are_refused_with_clear_errors() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "-parentID",
                AGENT_ALIAS,
                "-spiffeID",
                "spiffe://example.org/a/../b",
                "-selector",
                "unix:uid:1",
            ],
            "spiffe://example.org/a/../b",
        ),
        (
            &[
                "-parentID",
                AGENT_ALIAS,
                "-spiffeID",
                "spiffe://example.org/%2e%2e/b",
                "-selector",
                "unix:uid:1",
            ],
            "%2e",
        ),
        (
            &[
                "-parentID",
                AGENT_ALIAS,
                "-spiffeID",
                "spiffe://Example.org/a",
                "-selector",
                "unix:uid:1",
            ],
            "Example.org",
        ),
        (
            &[
                "-parentID",
                AGENT_ALIAS,
                "-spiffeID",
                "spiffe://example.org/a/",
                "-selector",
                "unix:uid:1",
            ],
            "spiffe://example.org/a/",
        ),
        (
            &[
                "-parentID",
                AGENT_ALIAS,
                "-spiffeID",
                "spiffe://example.org/spire/agent/x",
                "-selector",
                "unix:uid:1",
            ],
            "reserved",
        ),
        (
            &[
                "-parentID",
                AGENT_ALIAS,
                "-spiffeID",
                "spiffe://example.org/ok",
                "-selector",
                "unix",
            ],
            "unix",
        ),
        (
            &[
                "-parentID",
                AGENT_ALIAS,
                "-spiffeID",
                "spiffe://example.org/ok",
                "-selector",
                "unix:",
            ],
            "unix:",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["entry", "create"];
        all.extend_from_slice(args);
        let out = server.cli(&all).unwrap();
        assert!(!out.success(), "{args:?} must be refused");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains(needle),
            "error for {args:?} should name {needle:?}: {text}"
        );
    }
    // Nothing was half-written.
    let count = server.cli(&["entry", "count"]).unwrap().ok().unwrap();
    let listed: BTreeSet<_> = count.stdout.split_whitespace().collect();
    assert!(listed.contains("0"), "no entries created: {}", count.stdout);
}

#[test]
fn bad_server_config_names_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        "server {\n    trust_domain = \"example.org\"\n    bind_prot = \"8081\"\n}\nplugins {\n    DataStore \"sled\" {\n        plugin_data {}\n    }\n    KeyManager \"memory\" {\n        plugin_data {}\n    }\n}\n",
    )
    .unwrap();
    let out = spinel_test_fixtures::spinel::run_cli(
        &spinel_test_fixtures::bin_path("spinel-server"),
        &["run", "-config", conf.to_str().unwrap()],
    )
    .unwrap();
    assert!(!out.success());
    assert!(out.stderr.contains("bind_prot"), "{}", out.stderr);
    assert!(out.stderr.contains(":3"), "names line 3: {}", out.stderr);
}
