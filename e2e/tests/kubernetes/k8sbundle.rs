//! End to end with `Notifier "k8sbundle"`: a real `spinel-server` keeps its
//! trust bundle in a ConfigMap of the fake kube-apiserver
//! (`spinel_test_fixtures::k8s::FakeApiServer`: real HTTPS, real
//! Kubernetes JSON, merge-patch semantics), reached through a kubeconfig.
//!
//! The ConfigMap is missing at first: the server logs an error naming it
//! and retries, without creating it. Once it exists it holds exactly what
//! `spinel-server bundle show` prints, and follows a manual rotation
//! (`localauthority x509 prepare`, `activate`, `taint`, `revoke`). Its other
//! keys are left alone, and the server's log never carries the API token.
//!
//! Real processes run on the real clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use spinel_test_fixtures::k8s::{ApiServerOptions, FakeApiServer};
use spinel_test_fixtures::{ServerHandle, ServerOptions};

const NS: &str = "infra";
const NAME: &str = "trust-bundle";
const KEY: &str = "bundle.pem";
const PATH: &str = "/api/v1/namespaces/infra/configmaps/trust-bundle";

fn bundle_show(server: &ServerHandle) -> String {
    let out = server.cli(&["bundle", "show"]).unwrap();
    assert!(out.success(), "{}", out.stderr);
    out.stdout
}

fn localauthority(server: &ServerHandle, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["localauthority", "x509"];
    all.extend(args);
    all.extend(["-output", "json"]);
    let out = server.cli(&all).unwrap();
    assert!(out.success(), "{args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn id_of(v: &serde_json::Value, field: &str) -> String {
    v[field]["authority_id"].as_str().unwrap().to_owned()
}

/// Waits until the ConfigMap's key holds `want`.
fn wait_for_value(api: &FakeApiServer, server: &ServerHandle, want: &str, what: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if api.config_map_value(NS, NAME, KEY).as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < until,
            "{what}: ConfigMap holds {:?}, want {want:?}\n{}",
            api.config_map_value(NS, NAME, KEY),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pem_count(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

#[test]
fn k8sbundle_keeps_the_configmap_on_the_bundle_through_rotation() {
    let api = FakeApiServer::start(ApiServerOptions::default()).unwrap();
    let work = tempfile::Builder::new()
        .prefix("spinel-k8sbundle")
        .tempdir_in("/tmp")
        .unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let server = ServerHandle::start(ServerOptions {
        plugins_extra: format!(
            r#"    Notifier "k8sbundle" {{
        plugin_data {{
            namespace = "{NS}"
            config_map = "{NAME}"
            config_map_key = "{KEY}"
            kube_config_file = "{}"
        }}
    }}
"#,
            kubeconfig.display()
        ),
        ..ServerOptions::default()
    })
    .unwrap();

    // Missing: an error naming it, retried, never created.
    let until = Instant::now() + Duration::from_secs(20);
    while !server
        .log()
        .contains(&format!(r#"configmap "{NS}/{NAME}" not found"#))
    {
        assert!(Instant::now() < until, "{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        api.config_map(NS, NAME).is_none(),
        "the notifier created it"
    );

    // Created by the operator: filled with the bundle, other keys kept.
    api.add_config_map(NS, NAME, [("note".to_owned(), "kept".to_owned())].into());
    let first = bundle_show(&server);
    assert_eq!(pem_count(&first), 1, "{first}");
    wait_for_value(&api, &server, &first, "the bundle at start");
    assert_eq!(
        api.config_map_value(NS, NAME, "note").as_deref(),
        Some("kept")
    );

    // Prepare: the bundle gains the next CA.
    let state = localauthority(&server, &["show"]);
    let first_id = id_of(&state, "active");
    let next_id = id_of(&localauthority(&server, &["prepare"]), "prepared_authority");
    let both = bundle_show(&server);
    assert_eq!(pem_count(&both), 2, "{both}");
    wait_for_value(&api, &server, &both, "the bundle after prepare");

    // Activate, taint and revoke the old CA: the bundle holds the new one only.
    localauthority(&server, &["activate", "-authorityID", &next_id]);
    localauthority(&server, &["taint", "-authorityID", &first_id]);
    localauthority(&server, &["revoke", "-authorityID", &first_id]);
    let last = bundle_show(&server);
    assert_eq!(pem_count(&last), 1, "{last}");
    assert_ne!(last, first);
    assert!(both.contains(&last), "the new CA was the prepared one");
    wait_for_value(&api, &server, &last, "the bundle after revoke");

    let requests = api.requests();
    assert!(
        requests.iter().all(|r| *r == format!("PATCH {PATH}")),
        "{requests:?}"
    );
    assert!(!server.log().contains(api.token()), "the token was logged");
}
