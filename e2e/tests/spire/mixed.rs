//! Row (4): one trust domain served by both agent kinds at once: a
//! `spinel-server` with a SPIRE agent and a Spinel agent. Workloads on
//! both get SVIDs that chain to the same bundle, and each agent validates
//! the JWT-SVIDs the other hands out.

use crate::support::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

use super::{assert_svid, my_uid_selector, pem_certs, spire, SpireAgent, WorkloadCli};

const SPIRE_NODE: &str = "spiffe://example.org/mixed/spire-node";
const SPINEL_NODE: &str = "spiffe://example.org/mixed/spinel-node";
const ON_SPIRE: &str = "spiffe://example.org/mixed/on-spire";
const ON_SPINEL: &str = "spiffe://example.org/mixed/on-spinel";

#[test]
fn one_trust_domain_served_by_spire_and_spinel_agents() {
    let Some(spire) = spire() else { return };
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let spire_token = server.generate_token(Some(SPIRE_NODE)).unwrap();
    let spinel_token = server.generate_token(Some(SPINEL_NODE)).unwrap();
    for (node, workload) in [(SPIRE_NODE, ON_SPIRE), (SPINEL_NODE, ON_SPINEL)] {
        server
            .create_entry(&[
                "-parentID",
                node,
                "-spiffeID",
                workload,
                "-selector",
                &my_uid_selector(),
            ])
            .unwrap();
    }
    let spire_agent = SpireAgent::start(&spire, &server.endpoint().unwrap(), &spire_token).unwrap();
    let spinel_agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(spinel_token),
            ..Default::default()
        },
    )
    .unwrap();
    let roots = pem_certs(&server.bundle_pem().unwrap());

    // Each agent serves only the workload entries of its own node, and
    // both hand out the server's bundle.
    let on_spire = spire.wait_x509(&spire_agent.socket_path, ON_SPIRE).unwrap();
    assert_svid(&on_spire, ON_SPIRE, &roots);
    let on_spinel = spire
        .wait_x509(&spinel_agent.socket_path, ON_SPINEL)
        .unwrap();
    assert_svid(&on_spinel, ON_SPINEL, &roots);
    assert_eq!(on_spire.bundle, on_spinel.bundle);

    // A JWT-SVID from either agent is valid at the other.
    let from_spire = spire.fetch_jwt(&spire_agent.socket_path, "mixed").unwrap();
    let from_spinel = spire.fetch_jwt(&spinel_agent.socket_path, "mixed").unwrap();
    assert_eq!(from_spire.0, ON_SPIRE);
    assert_eq!(from_spinel.0, ON_SPINEL);
    for (socket, (id, token)) in [
        (&spinel_agent.socket_path, &from_spire),
        (&spire_agent.socket_path, &from_spinel),
    ] {
        let out = spire
            .validate_jwt(socket, "mixed", token)
            .unwrap()
            .ok()
            .unwrap();
        assert!(out.stdout.contains(&format!("SPIFFE ID : {id}")), "{out:?}");
    }

    // The server lists both agents.
    let agents = server.cli(&["agent", "list"]).unwrap().ok().unwrap().stdout;
    assert!(agents.starts_with("Found 2 attested agents"), "{agents}");
}
