//! Row (1): SPIRE's agent attests to `spinel-server` with a join token,
//! serves workloads X509- and JWT-SVIDs that chain to Spinel's bundle,
//! renews its own SVID and its workloads' through Spinel, and obeys
//! Spinel's ban and eviction as it obeys SPIRE's (it reads the reason from
//! the `PermissionDeniedDetails` in the status details).

use std::time::Duration;

use crate::support::{ServerHandle, ServerOptions};

use super::{assert_svid, my_uid_selector, pem_certs, spire, SpireAgent, WorkloadCli};

const NODE: &str = "spiffe://example.org/spire-node";
const WORKLOAD: &str = "spiffe://example.org/spire-workload";

/// SPIRE's agent checks its SVID every 5 s; a sync round runs every 5 s.
const SPIRE_AGENT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn spire_agent_attests_to_spinel_and_serves_workloads() {
    let Some(spire) = spire() else { return };
    let server = ServerHandle::start(ServerOptions {
        // Short enough that the agent renews its SVID during the test.
        server_extra: "    agent_ttl = \"30s\"\n".into(),
        ..Default::default()
    })
    .unwrap();
    let token = server.generate_token(Some(NODE)).unwrap();
    server
        .create_entry(&[
            "-parentID",
            NODE,
            "-spiffeID",
            WORKLOAD,
            "-selector",
            &my_uid_selector(),
            "-x509SVIDTTL",
            "30",
        ])
        .unwrap();
    let mut agent = SpireAgent::start(&spire, &server.endpoint().unwrap(), &token).unwrap();
    let roots = pem_certs(&server.bundle_pem().unwrap());

    let first = spire.wait_x509(&agent.socket_path, WORKLOAD).unwrap();
    assert_svid(&first, WORKLOAD, &roots);

    let (id, jwt) = spire.fetch_jwt(&agent.socket_path, "interop").unwrap();
    assert_eq!(id, WORKLOAD);
    let valid = spire
        .validate_jwt(&agent.socket_path, "interop", &jwt)
        .unwrap()
        .ok()
        .unwrap();
    assert!(valid.stdout.contains("SVID is valid."), "{valid:?}");
    let wrong_audience = spire
        .validate_jwt(&agent.socket_path, "other", &jwt)
        .unwrap();
    assert!(!wrong_audience.success(), "{wrong_audience:?}");

    // Spinel lists the agent SPIRE's way.
    let agent_id = format!("spiffe://example.org/spire/agent/join_token/{token}");
    let listed = server
        .cli(&["agent", "show", "-spiffeID", &agent_id])
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        listed.stdout.contains("Attestation type  : join_token"),
        "{listed:?}"
    );

    // RenewAgent (agent SVID) and BatchNewX509SVID again (workload SVID)
    // at half their 30 s lives.
    agent
        .wait_for_log("Successfully rotated agent SVID", SPIRE_AGENT_TIMEOUT)
        .unwrap();
    agent
        .wait_for_log("Renewing X509-SVID", SPIRE_AGENT_TIMEOUT)
        .unwrap();
    let renewed = spire.wait_x509(&agent.socket_path, WORKLOAD).unwrap();
    assert_svid(&renewed, WORKLOAD, &roots);
    assert_ne!(
        renewed.chain[0], first.chain[0],
        "the workload SVID was not renewed"
    );
    // Still the agent's current SVID as far as Spinel is concerned.
    let after = spire.wait_x509(&agent.socket_path, WORKLOAD).unwrap();
    assert_svid(&after, WORKLOAD, &roots);
    assert!(!agent.log().contains("level=error"), "{}", agent.log());
}

/// Without SPIRE's `PermissionDeniedDetails` on Spinel's refusals, a
/// banned or evicted SPIRE agent logs errors and keeps serving the SVIDs
/// it has until they expire.
#[test]
fn spire_agents_shut_down_when_spinel_bans_or_evicts_them() {
    let Some(spire) = spire() else { return };
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let endpoint = server.endpoint().unwrap();
    let mut agents = Vec::new();
    for action in ["ban", "evict"] {
        let node = format!("{NODE}-{action}");
        let token = server.generate_token(Some(&node)).unwrap();
        let workload = format!("{WORKLOAD}-{action}");
        server
            .create_entry(&[
                "-parentID",
                &node,
                "-spiffeID",
                &workload,
                "-selector",
                &my_uid_selector(),
            ])
            .unwrap();
        let agent = SpireAgent::start(&spire, &endpoint, &token).unwrap();
        spire.wait_x509(&agent.socket_path, &workload).unwrap();
        agents.push((action, token, agent));
    }
    for (action, token, _) in &agents {
        let agent_id = format!("spiffe://example.org/spire/agent/join_token/{token}");
        server
            .cli(&["agent", action, "-spiffeID", &agent_id])
            .unwrap()
            .ok()
            .unwrap();
    }
    for (action, _, agent) in &mut agents {
        agent.wait_exit(SPIRE_AGENT_TIMEOUT).unwrap();
        let expected = match *action {
            "ban" => "Agent is banned: removing SVID and shutting down",
            // A join token cannot be used twice: re-attestation fails.
            _ => "Agent needs to re-attest; will attempt to re-attest",
        };
        assert!(agent.log().contains(expected), "{action}: {}", agent.log());
    }
}
