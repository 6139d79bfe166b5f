//! Envoy SDS v3 on the agent's Workload API socket, driven by a client
//! built on go-control-plane's generated Envoy API (`interop/envoy-sds/`):
//! `FetchSecrets` for a caller without entries (bundles yes, a certificate
//! no, as SPIRE answers), `FetchSecrets` of everything, one
//! `StreamSecrets` with every kind of name (the default SVID, the default
//! bundle, all bundles, the trust domain ID, the SPIFFE ID) whose
//! certificates and keys parse and match, ACKed, with a stale ACK in
//! between, and then a rotation pushed on the open stream; `DeltaSecrets`
//! is `Unimplemented`. A second agent with `disable_spiffe_cert_validation`
//! sends plain `trusted_ca` bundles and refuses `"ALL"`, as SPIRE does.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

use super::{run_peer, Domain, Peer, PeerOutput};

const ID: &str = "spiffe://example.org/envoy";
const SPIFFE_VALIDATOR: &str = "envoy.tls.cert_validator.spiffe";
const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

fn sds(out: &Path, socket: &str, args: &[&str]) -> PeerOutput {
    let mut all = vec![args[0], socket];
    all.extend_from_slice(&args[1..]);
    run_peer(&out.join("envoy-sds/envoy-sds"), &all, &[])
}

/// `FetchSecrets`, retried while the agent is not ready yet.
fn fetch(out: &Path, socket: &str, names: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut args = vec!["fetch"];
        args.extend_from_slice(names);
        let json = sds(out, socket, &args).json();
        if json["code"] != "Unavailable" || Instant::now() > deadline {
            return json;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn resources(response: &Value) -> &Vec<Value> {
    response["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources: {response}"))
}

fn names(response: &Value) -> Vec<&str> {
    resources(response)
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

fn resource<'a>(response: &'a Value, name: &str) -> &'a Value {
    resources(response)
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no resource {name}: {response}"))
}

/// A SPIFFE validator over exactly `tds`, each with at least one CA.
fn assert_spiffe_validator(r: &Value, tds: &[&str]) {
    assert_eq!(r["kind"], "spiffe_validator", "{r}");
    assert_eq!(r["validator"], SPIFFE_VALIDATOR, "{r}");
    let got = r["trust_domains"].as_object().unwrap();
    let mut keys: Vec<&str> = got.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, tds, "{r}");
    assert!(got.values().all(|n| n.as_u64() >= Some(1)), "{r}");
}

fn assert_certificate(r: &Value, id: &str) {
    assert_eq!(r["kind"], "tls_certificate", "{r}");
    assert_eq!(r["spiffe_id"], id, "{r}");
    assert_eq!(r["key_matches"], true, "{r}");
    assert!(r["chain"].as_u64() >= Some(1), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_sds_stream_fetch_and_rotation_push() {
    let Some(out) = Peer::EnvoySds.built() else {
        return;
    };
    let td = Domain::start("example.org", false);
    let socket = td.socket();

    // No entry yet: the bundle is served, a certificate is not.
    let bundle_only = fetch(&out, &socket, &["ROOTCA"]);
    assert_eq!(names(&bundle_only), ["ROOTCA"], "{bundle_only}");
    assert_spiffe_validator(&bundle_only["resources"][0], &["example.org"]);
    let refused = fetch(&out, &socket, &["default"]);
    assert_eq!(refused["code"], "InvalidArgument", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("not authorized for the requested identities"),
        "{refused}"
    );

    // A 20 s SVID: renewed at about half its life while the stream is open.
    td.register_me(ID, &["-x509SVIDTTL", "20"]);
    td.wait_for_svid(ID).await;

    let everything = fetch(&out, &socket, &[]);
    assert_eq!(everything["version"], "", "FetchSecrets has no version");
    assert_eq!(everything["nonce"], "", "FetchSecrets has no nonce");
    assert_eq!(everything["type_url"], SECRET_TYPE);
    assert_eq!(
        names(&everything),
        ["spiffe://example.org", ID],
        "no names: every trust domain and SPIFFE ID, no default names"
    );
    assert_certificate(resource(&everything, ID), ID);

    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let stream = {
        let (out, socket, ready) = (out.clone(), socket.clone(), ready.clone());
        std::thread::spawn(move || {
            sds(
                &out,
                &socket,
                &[
                    "stream",
                    ready.to_str().unwrap(),
                    "60s",
                    "default",
                    "ROOTCA",
                    "ALL",
                    "spiffe://example.org",
                    ID,
                ],
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() && !stream.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the stream never got its first response"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stream = stream.join().unwrap().json();
    let first = &stream["first"];
    assert_eq!(first["version"], "1", "{stream}");
    assert_eq!(
        first["nonce"].as_str().map(str::is_empty),
        Some(false),
        "{stream}"
    );
    assert_eq!(first["type_url"], SECRET_TYPE);
    assert_eq!(
        names(first),
        ["spiffe://example.org", "ROOTCA", "ALL", ID, "default"],
        "{stream}"
    );
    for name in ["spiffe://example.org", "ROOTCA", "ALL"] {
        assert_spiffe_validator(resource(first, name), &["example.org"]);
    }
    assert_certificate(resource(first, ID), ID);
    assert_certificate(resource(first, "default"), ID);
    assert_eq!(
        resource(first, ID)["serial"],
        resource(first, "default")["serial"]
    );

    // The rotation, pushed on the open stream after the ACK (the stale ACK
    // before it was ignored: a reply to it would have been version 1).
    let push = &stream["push"];
    assert!(
        push.is_object(),
        "no push within 60 s: {stream}\nagent log:\n{}",
        td.agent.log()
    );
    assert_eq!(push["version"], "2", "{stream}");
    assert_ne!(push["nonce"], first["nonce"], "{stream}");
    assert_eq!(names(push), names(first), "{stream}");
    assert_certificate(resource(push, ID), ID);
    assert_ne!(
        resource(push, ID)["serial"],
        resource(first, ID)["serial"],
        "a new certificate: {stream}"
    );

    let delta = sds(&out, &socket, &["delta"]).json();
    assert_eq!(delta["code"], "Unimplemented", "{delta}");
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_sds_plain_validator_when_disabled() {
    let Some(out) = Peer::EnvoySds.built() else {
        return;
    };
    let server = ServerHandle::start(ServerOptions {
        trust_domain: "example.org".into(),
        ..Default::default()
    })
    .unwrap();
    let token = server
        .generate_token(Some("spiffe://example.org/node"))
        .unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            agent_extra: "    sds {\n        default_bundle_name = \"bundle\"\n        disable_spiffe_cert_validation = true\n    }\n".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let socket = agent.socket_path.display().to_string();

    let plain = fetch(&out, &socket, &["bundle", "spiffe://example.org"]);
    assert_eq!(names(&plain), ["spiffe://example.org", "bundle"], "{plain}");
    for r in resources(&plain) {
        assert_eq!(r["kind"], "trusted_ca", "{plain}");
        assert!(r["certs"].as_u64() >= Some(1), "{plain}");
    }
    // "ALL" needs the SPIFFE validator.
    let all = fetch(&out, &socket, &["ALL"]);
    assert_eq!(all["code"], "Internal", "{all}");
    // The old default name is just an unknown name here.
    let root = fetch(&out, &socket, &["ROOTCA"]);
    assert_eq!(root["code"], "InvalidArgument", "{root}");
}
