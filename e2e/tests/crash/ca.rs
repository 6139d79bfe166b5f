//! `kill -9` of a real server between the steps of a CA change: on the very
//! first start (keys stored / journal written / bundle published), inside
//! `localauthority prepare` (previous prepared withdrawn / new key stored /
//! journal written), inside `activate` (journal written, bundle not yet
//! published) and after the journal write of `taint` and `revoke`. The restarted server's bundle holds every authority that
//! signed an SVID still valid, `localauthority show` names only authorities
//! whose keys are there, and the operation runs again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use crate::support::crash::*;
use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

#[test]
fn first_start_killed_between_its_steps() {
    if !failpoints_compiled() {
        return;
    }
    for point in [
        "ca:create:x509-key-stored",
        "ca:create:keys-stored",
        "ca:start:journal-written",
    ] {
        let mut server = ServerHandle::configure(ServerOptions::default()).unwrap();
        server.spawn_process_with_env(&pause_env(point)).unwrap();
        kill_at(&mut server, point);
        server.start_process().unwrap();
        let b = bundle(&server);
        assert_eq!(b.x509_authorities.len(), 1, "{point}");
        assert_eq!(b.jwt_authorities.len(), 1, "{point}");
        let x509 = json(&server, &["localauthority", "x509", "show"]);
        assert_eq!(id_of(&x509, "active"), Some(ski(&b.x509_authorities[0])));
        assert!(id_of(&x509, "prepared").is_none(), "{point}: {x509}");
        check_consistent_and_rotate(&server, &mut Minted::default());
    }
}

/// `localauthority <kind> prepare` killed at `point`; `already_prepared`
/// runs one prepare before. Returns what `show` reports as prepared after
/// the restart, and what was prepared before.
fn prepare_killed_at(
    kind: &str,
    point: &str,
    already_prepared: bool,
) -> (ServerHandle, Minted, Option<String>, Option<String>) {
    let mut server = ServerHandle::start(ServerOptions::default()).unwrap();
    let mut minted = Minted::default();
    minted.mint(&server);
    let before = already_prepared
        .then(|| {
            id_of(
                &json(&server, &["localauthority", kind, "prepare"]),
                "prepared_authority",
            )
        })
        .flatten();
    let out = crash_during(&mut server, point, &["localauthority", kind, "prepare"]);
    assert!(
        !out.success(),
        "prepare answered although killed: {}",
        out.stdout
    );
    let after = id_of(
        &json(&server, &["localauthority", kind, "show"]),
        "prepared",
    );
    (server, minted, before, after)
}

#[test]
fn prepare_again_killed_after_the_previous_was_withdrawn() {
    if !failpoints_compiled() {
        return;
    }
    for kind in ["x509", "jwt"] {
        let (server, mut minted, before, after) =
            prepare_killed_at(kind, "ca:prepare:previous-withdrawn", true);
        assert!(before.is_some());
        assert_eq!(after, None, "{kind}: the withdrawal was journaled");
        check_consistent_and_rotate(&server, &mut minted);
    }
}

#[test]
fn prepare_again_killed_after_the_new_key_was_stored() {
    if !failpoints_compiled() {
        return;
    }
    // The new key overwrote the slot of the prepared authority the journal
    // named before the withdrawal; the server must start all the same.
    for kind in ["x509", "jwt"] {
        let (server, mut minted, before, after) =
            prepare_killed_at(kind, "ca:prepare:key-stored", true);
        assert!(before.is_some());
        assert_eq!(after, None, "{kind}: nothing journaled with the new key");
        check_consistent_and_rotate(&server, &mut minted);
    }
}

#[test]
fn prepare_killed_after_the_journal_was_written() {
    if !failpoints_compiled() {
        return;
    }
    for kind in ["x509", "jwt"] {
        let (server, mut minted, _, after) =
            prepare_killed_at(kind, "ca:prepare:journal-written", false);
        // Journaled, so it is prepared after the restart, and the restart
        // published it (check_consistent_and_rotate looks for it in the
        // bundle and activates it).
        assert!(after.is_some(), "{kind}: the journaled prepare was lost");
        check_consistent_and_rotate(&server, &mut minted);
    }
}

#[test]
fn jwt_activate_killed_after_the_journal_was_written() {
    if !failpoints_compiled() {
        return;
    }
    let mut server = ServerHandle::start(ServerOptions::default()).unwrap();
    let mut minted = Minted::default();
    minted.mint(&server);
    let first = id_of(&json(&server, &["localauthority", "jwt", "show"]), "active").unwrap();
    let next = id_of(
        &json(&server, &["localauthority", "jwt", "prepare"]),
        "prepared_authority",
    )
    .unwrap();
    crash_during(
        &mut server,
        "ca:activate:journal-written",
        &["localauthority", "jwt", "activate", "-authorityID", &next],
    );
    let state = json(&server, &["localauthority", "jwt", "show"]);
    assert_eq!(id_of(&state, "active"), Some(next), "{state}");
    assert_eq!(id_of(&state, "old"), Some(first), "{state}");
    // The JWT-SVID signed by the old key still verifies.
    check_consistent_and_rotate(&server, &mut minted);
}

const AGENT_ALIAS: &str = "spiffe://example.org/myagent";

/// The SPIFFE ID's current SVID as the workload sees it: (leaf DER, the CA
/// of the workload's own bundle that signed it).
async fn workload_svid(client: &WorkloadApiClient, id: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let svids = client.fetch_all_x509_svids().await.ok()?;
    let svid = svids
        .into_iter()
        .find(|s| s.spiffe_id().to_string() == id)?;
    let leaf = svid.leaf().as_bytes().to_vec();
    let bundles = client.fetch_x509_bundles().await.ok()?;
    let own = bundles.get(&spiffe::TrustDomain::new(TD).ok()?)?;
    let mut bundle = spinel_spiffe::TrustBundle::new(spinel_spiffe::TrustDomain::new(TD).ok()?);
    bundle.x509_authorities = own
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let issuer = issuer_in(&bundle, &leaf)?.to_vec();
    Some((leaf, issuer))
}

/// An entry for this test process (`unix:uid`) under the agent.
fn entry(server: &ServerHandle, id: &str) {
    let selector = format!("unix:uid:{}", my_uid());
    server
        .create_entry(&[
            "-parentID",
            AGENT_ALIAS,
            "-spiffeID",
            id,
            "-selector",
            &selector,
        ])
        .unwrap();
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn x509_activate_killed_after_the_journal_was_written_keeps_the_workload_trusted() {
    if !failpoints_compiled() {
        return;
    }
    let mut server = ServerHandle::start(ServerOptions::default()).unwrap();
    let token = server.generate_token(Some(AGENT_ALIAS)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    entry(&server, "spiffe://example.org/before");
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let (before_leaf, first_ca) = eventually("the first SVID", async || {
        workload_svid(&client, "spiffe://example.org/before").await
    })
    .await;
    let first = ski(&first_ca);
    let next = id_of(
        &json(&server, &["localauthority", "x509", "prepare"]),
        "prepared_authority",
    )
    .unwrap();

    let point = "ca:activate:journal-written";
    let args = ["localauthority", "x509", "activate", "-authorityID", &next];
    tokio::task::block_in_place(|| crash_during(&mut server, point, &args));

    let state = json(&server, &["localauthority", "x509", "show"]);
    assert_eq!(
        id_of(&state, "active").as_deref(),
        Some(next.as_str()),
        "{state}"
    );
    assert_eq!(
        id_of(&state, "old").as_deref(),
        Some(first.as_str()),
        "{state}"
    );
    // The SVID the workload holds, signed by the CA that is now old, still
    // verifies against the restarted server's bundle.
    let b = bundle(&server);
    assert_eq!(issuer_in(&b, &before_leaf).map(ski), Some(first.clone()));
    // The agent comes back to the restarted server: a new entry is signed by
    // the activated CA, and the workload's bundle verifies both SVIDs.
    entry(&server, "spiffe://example.org/after");
    let (_, issuer) = eventually("an SVID from the activated CA", async || {
        workload_svid(&client, "spiffe://example.org/after").await
    })
    .await;
    assert_eq!(ski(&issuer), next);
    let (_, issuer) = workload_svid(&client, "spiffe://example.org/before")
        .await
        .unwrap();
    assert_eq!(ski(&issuer), first);
    tokio::task::block_in_place(|| check_consistent_and_rotate(&server, &mut Minted::default()));
    drop(agent);
}

/// `localauthority <kind> <op> -authorityID <id>` killed after its journal
/// write; after the restart the operation is done (or can be done again).
fn op_killed_after_journal(server: &mut ServerHandle, kind: &str, op: &str, id: &str) {
    let point = format!("ca:{op}:journal-written");
    let out = crash_during(
        server,
        &point,
        &["localauthority", kind, op, "-authorityID", id],
    );
    assert!(!out.success(), "{op} answered although killed");
    let again = server
        .cli(&["localauthority", kind, op, "-authorityID", id])
        .unwrap();
    match op {
        // Journaled, so done: tainting again says so.
        "taint" => assert!(
            !again.success() && again.stderr.contains("already tainted"),
            "{kind}: the journaled taint was lost: {}{}",
            again.stdout,
            again.stderr
        ),
        // Journaled, so the authority is gone: nothing old is left to revoke.
        _ => assert!(!again.success(), "{kind}: the journaled revoke was lost"),
    }
}

#[test]
fn taint_and_revoke_killed_after_the_journal_was_written() {
    if !failpoints_compiled() {
        return;
    }
    for kind in ["x509", "jwt"] {
        let mut server = ServerHandle::start(ServerOptions::default()).unwrap();
        let first = id_of(&json(&server, &["localauthority", kind, "show"]), "active").unwrap();
        let next = id_of(
            &json(&server, &["localauthority", kind, "prepare"]),
            "prepared_authority",
        )
        .unwrap();
        activate(&server, kind, &next);
        // What the new authority signs must survive both crashes.
        let mut minted = Minted::default();
        minted.mint(&server);

        op_killed_after_journal(&mut server, kind, "taint", &first);
        let b = bundle(&server);
        let in_bundle = |b: &spinel_spiffe::TrustBundle, id: &str| match kind {
            "x509" => b.x509_authorities.iter().any(|ca| ski(ca) == id),
            _ => b.jwt_authorities.iter().any(|k| k.key_id == id),
        };
        assert!(in_bundle(&b, &first), "{kind}: tainted is still trusted");

        op_killed_after_journal(&mut server, kind, "revoke", &first);
        let b = bundle(&server);
        assert!(
            !in_bundle(&b, &first),
            "{kind}: the revoked authority is still in the bundle after the restart"
        );
        let state = json(&server, &["localauthority", kind, "show"]);
        assert!(id_of(&state, "old").is_none(), "{kind}: {state}");
        assert_eq!(id_of(&state, "active").as_deref(), Some(next.as_str()));
        check_consistent_and_rotate(&server, &mut minted);
    }
}
