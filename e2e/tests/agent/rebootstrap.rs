//! A server the agent's stored bundle no longer trusts, with real server
//! and agent processes: the server is reinstalled (new data directory, so a
//! new CA) while the agent runs, as after a lost volume or an outage that
//! outlived every CA the agent knew.
//!
//! - `rebootstrap_mode = "auto"` (k8s_psat agent): after `rebootstrap_delay`
//!   the agent bootstraps again from the refreshed `trust_bundle_path` and
//!   its workload gets an SVID from the new CA, without a restart.
//! - `never` (default, join_token agent): the agent keeps serving its still
//!   valid SVID, keeps its bundle, and logs what to do; doing it works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use spiffe::{TrustDomain, WorkloadApiClient, X509Context};
use spinel_test_fixtures::k8s::{
    ApiServerOptions, FakeApiServer, NodeBuilder, PodBuilder, ServiceAccountToken,
};
use spinel_test_fixtures::process::{my_uid, write_file};
use spinel_test_fixtures::x509::verify_chain;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

use crate::support::psat::{register_cluster_workload, start_agent_with, start_server};

const WORKLOAD: &str = "spiffe://example.org/workload";

/// The DER X.509 authorities of `ctx`'s own bundle.
fn authorities(ctx: &X509Context) -> BTreeSet<Vec<u8>> {
    let td = TrustDomain::new("example.org").unwrap();
    ctx.bundle_set()
        .get(&td)
        .map(|b| {
            b.authorities()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect()
        })
        .unwrap_or_default()
}

/// The DER certificates of a PEM bundle.
fn pem_roots(pem: &str) -> BTreeSet<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

/// Whether the workload SVID of `ctx` chains to `ctx`'s bundle, as a TLS
/// peer would check it.
fn chains_to_bundle(ctx: &X509Context) -> bool {
    let Some(svid) = ctx
        .svids()
        .iter()
        .find(|s| s.spiffe_id().to_string() == WORKLOAD)
    else {
        return false;
    };
    let chain: Vec<Vec<u8>> = svid
        .cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let roots: Vec<Vec<u8>> = authorities(ctx).into_iter().collect();
    verify_chain(&chain, &roots).is_ok()
}

/// Waits (bounded) for a context with the workload's SVID passing `check`.
async fn wait_for_context(
    agent: &AgentHandle,
    what: &str,
    check: impl Fn(&X509Context) -> bool,
) -> X509Context {
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(ctx) = client.fetch_x509_context().await {
            if ctx
                .svids()
                .iter()
                .any(|s| s.spiffe_id().to_string() == WORKLOAD)
                && check(&ctx)
            {
                return ctx;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} within 90 s\nagent log:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops the server, deletes its data (CA keys, datastore) and starts it
/// again on the same config and port: a new CA the agent has never seen.
fn reinstall(server: &mut ServerHandle) {
    server.stop().unwrap();
    std::fs::remove_dir_all(server.dir.path().join("data")).unwrap();
    server.start_process().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn psat_agent_rebootstraps_from_the_refreshed_bundle_after_the_delay() {
    let api = FakeApiServer::start(ApiServerOptions {
        validate_bound_pods: true,
        ..ApiServerOptions::default()
    })
    .unwrap();
    let node = NodeBuilder::new("node-1");
    let pod = PodBuilder::new("spire", "spire-agent-7fz2q")
        .service_account("spire-agent")
        .node_name("node-1")
        .host_ip("10.0.0.7");
    api.add_node(node.build());
    api.add_pod(pod.build());
    let work = tempfile::Builder::new()
        .prefix("spinel-rebootstrap")
        .tempdir_in("/tmp")
        .unwrap();
    let kubeconfig = work.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).unwrap();
    let mut server = start_server(&kubeconfig, "10m");
    let token_path = work.path().join("spire-agent-token");
    let token = api
        .add_service_account_token(
            ServiceAccountToken::for_pod(&pod.build()).node("node-1", node.node_uid()),
        )
        .unwrap();
    std::fs::write(&token_path, &token).unwrap();
    let agent_dir = tempfile::Builder::new()
        .prefix("spinel-agt")
        .tempdir_in("/tmp")
        .unwrap();
    let mut agent = start_agent_with(
        &server,
        &token_path,
        agent_dir,
        "    rebootstrap_mode = \"auto\"\n    rebootstrap_delay = \"3s\"",
    );
    let pid = agent.process.as_ref().and_then(|p| p.pid());
    register_cluster_workload(&server, WORKLOAD);
    let before = wait_for_context(&agent, "a first SVID", chains_to_bundle).await;
    let old_roots = authorities(&before);

    reinstall(&mut server);
    register_cluster_workload(&server, WORKLOAD);
    let new_roots = pem_roots(&server.bundle_pem().unwrap());
    assert!(
        old_roots.is_disjoint(&new_roots),
        "the reinstall made a new CA"
    );
    // The operator (or the ConfigMap the agent's DaemonSet mounts)
    // refreshes the bootstrap bundle.
    write_file(
        &agent.dir.path().join("bootstrap.pem"),
        &server.bundle_pem().unwrap(),
    )
    .unwrap();

    wait_for_new_ca(&agent, &server).await;
    let log = agent.log();
    let waited = log.find("rebootstrap_in").expect("the delay was announced");
    let done = log.find("rebootstrapped").expect("rebootstrapped");
    assert!(waited < done, "{log}");
    let process = agent.process.as_mut().unwrap();
    assert!(process.is_running(), "{log}");
    assert_eq!(process.pid(), pid, "no restart");
    assert_eq!(
        pem_roots(&String::from_utf8_lossy(
            &std::fs::read(agent.dir.path().join("bootstrap.pem")).unwrap()
        )),
        new_roots
    );
}

const NODE: &str = "spiffe://example.org/node";

/// The workload's entry under the join-token agent's alias.
fn workload_entry(server: &ServerHandle) {
    server
        .create_entry(&[
            "-parentID",
            NODE,
            "-spiffeID",
            WORKLOAD,
            "-selector",
            &format!("unix:uid:{}", my_uid()),
            "-x509SVIDTTL",
            "3600",
        ])
        .unwrap();
}

/// A server, a join-token agent aliased `NODE` and the workload's entry;
/// returns the (spent) token too.
fn join_token_domain(server_extra: &str, agent_extra: &str) -> (ServerHandle, AgentHandle, String) {
    let server = ServerHandle::start(ServerOptions {
        server_extra: server_extra.into(),
        ..Default::default()
    })
    .unwrap();
    let token = server.generate_token(Some(NODE)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token.clone()),
            agent_extra: agent_extra.into(),
            ..Default::default()
        },
    )
    .unwrap();
    workload_entry(&server);
    (server, agent, token)
}

/// What an operator does for a join-token agent of a reinstalled server:
/// a new token in the agent's config, the server's bundle in
/// `trust_bundle_path`, the workload registered again.
fn new_token_and_bundle(server: &ServerHandle, agent: &AgentHandle, old_token: &str) {
    let fresh = server.generate_token(Some(NODE)).unwrap();
    let config = std::fs::read_to_string(&agent.config_path).unwrap();
    write_file(&agent.config_path, &config.replace(old_token, &fresh)).unwrap();
    write_file(
        &agent.dir.path().join("bootstrap.pem"),
        &server.bundle_pem().unwrap(),
    )
    .unwrap();
    workload_entry(server);
}

/// Waits for the workload's SVID from `server`'s current CA.
async fn wait_for_new_ca(agent: &AgentHandle, server: &ServerHandle) {
    let new_roots = pem_roots(&server.bundle_pem().unwrap());
    wait_for_context(agent, "an SVID from the reinstalled server", |ctx| {
        authorities(ctx) == new_roots && chains_to_bundle(ctx)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_rebootstrap_the_agent_keeps_serving_and_says_what_to_do() {
    let (mut server, mut agent, token) = join_token_domain("", "");
    let before = wait_for_context(&agent, "a first SVID", chains_to_bundle).await;
    let stored_bundle = agent.dir.path().join("data/bundle.der");
    let bundle_before = std::fs::read(&stored_bundle).unwrap();

    reinstall(&mut server);
    agent
        .process
        .as_mut()
        .unwrap()
        .wait_for_log(
            "does not chain to the agent's trust bundle",
            Duration::from_secs(90),
        )
        .unwrap();
    let log = agent.log();
    assert!(
        log.contains("bundle.der") && log.contains("rebootstrap_mode"),
        "{log}"
    );
    assert!(!log.contains("rebootstrapped"), "{log}");
    // Still serving the SVID it had, and the bundle is untouched.
    let now = wait_for_context(&agent, "the cached SVID", |_| true).await;
    assert_eq!(
        now.svids()[0].cert_chain()[0].as_bytes(),
        before.svids()[0].cert_chain()[0].as_bytes()
    );
    assert_eq!(std::fs::read(&stored_bundle).unwrap(), bundle_before);

    // What the log says to do: refresh trust_bundle_path, delete the stored
    // bundle, restart (a join-token agent with a new token). The stored
    // agent SVID, from the old CA, is set aside by itself.
    agent.stop().unwrap();
    std::fs::remove_file(&stored_bundle).unwrap();
    new_token_and_bundle(&server, &agent, &token);
    agent.start_process().unwrap();
    wait_for_new_ca(&agent, &server).await;
    assert!(
        agent
            .log()
            .contains("the stored agent SVID was not issued by a CA of the trust bundle"),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restarted_with_an_expired_svid_and_a_stale_bundle_it_bootstraps_again() {
    let (mut server, mut agent, token) = join_token_domain(
        "    agent_ttl = \"12s\"",
        "    rebootstrap_mode = \"auto\"\n    rebootstrap_delay = \"2s\"",
    );
    wait_for_context(&agent, "a first SVID", chains_to_bundle).await;

    // A long outage: the agent is down until its SVID has expired, and the
    // server comes back reinstalled. The operator gives a new token and
    // refreshes trust_bundle_path, nothing else: data_dir is left as is.
    agent.stop().unwrap();
    let svid = std::fs::read(agent.dir.path().join("data/agent_svid.der")).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&svid).unwrap();
    let expiry = u64::try_from(leaf.validity().not_after.timestamp()).unwrap();
    reinstall(&mut server);
    new_token_and_bundle(&server, &agent, &token);
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= expiry
    {
        std::thread::sleep(Duration::from_millis(200));
    }

    // A write the crash of some earlier run cut short: its temporary file
    // may hold a whole key, and the restarted agent removes it.
    let interrupted = agent.dir.path().join("data/.agent_svid.key.tmp99999");
    std::fs::write(&interrupted, b"half a key").unwrap();
    agent.start_process().unwrap();
    assert!(!interrupted.exists(), "{}", agent.log());
    wait_for_new_ca(&agent, &server).await;
    let log = agent.log();
    assert!(log.contains("the stored agent SVID has expired"), "{log}");
    assert!(log.contains("rebootstrap_in"), "{log}");
    assert!(log.contains("rebootstrapped"), "{log}");
}

#[test]
fn rebootstrap_flags_are_checked_like_the_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("agent.conf");
    write_file(
        &conf,
        "agent {\n    trust_domain = \"example.org\"\n    server_address = \"127.0.0.1\"\n    data_dir = \"/nonexistent\"\n    trust_bundle_path = \"/nonexistent/b.pem\"\n}\nplugins {\n    KeyManager \"memory\" {\n        plugin_data {}\n    }\n    NodeAttestor \"join_token\" {\n        plugin_data {}\n    }\n}\n",
    )
    .unwrap();
    let run = |flags: &[&str]| {
        let mut args = vec!["run", "-config", conf.to_str().unwrap()];
        args.extend_from_slice(flags);
        let out = spinel_test_fixtures::spinel::run_cli(
            &spinel_test_fixtures::bin_path("spinel-agent"),
            &args,
        )
        .unwrap();
        assert!(!out.success(), "{flags:?} must be refused");
        out.stderr
    };
    let err = run(&["-rebootstrapDelay", "soon"]);
    assert!(err.contains("rebootstrapDelay"), "{err}");
    let err = run(&["-rebootstrapMode", "sometimes"]);
    assert!(
        err.contains("rebootstrap_mode") && err.contains("sometimes"),
        "{err}"
    );
    let err = run(&["-rebootstrapMode", "auto", "-insecureBootstrap"]);
    assert!(
        err.contains("rebootstrap_mode") && err.contains("insecure_bootstrap"),
        "{err}"
    );
}
