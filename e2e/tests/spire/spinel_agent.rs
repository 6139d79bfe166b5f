//! Row (2): `spinel-agent` attests to SPIRE's server with a join token,
//! syncs entries and SVIDs from it, serves SPIRE's Workload API client,
//! and obeys SPIRE's ban (whose message says only "authorization denied
//! for method ...": the reason is in the status details).

use spinel_test_fixtures::process::poll;
use spinel_test_fixtures::spinel::READY_TIMEOUT;

use crate::support::{AgentHandle, AgentOptions};

use super::{assert_svid, my_uid_selector, pem_certs, spire, SpireServer, WorkloadCli};

const NODE: &str = "spiffe://example.org/spinel-node";
const WORKLOAD: &str = "spiffe://example.org/spinel-workload";

fn agent_options(token: String) -> AgentOptions {
    AgentOptions {
        join_token: Some(token),
        ..Default::default()
    }
}

#[test]
fn spinel_agent_attests_to_spire_and_serves_workloads() {
    let Some(spire) = spire() else { return };
    let server = SpireServer::start(&spire, "").unwrap();
    let token = server.generate_token(NODE).unwrap();
    server
        .create_entry(&[
            "-parentID",
            NODE,
            "-spiffeID",
            WORKLOAD,
            "-selector",
            &my_uid_selector(),
        ])
        .unwrap();
    let endpoint = server.endpoint().unwrap();
    let agent = AgentHandle::start_for(&endpoint, agent_options(token.clone())).unwrap();
    let roots = pem_certs(&endpoint.bundle_pem);

    let fetched = spire.wait_x509(&agent.socket_path, WORKLOAD).unwrap();
    assert_svid(&fetched, WORKLOAD, &roots);

    // A JWT-SVID signed by SPIRE's key, validated by the Spinel agent
    // against the JWT bundle it synced from SPIRE.
    let (id, jwt) = spire.fetch_jwt(&agent.socket_path, "interop").unwrap();
    assert_eq!(id, WORKLOAD);
    let valid = spire
        .validate_jwt(&agent.socket_path, "interop", &jwt)
        .unwrap()
        .ok()
        .unwrap();
    assert!(valid.stdout.contains("SVID is valid."), "{valid:?}");

    // SPIRE knows the agent by Spinel's attestation.
    let agent_id = format!("spiffe://example.org/spire/agent/join_token/{token}");
    let shown = server
        .cli(&["agent", "show", "-spiffeID", &agent_id])
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        shown.stdout.contains("Attestation type  : join_token"),
        "{shown:?}"
    );

    // A new entry reaches the agent through SPIRE's sync.
    let second = "spiffe://example.org/spinel-workload-2";
    server
        .create_entry(&[
            "-parentID",
            NODE,
            "-spiffeID",
            second,
            "-selector",
            &my_uid_selector(),
        ])
        .unwrap();
    let both = spire.wait_x509(&agent.socket_path, second).unwrap();
    assert_eq!(
        both.spiffe_ids(),
        vec![WORKLOAD.to_owned(), second.to_owned()]
    );
    assert!(!server.log().contains("level=error"), "{}", server.log());
}

/// Without reading SPIRE's `PermissionDeniedDetails`, a banned Spinel
/// agent cannot tell a ban from any other refusal and keeps serving the
/// SVIDs it has.
#[test]
fn a_spinel_agent_banned_by_spire_stops_serving() {
    let Some(spire) = spire() else { return };
    let server = SpireServer::start(&spire, "").unwrap();
    let token = server.generate_token(NODE).unwrap();
    server
        .create_entry(&[
            "-parentID",
            NODE,
            "-spiffeID",
            WORKLOAD,
            "-selector",
            &my_uid_selector(),
        ])
        .unwrap();
    let agent =
        AgentHandle::start_for(&server.endpoint().unwrap(), agent_options(token.clone())).unwrap();
    spire.wait_x509(&agent.socket_path, WORKLOAD).unwrap();

    let agent_id = format!("spiffe://example.org/spire/agent/join_token/{token}");
    server
        .cli(&["agent", "ban", "-spiffeID", &agent_id])
        .unwrap()
        .ok()
        .unwrap();
    poll(READY_TIMEOUT, "the banned agent to stop serving", || {
        Ok(spire.fetch_x509(&agent.socket_path).is_err().then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", agent.log()));
    assert!(
        agent.log().contains("the server says this agent is banned"),
        "{}",
        agent.log()
    );
}
