//! The values of both binaries' metrics after known actions, read with
//! `prometheus_client.parser`: an agent attests with a join token, an
//! operator creates an entry, a workload fetches an X509-SVID twice and a
//! JWT-SVID once. Counters are compared with a scrape taken just before
//! the action (the harness does some calls of its own).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::{free_port, my_uid};
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

use super::{append, get, parser, telemetry_block, Scrape};

const AGENT_SVC: &str = "spire.api.server.agent.v1.Agent";
const ENTRY_SVC: &str = "spire.api.server.entry.v1.Entry";
const SVID_SVC: &str = "spire.api.server.svid.v1.SVID";
const WORKLOAD_SVC: &str = "SpiffeWorkloadAPI";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Scrapes until `done` holds (30 s at most).
fn scrape_until(
    python: &std::path::Path,
    port: u16,
    what: &str,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = Scrape::take(python, port);
        if done(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; last scrape:\n{}",
            scrape.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// No label value names a workload or an entry.
fn no_identities_in_labels(scrape: &Scrape, entry_ids: &[&str]) {
    for (name, labels, _) in scrape.samples() {
        for value in labels.values() {
            let value = value.as_str().unwrap();
            assert!(
                !value.contains("spiffe://") && !entry_ids.contains(&value),
                "{name} has the label value {value:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_and_agent_metrics_count_what_happened() {
    let Some(python) = parser() else { return };
    let server_port = free_port().unwrap();
    let mut server = ServerHandle::configure(ServerOptions::default()).unwrap();
    append(&server.config_path, &telemetry_block(server_port));
    server.start_process().unwrap();

    // The CA's expiry, read at the scrape.
    let s0 = Scrape::take(&python, server_port);
    let td = [("trust_domain_id", "example.org")];
    for name in [
        "spire_server_manager_x509_ca_rotate_expiration",
        "spire_server_manager_jwt_key_rotate_expiration",
    ] {
        let expiry = s0
            .value(name, &td)
            .unwrap_or_else(|| panic!("{name}\n{}", s0.text));
        assert!(
            expiry > now() + 3600.0 && expiry < now() + 8.0 * 86_400.0,
            "{name} = {expiry}"
        );
        assert_eq!(s0.family_type(name).as_deref(), Some("gauge"));
    }
    assert_eq!(
        s0.family_type("spire_server_server_ca_sign_x509_svid")
            .as_deref(),
        Some("counter")
    );
    assert_eq!(
        s0.family_type("spire_server_rpc_duration_seconds")
            .as_deref(),
        Some("histogram")
    );

    // An agent attests with a join token (its alias is an entry).
    let token = server
        .generate_token(Some("spiffe://example.org/node"))
        .unwrap();
    let agent_port = free_port().unwrap();
    let mut agent = AgentHandle::configure(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    append(&agent.config_path, &telemetry_block(agent_port));
    agent.start_process().unwrap();

    let s1 = Scrape::take(&python, server_port);
    let attest_ok = [("attestor", "join_token"), ("status", "OK")];
    assert_eq!(
        s1.count("spire_server_node_attestations_total", &attest_ok),
        1.0,
        "{}",
        s1.text
    );
    let rpc = |svc: &'static str, method: &'static str, status: &'static str| {
        [("service", svc), ("method", method), ("status", status)]
    };
    assert_eq!(
        s1.count(
            "spire_server_rpc_calls_total",
            &rpc(AGENT_SVC, "AttestAgent", "OK")
        ),
        1.0
    );
    assert_eq!(
        s1.count(
            "spire_server_rpc_duration_seconds_count",
            &rpc(AGENT_SVC, "AttestAgent", "OK")
        ),
        1.0
    );
    assert_eq!(
        s1.count(
            "spire_server_rpc_calls_total",
            &rpc(AGENT_SVC, "CreateJoinToken", "OK")
        ),
        1.0
    );
    assert_eq!(
        s1.value("spire_server_node_agents_by_id_cache_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        s1.value("spire_server_entry_entries_by_entryid_cache_count", &[]),
        Some(1.0)
    );

    let a1 = Scrape::take(&python, agent_port);
    assert_eq!(
        a1.count(
            "spire_agent_node_attestor_new_svid_total",
            &[("attestor", "join_token")]
        ),
        1.0,
        "{}",
        a1.text
    );
    let synced = a1.count(
        "spire_agent_manager_sync_rounds_total",
        &[("result", "success")],
    );
    assert!(synced >= 1.0, "{}", a1.text);
    assert!(a1.count("spire_agent_manager_sync_duration_seconds_count", &[]) >= synced);
    let cached = a1
        .value("spire_agent_lru_cache_record_map_size", &[])
        .unwrap();

    // Before any entry matches it, the workload is refused.
    let denied = [
        ("service", WORKLOAD_SVC),
        ("method", "FetchX509SVID"),
        ("status", "PermissionDenied"),
    ];
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    assert!(client.fetch_x509_svid().await.is_err());
    let a1b = scrape_until(&python, agent_port, "the refusal was not counted", |s| {
        s.count("spire_agent_rpc_calls_total", &denied)
            == a1.count("spire_agent_rpc_calls_total", &denied) + 1.0
    });
    assert_eq!(
        a1b.count(
            "spire_agent_rpc_in_flight",
            &[("service", WORKLOAD_SVC), ("method", "FetchX509SVID")]
        ),
        0.0
    );

    // An operator creates an entry for this test's uid.
    let signed_before = s1.count("spire_server_server_ca_sign_x509_svid_total", &[]);
    let selector = format!("unix:uid:{}", my_uid());
    let entry_id = server
        .create_entry(&[
            "-parentID",
            "spiffe://example.org/node",
            "-spiffeID",
            "spiffe://example.org/metrics-workload",
            "-selector",
            &selector,
        ])
        .unwrap();
    let a2 = scrape_until(
        &python,
        agent_port,
        "the entry never reached the agent",
        |s| {
            s.value("spire_agent_lru_cache_record_map_size", &[]) == Some(cached + 1.0)
                && s.value("spire_agent_lru_cache_svid_map_size", &[]) == Some(cached + 1.0)
        },
    );
    let s2 = Scrape::take(&python, server_port);
    assert_eq!(
        s2.count(
            "spire_server_rpc_calls_total",
            &rpc(ENTRY_SVC, "BatchCreateEntry", "OK")
        ),
        1.0
    );
    assert_eq!(
        s2.value("spire_server_entry_entries_by_entryid_cache_count", &[]),
        Some(2.0)
    );
    assert_eq!(
        s2.count("spire_server_server_ca_sign_x509_svid_total", &[]),
        signed_before + 1.0,
        "one X509-SVID for the new entry"
    );
    assert!(
        s2.count(
            "spire_server_rpc_calls_total",
            &rpc(SVID_SVC, "BatchNewX509SVID", "OK")
        ) >= 1.0
    );

    // A workload fetches an X509-SVID twice and a JWT-SVID once.
    let fetch = |s: &Scrape, method: &'static str| {
        s.count(
            "spire_agent_rpc_calls_total",
            &[("service", WORKLOAD_SVC), ("method", method)],
        )
    };
    let (x509_before, jwt_before) = (fetch(&a2, "FetchX509SVID"), fetch(&a2, "FetchJWTSVID"));
    let jwt_signed_before = s2.count("spire_server_server_ca_sign_jwt_svid_total", &[]);
    for _ in 0..2 {
        let svid = client.fetch_x509_svid().await.unwrap();
        assert_eq!(
            svid.spiffe_id().to_string(),
            "spiffe://example.org/metrics-workload"
        );
    }
    client.fetch_jwt_svid(["metrics-test"], None).await.unwrap();

    let a3 = scrape_until(&python, agent_port, "the fetch streams never closed", |s| {
        s.count(
            "spire_agent_rpc_in_flight",
            &[("service", WORKLOAD_SVC), ("method", "FetchX509SVID")],
        ) == 0.0
            && fetch(s, "FetchX509SVID") == x509_before + 2.0
    });
    assert_eq!(fetch(&a3, "FetchJWTSVID"), jwt_before + 1.0, "{}", a3.text);
    assert_eq!(
        a3.count(
            "spire_agent_rpc_calls_total",
            &[
                ("service", WORKLOAD_SVC),
                ("method", "FetchJWTSVID"),
                ("status", "OK")
            ]
        ),
        jwt_before + 1.0
    );
    // The streams were answered, then closed by the client.
    assert_eq!(
        a3.count(
            "spire_agent_rpc_calls_total",
            &[
                ("service", WORKLOAD_SVC),
                ("method", "FetchX509SVID"),
                ("status", "PermissionDenied")
            ]
        ),
        a2.count(
            "spire_agent_rpc_calls_total",
            &[
                ("service", WORKLOAD_SVC),
                ("method", "FetchX509SVID"),
                ("status", "PermissionDenied")
            ]
        ),
        "{}",
        a3.text
    );
    assert_eq!(
        a3.count(
            "spire_agent_rpc_duration_seconds_count",
            &[("service", WORKLOAD_SVC), ("method", "FetchX509SVID")]
        ),
        x509_before + 2.0
    );
    assert!(a3.count("spire_agent_workload_api_connection_total", &[]) >= 1.0);
    assert!(
        a3.value("spire_agent_workload_api_connections", &[])
            .unwrap()
            >= 1.0,
        "the client's connection is open: {}",
        a3.text
    );

    let s3 = Scrape::take(&python, server_port);
    assert_eq!(
        s3.count("spire_server_server_ca_sign_jwt_svid_total", &[]),
        jwt_signed_before + 1.0
    );
    assert_eq!(
        s3.count(
            "spire_server_rpc_calls_total",
            &rpc(SVID_SVC, "NewJWTSVID", "OK")
        ),
        1.0
    );
    assert!(s3.value("spire_server_uptime_in_ms", &[]).unwrap() > 0.0);

    no_identities_in_labels(&s3, &[&entry_id]);
    no_identities_in_labels(&a3, &[&entry_id]);
    assert!(!s3.text.contains(&entry_id) && !a3.text.contains(&entry_id));

    // Only /metrics, only GET.
    assert_eq!(get(server_port, "GET", "/").0, "HTTP/1.1 404 Not Found");
    assert_eq!(
        get(agent_port, "POST", "/metrics").0,
        "HTTP/1.1 405 Method Not Allowed"
    );

    drop(client);
    agent.stop().unwrap();
    drop(server);
}
