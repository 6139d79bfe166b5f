//! Unit tests of the agent side of x509pop: the payload, every key
//! format SPIRE's agent reads, answers the server's checks accept, and
//! the refusals.

use std::path::Path;

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use spinel_test_fixtures::x509pop::{convert_key, KeyFormat, NodeCert, NodeKey, NodeSpec, PopCa};

use super::*;

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn config(dir: &Path, leaf: &NodeCert, key_pem: &str) -> X509popConfig {
    X509popConfig {
        private_key_path: write(dir, "key.pem", key_pem),
        certificate_path: write(dir, "cert.pem", &leaf.cert_pem),
        intermediates_path: None,
    }
}

/// Sends a challenge of `kind` and checks the answer as the server does.
fn check_answer(evidence: &Evidence, leaf: &NodeCert, key: NodeKey) {
    let ours = [7u8; 32];
    let kind = match key {
        NodeKey::Rsa(_) => "rsa_signature",
        _ => "ecdsa_signature",
    };
    let challenge = serde_json::json!({ kind: { "nonce": b64(&ours) } });
    let answer = evidence.respond(challenge.to_string().as_bytes()).unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let other = if kind == "rsa_signature" {
        "ecdsa_signature"
    } else {
        "rsa_signature"
    };
    assert!(answer[other].is_null(), "{answer}");
    let part = |name: &str| {
        STANDARD
            .decode(answer[kind][name].as_str().unwrap())
            .unwrap()
    };
    let theirs = part("nonce");
    assert_eq!(theirs.len(), 32);
    let message = [ours.as_slice(), &theirs].concat();
    let digest = ring::digest::digest(&ring::digest::SHA256, &message);
    let spki = certificate_key(&leaf.cert_der).unwrap();
    let padded = |v: Vec<u8>, size: usize| {
        let mut out = vec![0u8; size - v.len()];
        out.extend(v);
        out
    };
    match key {
        NodeKey::Rsa(_) => {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PSS_2048_8192_SHA256,
                &spki,
            )
            .verify(&message, &part("signature"))
            .unwrap();
        }
        NodeKey::P256 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&spki).unwrap();
            let sig = p256::ecdsa::Signature::from_scalars(
                *p256::FieldBytes::from_slice(&padded(part("r"), 32)),
                *p256::FieldBytes::from_slice(&padded(part("s"), 32)),
            )
            .unwrap();
            key.verify_prehash(digest.as_ref(), &sig).unwrap();
        }
        NodeKey::P384 => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&spki).unwrap();
            let sig = p384::ecdsa::Signature::from_scalars(
                *p384::FieldBytes::from_slice(&padded(part("r"), 48)),
                *p384::FieldBytes::from_slice(&padded(part("s"), 48)),
            )
            .unwrap();
            key.verify_prehash(digest.as_ref(), &sig).unwrap();
        }
    }
}

#[test]
fn every_key_format_answers_a_challenge() {
    let ca = PopCa::root("root").unwrap();
    let dir = tempfile::tempdir().unwrap();
    for key in [NodeKey::P256, NodeKey::P384, NodeKey::Rsa(2048)] {
        let leaf = ca.issue(&NodeSpec::new(key, "node")).unwrap();
        let other_format = match key {
            NodeKey::Rsa(_) => KeyFormat::Pkcs1,
            _ => KeyFormat::Sec1,
        };
        let converted = convert_key(&leaf.key_pem, other_format).unwrap();
        assert!(
            converted.contains("-----BEGIN RSA PRIVATE KEY-----")
                || converted.contains("-----BEGIN EC PRIVATE KEY-----"),
            "{other_format:?}"
        );
        for key_pem in [leaf.key_pem.clone(), converted] {
            let evidence = load(&config(dir.path(), &leaf, &key_pem)).unwrap();
            check_answer(&evidence, &leaf, key);
        }
    }
}

#[test]
fn payload_is_the_chain_leaf_first_then_intermediates() {
    let root = PopCa::root("root").unwrap();
    let inter = root.intermediate("inter").unwrap();
    let leaf = inter.issue(&NodeSpec::new(NodeKey::P256, "node")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), &leaf, &leaf.key_pem);
    config.intermediates_path = Some(write(dir.path(), "inter.pem", &inter.cert_pem));
    let evidence = load(&config).unwrap();
    let data = evidence.attestation_data();
    assert_eq!(data.r#type, "x509pop");
    let v: serde_json::Value = serde_json::from_slice(&data.payload).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"certificates": [b64(&leaf.cert_der), b64(&inter.cert_der)]})
    );
    // The key never shows in Debug.
    let shown = format!("{evidence:?}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_both_files() {
    let ca = PopCa::root("root").unwrap();
    let leaf = ca.issue(&NodeSpec::new(NodeKey::P256, "node")).unwrap();
    let other = ca.issue(&NodeSpec::new(NodeKey::P256, "other")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = load(&config(dir.path(), &leaf, &other.key_pem))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not match") && err.contains("key.pem") && err.contains("cert.pem"),
        "{err}"
    );
}

#[test]
fn missing_files_and_wrong_challenges_are_refused() {
    let ca = PopCa::root("root").unwrap();
    let leaf = ca.issue(&NodeSpec::new(NodeKey::P256, "node")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut bad = config(dir.path(), &leaf, &leaf.key_pem);
    bad.certificate_path = dir.path().join("absent.pem");
    let err = load(&bad).unwrap_err().to_string();
    assert!(err.contains("absent.pem"), "{err}");
    let bad = config(dir.path(), &leaf, "no key here");
    let err = load(&bad).unwrap_err().to_string();
    assert!(err.contains("no PEM private key"), "{err}");

    let evidence = load(&config(dir.path(), &leaf, &leaf.key_pem)).unwrap();
    for (challenge, needle) in [
        (
            serde_json::json!({"rsa_signature": {"nonce": b64(&[1; 32])}}),
            "expecting ECDSA challenge",
        ),
        (
            serde_json::json!({"ecdsa_signature": {"nonce": b64(&[1; 31])}}),
            "invalid challenge nonce",
        ),
        (serde_json::json!("text"), "unable to unmarshal challenge"),
    ] {
        let err = evidence
            .respond(challenge.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
}
