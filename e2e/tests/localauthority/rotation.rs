//! End to end: manual CA rotation with `spinel-server localauthority`
//! against a real server and agent, checked with an independent SPIFFE
//! client (the `spiffe` crate) on the agent's Workload API.
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};
use x509_parser::prelude::parse_x509_certificate;

const AGENT_ALIAS: &str = "spiffe://example.org/myagent";
const TD: &str = "example.org";

fn json(server: &ServerHandle, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-output", "json"]);
    let out = server.cli(&all).unwrap();
    assert!(out.success(), "{args:?}: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

/// Runs a localauthority command that must fail; returns its stderr.
fn refused(server: &ServerHandle, args: &[&str]) -> String {
    let out = server.cli(args).unwrap();
    assert!(!out.success(), "{args:?} should fail: {}", out.stdout);
    out.stderr
}

fn id_of(v: &serde_json::Value, field: &str) -> String {
    v[field]["authority_id"].as_str().unwrap().to_owned()
}

/// Subject key ID (hex) of a CA certificate, as the server names it.
fn ski(der: &[u8]) -> String {
    let (_, cert) = parse_x509_certificate(der).unwrap();
    for ext in cert.extensions() {
        if let x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) =
            ext.parsed_extension()
        {
            return id.0.iter().map(|b| format!("{b:02x}")).collect();
        }
    }
    panic!("CA without a subject key ID");
}

async fn workload_bundle(client: &WorkloadApiClient) -> Vec<Vec<u8>> {
    let bundles = client.fetch_x509_bundles().await.unwrap();
    let td = spiffe::TrustDomain::new(TD).unwrap();
    bundles
        .get(&td)
        .expect("own bundle")
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect()
}

/// Polls the workload's view until `check` holds, or 30 s pass.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The SPIFFE ID's current SVID: (leaf DER, DER of the bundle CA that signed it).
async fn svid_and_issuer(client: &WorkloadApiClient, id: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let svids = client.fetch_all_x509_svids().await.ok()?;
    let svid = svids
        .into_iter()
        .find(|s| s.spiffe_id().to_string() == id)?;
    let leaf_der = svid.leaf().as_bytes().to_vec();
    let bundle = workload_bundle(client).await;
    let (_, leaf) = parse_x509_certificate(&leaf_der).ok()?;
    let issuer = bundle.into_iter().find(|ca| {
        parse_x509_certificate(ca)
            .is_ok_and(|(_, ca)| leaf.verify_signature(Some(ca.public_key())).is_ok())
    })?;
    Some((leaf_der, issuer))
}

#[tokio::test(flavor = "multi_thread")]
async fn x509_prepare_activate_taint_revoke_reach_the_workload() {
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
    let selector = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/before",
            "-selector",
            &selector,
        ])
        .unwrap();
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let (_, first_ca) = eventually("the first SVID", async || {
        svid_and_issuer(&client, "spiffe://example.org/before").await
    })
    .await;
    let state = json(&server, &["localauthority", "x509", "show"]);
    let first_id = id_of(&state, "active");
    assert_eq!(first_id, ski(&first_ca));
    assert!(state.get("prepared").is_none() && state.get("old").is_none());

    // Out of order before anything is prepared.
    let err = refused(
        &server,
        &[
            "localauthority",
            "x509",
            "activate",
            "-authorityID",
            &first_id,
        ],
    );
    assert!(err.contains("no prepared authority found"), "{err}");
    let err = refused(
        &server,
        &["localauthority", "x509", "taint", "-authorityID", &first_id],
    );
    assert!(err.contains("active authority"), "{err}");
    let err = refused(&server, &["localauthority", "x509", "revoke"]);
    assert!(err.contains("authority ID is required"), "{err}");

    // Prepare: the workload's bundle holds two CAs.
    let prepared = json(&server, &["localauthority", "x509", "prepare"]);
    let next_id = id_of(&prepared, "prepared_authority");
    eventually("two CAs in the workload bundle", async || {
        (workload_bundle(&client).await.len() == 2).then_some(())
    })
    .await;
    let err = refused(
        &server,
        &["localauthority", "x509", "activate", "-authorityID", "00ff"],
    );
    assert!(err.contains("invalid authority ID"), "{err}");

    // Activate: new SVIDs chain to the new CA.
    let activated = json(
        &server,
        &[
            "localauthority",
            "x509",
            "activate",
            "-authorityID",
            &next_id,
        ],
    );
    assert_eq!(id_of(&activated, "activated_authority"), next_id);
    let state = json(&server, &["localauthority", "x509", "show"]);
    assert_eq!(id_of(&state, "active"), next_id);
    assert_eq!(id_of(&state, "old"), first_id);
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/after",
            "-selector",
            &selector,
        ])
        .unwrap();
    let (_, issuer) = eventually("an SVID from the new CA", async || {
        svid_and_issuer(&client, "spiffe://example.org/after").await
    })
    .await;
    assert_eq!(ski(&issuer), next_id);
    // The SVID issued before is still the old CA's (it is not due yet).
    let (before_leaf, issuer) = svid_and_issuer(&client, "spiffe://example.org/before")
        .await
        .unwrap();
    assert_eq!(ski(&issuer), first_id);

    // Revoke before taint is refused.
    let err = refused(
        &server,
        &[
            "localauthority",
            "x509",
            "revoke",
            "-authorityID",
            &first_id,
        ],
    );
    assert!(err.contains("not tainted"), "{err}");

    // Taint: the agent re-signs the old SVID at once, and the bundle the
    // server serves flags the CA.
    let tainted = json(
        &server,
        &["localauthority", "x509", "taint", "-authorityID", &first_id],
    );
    assert_eq!(id_of(&tainted, "tainted_authority"), first_id);
    let bundle = json(&server, &["bundle", "show"]);
    let flags: Vec<bool> = bundle["x509_authorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["tainted"].as_bool().unwrap())
        .collect();
    assert_eq!(flags.iter().filter(|t| **t).count(), 1, "{bundle}");
    let (after_leaf, issuer) = eventually("the old SVID re-signed by the new CA", async || {
        svid_and_issuer(&client, "spiffe://example.org/before")
            .await
            .filter(|(_, issuer)| ski(issuer) == next_id)
    })
    .await;
    assert_ne!(after_leaf, before_leaf);
    assert_eq!(ski(&issuer), next_id);
    let err = refused(
        &server,
        &["localauthority", "x509", "taint", "-authorityID", &first_id],
    );
    assert!(err.contains("already tainted"), "{err}");

    // Revoke: the old CA leaves the bundle the workload sees.
    let revoked = json(
        &server,
        &[
            "localauthority",
            "x509",
            "revoke",
            "-authorityID",
            &first_id,
        ],
    );
    assert_eq!(id_of(&revoked, "revoked_authority"), first_id);
    let bundle = eventually("the old CA gone from the workload bundle", async || {
        let b = workload_bundle(&client).await;
        (b.len() == 1).then_some(b)
    })
    .await;
    assert_eq!(ski(&bundle[0]), next_id);
    // The agent still works after the revocation: a new entry gets an SVID.
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/later",
            "-selector",
            &selector,
        ])
        .unwrap();
    eventually("an SVID after revocation", async || {
        svid_and_issuer(&client, "spiffe://example.org/later").await
    })
    .await;
    drop(agent);
}

#[test]
fn restarts_in_the_middle_keep_the_state() {
    let mut server = ServerHandle::start(ServerOptions::default()).unwrap();
    let first = id_of(&json(&server, &["localauthority", "jwt", "show"]), "active");
    let prepared = json(&server, &["localauthority", "jwt", "prepare"]);
    let next = id_of(&prepared, "prepared_authority");
    let x509_prepared = id_of(
        &json(&server, &["localauthority", "x509", "prepare"]),
        "prepared_authority",
    );

    server.restart().unwrap();
    let state = json(&server, &["localauthority", "jwt", "show"]);
    assert_eq!(id_of(&state, "active"), first);
    assert_eq!(id_of(&state, "prepared"), next);
    let state = json(&server, &["localauthority", "x509", "show"]);
    assert_eq!(id_of(&state, "prepared"), x509_prepared);

    json(
        &server,
        &["localauthority", "jwt", "activate", "-authorityID", &next],
    );
    server.restart().unwrap();
    let state = json(&server, &["localauthority", "jwt", "show"]);
    assert_eq!(id_of(&state, "active"), next);
    assert_eq!(id_of(&state, "old"), first);

    json(
        &server,
        &["localauthority", "jwt", "taint", "-authorityID", &first],
    );
    server.kill();
    server.start_process().unwrap();
    let bundle = json(&server, &["bundle", "show"]);
    let tainted: Vec<&str> = bundle["jwt_authorities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["tainted"].as_bool() == Some(true))
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(tainted, vec![first.as_str()]);

    json(
        &server,
        &["localauthority", "jwt", "revoke", "-authorityID", &first],
    );
    server.restart().unwrap();
    let bundle = json(&server, &["bundle", "show"]);
    let kids: Vec<&str> = bundle["jwt_authorities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![next.as_str()]);
    assert!(json(&server, &["localauthority", "jwt", "show"])
        .get("old")
        .is_none());

    // Pretty output, SPIRE's layout.
    let out = server
        .cli(&["localauthority", "jwt", "show"])
        .unwrap()
        .ok()
        .unwrap()
        .stdout;
    assert!(
        out.starts_with(&format!(
            "Active JWT authority:\n  Authority ID: {next}\n  Expires at: "
        )),
        "{out}"
    );
    assert!(
        out.contains("Old JWT authority:\n  No old JWT authority found\n"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_taint_replaces_cached_jwt_svids() {
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
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            "spiffe://example.org/jwt",
            "-selector",
            &format!("unix:uid:{}", my_uid()),
        ])
        .unwrap();
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let id = spiffe::SpiffeId::new("spiffe://example.org/jwt").unwrap();
    let first = eventually("a JWT-SVID", async || {
        client
            .fetch_jwt_svid(["vault"], Some(&id))
            .await
            .ok()
            .map(|s| s.key_id().to_owned())
    })
    .await;
    assert_eq!(
        id_of(&json(&server, &["localauthority", "jwt", "show"]), "active"),
        first
    );
    let next = id_of(
        &json(&server, &["localauthority", "jwt", "prepare"]),
        "prepared_authority",
    );
    json(
        &server,
        &["localauthority", "jwt", "activate", "-authorityID", &next],
    );
    json(
        &server,
        &["localauthority", "jwt", "taint", "-authorityID", &first],
    );
    eventually("a JWT-SVID signed with the new key", async || {
        let svid = client.fetch_jwt_svid(["vault"], Some(&id)).await.ok()?;
        (svid.key_id() == next).then_some(())
    })
    .await;
    json(
        &server,
        &["localauthority", "jwt", "revoke", "-authorityID", &first],
    );
    eventually(
        "the old key gone from the workload's JWT bundle",
        async || {
            let bundles = client.fetch_jwt_bundles().await.ok()?;
            let td = spiffe::TrustDomain::new(TD).unwrap();
            let bundle = bundles.get(&td)?;
            (bundle.find_jwt_authority(&first).is_none()
                && bundle.find_jwt_authority(&next).is_some())
            .then_some(())
        },
    )
    .await;
    drop(agent);
}

/// Taint and revoke with several agents: every agent re-signs its
/// workload's SVID away from the tainted CA, and every workload's bundle
/// loses the revoked one.
#[tokio::test(flavor = "multi_thread")]
async fn taint_and_revoke_reach_every_agent() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let selector = format!("unix:uid:{}", my_uid());
    let mut agents = Vec::new();
    for n in 0..3 {
        let alias = format!("spiffe://example.org/node-{n}");
        let token = server.generate_token(Some(&alias)).unwrap();
        let agent = AgentHandle::start(
            &server,
            AgentOptions {
                join_token: Some(token),
                ..Default::default()
            },
        )
        .unwrap();
        let id = format!("spiffe://example.org/workload-{n}");
        server
            .create_entry(&[
                "-parentID",
                &alias,
                "-spiffeID",
                &id,
                "-selector",
                &selector,
            ])
            .unwrap();
        let client = WorkloadApiClient::connect_to(agent.endpoint())
            .await
            .unwrap();
        agents.push((agent, client, id));
    }
    let mut first_ca = None;
    for (_, client, id) in &agents {
        let (_, ca) = eventually("a first SVID", async || svid_and_issuer(client, id).await).await;
        first_ca = Some(ski(&ca));
    }
    let first_id = first_ca.unwrap();
    let next_id = id_of(
        &json(&server, &["localauthority", "x509", "prepare"]),
        "prepared_authority",
    );
    json(
        &server,
        &[
            "localauthority",
            "x509",
            "activate",
            "-authorityID",
            &next_id,
        ],
    );
    json(
        &server,
        &["localauthority", "x509", "taint", "-authorityID", &first_id],
    );
    for (_, client, id) in &agents {
        eventually("the SVID re-signed by the new CA", async || {
            svid_and_issuer(client, id)
                .await
                .filter(|(_, issuer)| ski(issuer) == next_id)
        })
        .await;
    }
    json(
        &server,
        &[
            "localauthority",
            "x509",
            "revoke",
            "-authorityID",
            &first_id,
        ],
    );
    for (_, client, _) in &agents {
        let bundle = eventually("the revoked CA gone", async || {
            let b = workload_bundle(client).await;
            (b.len() == 1).then_some(b)
        })
        .await;
        assert_eq!(ski(&bundle[0]), next_id);
    }
    drop(agents);
}
