//! End to end federation: two trust domains, each a real `spinel-server`
//! with a bundle endpoint (`https_spiffe`) and a real `spinel-agent`.
//! `td-a.test` federates with `td-b.test` through its config
//! (`federates_with`, bundle seeded with `bundle set`); `td-b.test`
//! federates with `td-a.test` through a relationship created at run time
//! with `federation create` (bundle seeded with `-trustDomainBundlePath`).
//! Workloads are checked with the `spiffe` crate: a workload whose entry
//! federates gets the other trust domain's bundle and verifies the other
//! side's X509-SVID with it; one whose entry does not, does not get it.
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use spiffe::{TrustDomain, WorkloadApiClient, X509Context};
use spinel_test_fixtures::process::free_port;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::x509::verify_chain;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

const TD_A: &str = "td-a.test";
const TD_B: &str = "td-b.test";

fn endpoint_block(port: u16) -> String {
    format!(
        r#"    federation {{
        bundle_endpoint {{
            address = "127.0.0.1"
            port = {port}
            refresh_hint = "1m"
            profile "https_spiffe" {{}}
        }}
"#
    )
}

fn agent_with_alias(server: &ServerHandle, alias: &str) -> AgentHandle {
    let token = server.generate_token(Some(alias)).unwrap();
    AgentHandle::start(
        server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Waits until the agent serves `id` and a context passing `check`.
async fn wait_for_context(
    agent: &AgentHandle,
    id: &str,
    what: &str,
    check: impl Fn(&X509Context) -> bool,
) -> X509Context {
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(ctx) = client.fetch_x509_context().await {
            if ctx.svids().iter().any(|s| s.spiffe_id().to_string() == id) && check(&ctx) {
                return ctx;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} within 60 s\nagent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Verifies `chain` (leaf first) against the X.509 authorities of `ctx`'s
/// bundle for `td`, as a TLS peer would.
fn verify_with_bundle(ctx: &X509Context, td: &str, chain: &[CertificateDer<'_>]) {
    let td = TrustDomain::new(td).unwrap();
    let bundle = ctx
        .bundle_set()
        .get(&td)
        .expect("bundle of the trust domain");
    let roots: Vec<Vec<u8>> = bundle
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let chain: Vec<Vec<u8>> = chain.iter().map(|c| c.to_vec()).collect();
    verify_chain(&chain, &roots).expect("the peer's SVID chains to the federated bundle");
}

fn svid_chain(ctx: &X509Context, id: &str) -> Vec<CertificateDer<'static>> {
    let svid = ctx
        .svids()
        .iter()
        .find(|s| s.spiffe_id().to_string() == id)
        .expect("the SVID");
    svid.cert_chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
        .collect()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_trust_domains_federate_both_ways() {
    let (port_a, port_b) = (free_port().unwrap(), free_port().unwrap());
    let server_a = ServerHandle::start(ServerOptions {
        trust_domain: TD_A.into(),
        server_extra: format!(
            r#"{}        federates_with "{TD_B}" {{
            bundle_endpoint_url = "https://127.0.0.1:{port_b}"
            bundle_endpoint_profile "https_spiffe" {{
                endpoint_spiffe_id = "spiffe://{TD_B}/spire/server"
            }}
        }}
    }}"#,
            endpoint_block(port_a)
        ),
        ..Default::default()
    })
    .unwrap();
    let server_b = ServerHandle::start(ServerOptions {
        trust_domain: TD_B.into(),
        server_extra: format!("{}    }}", endpoint_block(port_b)),
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // td-a.test: the config relationship, seeded with `bundle set`.
    let bundle_b = server_b
        .cli(&["bundle", "show", "-format", "spiffe"])
        .unwrap()
        .ok()
        .unwrap()
        .stdout;
    let path_b = dir.path().join("b.json");
    std::fs::write(&path_b, &bundle_b).unwrap();
    server_a
        .cli(&[
            "bundle",
            "set",
            "-format",
            "spiffe",
            "-id",
            &format!("spiffe://{TD_B}"),
            "-path",
            path_b.to_str().unwrap(),
        ])
        .unwrap()
        .ok()
        .unwrap();
    let listed = server_a
        .cli(&["federation", "list", "-output", "json"])
        .unwrap()
        .ok()
        .unwrap();
    let listed = json(&listed.stdout);
    assert_eq!(
        listed["federation_relationships"][0]["trust_domain"], TD_B,
        "{listed}"
    );
    assert_eq!(
        listed["federation_relationships"][0]["https_spiffe"]["endpoint_spiffe_id"],
        format!("spiffe://{TD_B}/spire/server")
    );
    let refreshed = server_a
        .cli(&["federation", "refresh", "-id", TD_B])
        .unwrap();
    assert!(refreshed.success(), "{refreshed:?}\n{}", server_a.log());
    assert_eq!(refreshed.stdout.trim(), "Bundle refreshed");
    // What A holds now came from B's endpoint: it carries B's refresh hint.
    let held = server_a
        .cli(&["bundle", "list", "-id", TD_B, "-output", "json"])
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(json(&held.stdout)["refresh_hint"], "60", "{}", held.stdout);

    // td-b.test: a relationship created at run time, seeded by the CLI.
    let bundle_a = server_a
        .cli(&["bundle", "show", "-format", "spiffe"])
        .unwrap()
        .ok()
        .unwrap()
        .stdout;
    let path_a = dir.path().join("a.json");
    std::fs::write(&path_a, &bundle_a).unwrap();
    let url_a = format!("https://127.0.0.1:{port_a}");
    let endpoint_a = format!("spiffe://{TD_A}/spire/server");
    let created = server_b
        .cli(&[
            "federation",
            "create",
            "-trustDomain",
            TD_A,
            "-bundleEndpointURL",
            &url_a,
            "-bundleEndpointProfile",
            "https_spiffe",
            "-endpointSpiffeID",
            &endpoint_a,
            "-trustDomainBundlePath",
            path_a.to_str().unwrap(),
            "-trustDomainBundleFormat",
            "spiffe",
        ])
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        created.stdout.contains("Federation relationship created."),
        "{}",
        created.stdout
    );
    let shown = server_b
        .cli(&["federation", "show", "-trustDomain", TD_A])
        .unwrap()
        .ok()
        .unwrap();
    assert!(shown.stdout.contains(&url_a), "{}", shown.stdout);
    assert!(shown.stdout.contains("https_spiffe"), "{}", shown.stdout);
    // The poller fetches the new relationship's bundle on its own.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = server_b
            .cli(&["bundle", "list", "-id", TD_A, "-output", "json"])
            .unwrap();
        if held.success() && json(&held.stdout)["refresh_hint"] == "60" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B fetched A's bundle\n{}",
            server_b.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Agents and entries.
    let uid = format!("unix:uid:{}", my_uid());
    let agent_a = agent_with_alias(&server_a, &format!("spiffe://{TD_A}/node"));
    let plain_agent = agent_with_alias(&server_a, &format!("spiffe://{TD_A}/plain-node"));
    let agent_b = agent_with_alias(&server_b, &format!("spiffe://{TD_B}/node"));
    let id_a = format!("spiffe://{TD_A}/frontend");
    let id_plain = format!("spiffe://{TD_A}/plain");
    let id_b = format!("spiffe://{TD_B}/backend");
    server_a
        .create_entry(&[
            "-parentID",
            &format!("spiffe://{TD_A}/node"),
            "-spiffeID",
            &id_a,
            "-selector",
            &uid,
            "-federatesWith",
            &format!("spiffe://{TD_B}"),
        ])
        .unwrap();
    server_a
        .create_entry(&[
            "-parentID",
            &format!("spiffe://{TD_A}/plain-node"),
            "-spiffeID",
            &id_plain,
            "-selector",
            &uid,
        ])
        .unwrap();
    server_b
        .create_entry(&[
            "-parentID",
            &format!("spiffe://{TD_B}/node"),
            "-spiffeID",
            &id_b,
            "-selector",
            &uid,
            "-federatesWith",
            &format!("spiffe://{TD_A}"),
        ])
        .unwrap();

    let td_a = TrustDomain::new(TD_A).unwrap();
    let td_b = TrustDomain::new(TD_B).unwrap();
    let ctx_a = wait_for_context(&agent_a, &id_a, "A's workload gets B's bundle", |c| {
        c.bundle_set().get(&td_b).is_some()
    })
    .await;
    let ctx_b = wait_for_context(&agent_b, &id_b, "B's workload gets A's bundle", |c| {
        c.bundle_set().get(&td_a).is_some()
    })
    .await;
    // Each side verifies the other's X509-SVID with the federated bundle.
    verify_with_bundle(&ctx_a, TD_B, &svid_chain(&ctx_b, &id_b));
    verify_with_bundle(&ctx_b, TD_A, &svid_chain(&ctx_a, &id_a));

    // The raw FetchX509SVID response carries it in federated_bundles, and
    // the bundle streams include it.
    let client_a = WorkloadApiClient::connect_to(agent_a.endpoint())
        .await
        .unwrap();
    let x509_bundles = client_a.fetch_x509_bundles().await.unwrap();
    assert!(x509_bundles.get(&td_b).is_some());
    let jwt_bundles = client_a.fetch_jwt_bundles().await.unwrap();
    assert!(jwt_bundles.get(&td_b).is_some(), "JWT bundle of td-b.test");

    // A workload whose entry does not federate does not get it.
    let ctx_plain = wait_for_context(&plain_agent, &id_plain, "the plain SVID", |_| true).await;
    assert!(ctx_plain.bundle_set().get(&td_a).is_some());
    assert!(
        ctx_plain.bundle_set().get(&td_b).is_none(),
        "no federated bundle without federatesWith"
    );

    // Deleting the runtime relationship is refused for unknown ones and
    // works for the one created.
    let missing = server_b
        .cli(&["federation", "delete", "-id", "nowhere.test"])
        .unwrap();
    assert!(!missing.success());
    server_b
        .cli(&["federation", "delete", "-id", TD_A])
        .unwrap()
        .ok()
        .unwrap();
    let after = server_b.cli(&["federation", "list"]).unwrap().ok().unwrap();
    assert!(
        after.stdout.starts_with("Found 0 federation relationships"),
        "{}",
        after.stdout
    );
    drop((agent_a, plain_agent, agent_b));
}

#[tokio::test(flavor = "multi_thread")]
async fn https_spiffe_refuses_an_endpoint_with_the_wrong_id_or_no_known_bundle() {
    let port_b = free_port().unwrap();
    let server_b = ServerHandle::start(ServerOptions {
        trust_domain: TD_B.into(),
        server_extra: format!("{}    }}", endpoint_block(port_b)),
        ..Default::default()
    })
    .unwrap();
    let server_a = ServerHandle::start(ServerOptions {
        trust_domain: TD_A.into(),
        ..Default::default()
    })
    .unwrap();
    let url_b = format!("https://127.0.0.1:{port_b}");
    // No bundle of td-b.test is known yet: the endpoint cannot be trusted.
    server_a
        .cli(&[
            "federation",
            "create",
            "-trustDomain",
            TD_B,
            "-bundleEndpointURL",
            &url_b,
            "-endpointSpiffeID",
            &format!("spiffe://{TD_B}/not-the-server"),
        ])
        .unwrap()
        .ok()
        .unwrap();
    let refused = server_a
        .cli(&["federation", "refresh", "-id", TD_B])
        .unwrap();
    assert!(!refused.success());
    assert!(refused.stderr.contains("bundle set"), "{}", refused.stderr);

    // Seeded, but the endpoint's SPIFFE ID is not the expected one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.pem");
    std::fs::write(&path, server_b.bundle_pem().unwrap()).unwrap();
    server_a
        .cli(&[
            "bundle",
            "set",
            "-id",
            TD_B,
            "-path",
            path.to_str().unwrap(),
        ])
        .unwrap()
        .ok()
        .unwrap();
    let refused = server_a
        .cli(&["federation", "refresh", "-id", TD_B])
        .unwrap();
    assert!(!refused.success());
    assert!(
        refused.stderr.contains(&url_b) && refused.stderr.contains("not-the-server"),
        "{}",
        refused.stderr
    );
    // The poller logs the failure with the URL and keeps the bundle.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server_a.log().contains("federated bundle refresh failed") {
        assert!(Instant::now() < deadline, "{}", server_a.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server_a.log().contains(&url_b));
    let held = server_a
        .cli(&["bundle", "list", "-id", TD_B])
        .unwrap()
        .ok()
        .unwrap();
    assert!(held.stdout.contains("BEGIN CERTIFICATE"));

    // Fixed with `federation update`: now it refreshes.
    server_a
        .cli(&[
            "federation",
            "update",
            "-trustDomain",
            TD_B,
            "-bundleEndpointURL",
            &url_b,
            "-endpointSpiffeID",
            &format!("spiffe://{TD_B}/spire/server"),
        ])
        .unwrap()
        .ok()
        .unwrap();
    server_a
        .cli(&["federation", "refresh", "-id", TD_B])
        .unwrap()
        .ok()
        .unwrap();
}
