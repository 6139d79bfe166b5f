//! End to end: `UpstreamAuthority "disk"`. The server's CA is an
//! intermediate signed by the upstream key; workload SVID chains carry it;
//! the bundle holds only the upstream root, so rotating the intermediate
//! leaves the trust anchor alone. Bad files stop the server with an error
//! naming the file.
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
use spiffe::WorkloadApiClient;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};
use x509_parser::prelude::parse_x509_certificate;

const AGENT_ALIAS: &str = "spiffe://example.org/myagent";

struct Upstream {
    dir: tempfile::TempDir,
    root_der: Vec<u8>,
}

impl Upstream {
    fn cert(&self) -> PathBuf {
        self.dir.path().join("upstream.crt")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("upstream.key")
    }
}

/// A self-signed upstream root CA in PEM files.
fn upstream(ca: bool) -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Upstream Root");
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    }
    let cert = params.self_signed(&key).unwrap();
    let up = Upstream {
        dir,
        root_der: cert.der().to_vec(),
    };
    std::fs::write(up.cert(), cert.pem()).unwrap();
    std::fs::write(up.key(), key.serialize_pem()).unwrap();
    up
}

fn plugin(cert: &Path, key: &Path) -> String {
    format!(
        "    UpstreamAuthority \"disk\" {{\n        plugin_data {{\n            cert_file_path = \"{}\"\n            key_file_path = \"{}\"\n        }}\n    }}\n",
        cert.display(),
        key.display()
    )
}

fn verifies(child: &[u8], parent: &[u8]) -> bool {
    let (_, c) = parse_x509_certificate(child).unwrap();
    let (_, p) = parse_x509_certificate(parent).unwrap();
    c.verify_signature(Some(p.public_key())).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn svid_chains_carry_the_intermediate_and_the_bundle_holds_the_root() {
    let up = upstream(true);
    let server = ServerHandle::start(ServerOptions {
        plugins_extra: plugin(&up.cert(), &up.key()),
        ..Default::default()
    })
    .unwrap();
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
            "spiffe://example.org/w",
            "-selector",
            &format!("unix:uid:{}", my_uid()),
        ])
        .unwrap();
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let svid = loop {
        if let Ok(svids) = client.fetch_all_x509_svids().await {
            if let Some(s) = svids.into_iter().next() {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "no SVID within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let chain: Vec<Vec<u8>> = svid
        .cert_chain()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    assert_eq!(chain.len(), 2, "leaf and the Spinel intermediate");
    assert!(verifies(&chain[0], &chain[1]));
    assert!(verifies(&chain[1], &up.root_der));

    let bundles = client.fetch_x509_bundles().await.unwrap();
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let roots: Vec<Vec<u8>> = bundles
        .get(&td)
        .unwrap()
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    assert_eq!(roots, vec![up.root_der.clone()]);

    // Rotating the intermediate keeps the trust anchor.
    let prepared = server
        .cli(&["localauthority", "x509", "prepare", "-output", "json"])
        .unwrap()
        .ok()
        .unwrap();
    let prepared: serde_json::Value = serde_json::from_str(&prepared.stdout).unwrap();
    let upstream_id = prepared["prepared_authority"]["upstream_authority_subject_key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!upstream_id.is_empty(), "{prepared}");
    let id = prepared["prepared_authority"]["authority_id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .cli(&["localauthority", "x509", "activate", "-authorityID", &id])
        .unwrap()
        .ok()
        .unwrap();
    let pem = server.bundle_pem().unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 1, "{pem}");
    // Local X.509 authorities cannot be tainted under an upstream.
    let state = server
        .cli(&["localauthority", "x509", "show", "-output", "json"])
        .unwrap()
        .ok()
        .unwrap();
    let state: serde_json::Value = serde_json::from_str(&state.stdout).unwrap();
    let old = state["old"]["authority_id"].as_str().unwrap().to_owned();
    let out = server
        .cli(&["localauthority", "x509", "taint", "-authorityID", &old])
        .unwrap();
    assert!(
        !out.success() && out.stderr.contains("UpstreamAuthority"),
        "{}",
        out.stderr
    );
    drop(agent);
}

fn start_err(plugins_extra: String) -> String {
    let err = ServerHandle::start(ServerOptions {
        plugins_extra,
        ..Default::default()
    })
    .unwrap_err();
    format!("{err:#}")
}

#[test]
fn bad_upstream_files_are_named() {
    let up = upstream(true);
    let missing = up.dir.path().join("nope.crt");
    let err = start_err(plugin(&missing, &up.key()));
    assert!(
        err.contains("cert_file_path") && err.contains(&missing.display().to_string()),
        "{err}"
    );

    let not_ca = upstream(false);
    let err = start_err(plugin(&not_ca.cert(), &not_ca.key()));
    assert!(err.contains("not a CA"), "{err}");

    let other = upstream(true);
    let err = start_err(plugin(&up.cert(), &other.key()));
    assert!(err.contains("does not match"), "{err}");
    assert!(err.contains(&other.key().display().to_string()), "{err}");
}
