//! Unit tests of the x509pop attestor: SPIRE's wire formats, the agent ID
//! and selectors, and every refusal (sizes, key, key usage, chain,
//! response), each checked to come before the work it guards.

use std::collections::BTreeSet;

use async_trait::async_trait;
use base64::Engine;
use ring::rand::SystemRandom;
use rsa::pkcs8::DecodePrivateKey;
use spinel_spiffe::{Clock, TrustDomain};
use spinel_test_fixtures::x509pop::{oversized_rsa_leaf, NodeCert, NodeKey, NodeSpec, PopCa};

use super::leaf::fingerprint;
use super::wire::{Bytes, Challenge, EcdsaResponse, Response, RsaResponse};
use super::*;
use crate::attestor::node::{AttestError, ChallengeChannel, NodeAttestor};

fn td() -> TrustDomain {
    spinel_spiffe::id::parse_trust_domain("example.org").unwrap()
}

fn attestor(roots: &[&PopCa], template: &str) -> X509popAttestor {
    let bundle = CaBundle::from_der(roots.iter().map(|r| r.cert_der.clone()).collect()).unwrap();
    X509popAttestor::new(
        td(),
        bundle,
        AgentPathTemplate::parse(template).unwrap(),
        Clock::system(),
    )
}

fn payload(chain: &[&[u8]]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let certs: Vec<String> = chain.iter().map(|c| b64.encode(c)).collect();
    serde_json::to_vec(&serde_json::json!({ "certificates": certs })).unwrap()
}

fn key_der(pem: &str) -> Vec<u8> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .contents
}

/// How the fake agent signs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signer {
    /// ring: P-256 fixed signatures, RSA-PSS with a 32-byte salt.
    Ring,
    /// Go's RSA-PSS salt (the longest), with the rsa crate.
    GoRsa,
}

/// The agent's side: answers challenges with `key_pem`, keeping what it
/// was sent.
struct FakeAgent {
    key_pem: String,
    signer: Signer,
    challenges: Vec<Vec<u8>>,
}

impl FakeAgent {
    fn new(key_pem: &str) -> Self {
        FakeAgent {
            key_pem: key_pem.to_owned(),
            signer: Signer::Ring,
            challenges: Vec::new(),
        }
    }
}

#[async_trait]
impl ChallengeChannel for FakeAgent {
    async fn challenge(&mut self, challenge: Vec<u8>) -> Result<Vec<u8>, AttestError> {
        self.challenges.push(challenge.clone());
        let parsed: Challenge = serde_json::from_slice(&challenge).unwrap();
        let ours: [u8; 32] = rand::random();
        let rng = SystemRandom::new();
        let der = key_der(&self.key_pem);
        let response = if let Some(c) = parsed.ecdsa_signature {
            let message = [c.nonce.0.as_slice(), &ours].concat();
            let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &der,
                &rng,
            )
            .unwrap();
            let sig = pair.sign(&rng, &message).unwrap();
            Response {
                rsa_signature: None,
                ecdsa_signature: Some(EcdsaResponse {
                    nonce: Bytes(ours.to_vec()),
                    r: Bytes(sig.as_ref()[..32].to_vec()),
                    s: Bytes(sig.as_ref()[32..].to_vec()),
                }),
            }
        } else {
            let c = parsed.rsa_signature.unwrap();
            let message = [c.nonce.0.as_slice(), &ours].concat();
            let signature = match self.signer {
                Signer::Ring => {
                    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
                    let mut sig = vec![0; pair.public().modulus_len()];
                    pair.sign(&ring::signature::RSA_PSS_SHA256, &rng, &message, &mut sig)
                        .unwrap();
                    sig
                }
                Signer::GoRsa => {
                    use rsa::traits::PublicKeyParts;
                    let key = rsa::RsaPrivateKey::from_pkcs8_der(&der).unwrap();
                    let digest = wire::combined_digest(&c.nonce.0, &ours).unwrap();
                    let salt = (key.n().bits() - 1).div_ceil(8) - 2 - 32;
                    key.sign_with_rng(
                        &mut rsa::rand_core::OsRng,
                        rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
                        &digest,
                    )
                    .unwrap()
                }
            };
            Response {
                rsa_signature: Some(RsaResponse {
                    nonce: Bytes(ours.to_vec()),
                    signature: Bytes(signature),
                }),
                ecdsa_signature: None,
            }
        };
        Ok(serde_json::to_vec(&response).unwrap())
    }
}

fn values(result: &crate::attestor::node::AttestationResult) -> BTreeSet<String> {
    result
        .selectors
        .iter()
        .map(|s| {
            assert_eq!(s.kind, "x509pop");
            s.value.clone()
        })
        .collect()
}

fn node(ca: &PopCa, key: NodeKey) -> NodeCert {
    ca.issue(&NodeSpec::new(key, "node-1")).unwrap()
}

#[tokio::test]
async fn ecdsa_node_gets_spire_agent_id_and_selectors() {
    let root = PopCa::root("root").unwrap();
    let inter = root.intermediate("intermediate").unwrap();
    let mut spec = NodeSpec::new(NodeKey::P256, "node-1.example");
    spec.uri_sans = vec![
        "x509pop://example.org/datacenter/us-east-1".into(),
        "x509pop://other.org/datacenter/ignored".into(),
        "spiffe://example.org/not-a-selector".into(),
    ];
    spec.serial = Some(vec![0x0a, 0x1b, 0x2c]);
    let leaf = inter.issue(&spec).unwrap();
    let mut agent = FakeAgent::new(&leaf.key_pem);
    let result = attestor(&[&root], template::DEFAULT_TEMPLATE)
        .attest(&payload(&[&leaf.cert_der, &inter.cert_der]), &mut agent)
        .await
        .unwrap();
    let fp = fingerprint(&leaf.cert_der);
    assert_eq!(fp.len(), 40);
    assert_eq!(
        result.agent_id.to_string(),
        format!("spiffe://example.org/spire/agent/x509pop/{fp}")
    );
    assert!(result.can_reattest);
    let want: BTreeSet<String> = [
        "subject:cn:node-1.example".to_owned(),
        format!("ca:fingerprint:{}", fingerprint(&inter.cert_der)),
        format!("ca:fingerprint:{}", fingerprint(&root.cert_der)),
        "serialnumber:0a1b2c".to_owned(),
        "san:datacenter:us-east-1".to_owned(),
    ]
    .into();
    assert_eq!(values(&result), want);

    // SPIRE's challenge: one member, a 32-byte nonce in standard base64.
    assert_eq!(agent.challenges.len(), 1);
    let sent: serde_json::Value = serde_json::from_slice(&agent.challenges[0]).unwrap();
    assert!(sent["rsa_signature"].is_null(), "{sent}");
    let nonce = sent["ecdsa_signature"]["nonce"].as_str().unwrap();
    let nonce = base64::engine::general_purpose::STANDARD
        .decode(nonce)
        .unwrap();
    assert_eq!(nonce.len(), 32);
}

#[tokio::test]
async fn rsa_nodes_answer_with_go_or_ring_salts() {
    let root = PopCa::root("root").unwrap();
    let leaf = node(&root, NodeKey::Rsa(2048));
    let attestor = attestor(
        &[&root],
        "/cn/{{ .Subject.CommonName }}/{{ .SerialNumberHex }}",
    );
    for signer in [Signer::Ring, Signer::GoRsa] {
        let mut agent = FakeAgent::new(&leaf.key_pem);
        agent.signer = signer;
        let result = attestor
            .attest(&payload(&[&leaf.cert_der]), &mut agent)
            .await
            .unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&agent.challenges[0]).unwrap();
        assert!(sent["ecdsa_signature"].is_null(), "{sent}");
        assert!(sent["rsa_signature"]["nonce"].is_string(), "{sent}");
        let path = result.agent_id.path().to_owned();
        assert!(path.starts_with("/spire/agent/cn/node-1/"), "{path}");
    }
}

#[tokio::test]
async fn a_chain_to_another_ca_is_refused_before_the_challenge() {
    let root = PopCa::root("root").unwrap();
    let other = PopCa::root("other").unwrap();
    let leaf = node(&other, NodeKey::P256);
    let mut agent = FakeAgent::new(&leaf.key_pem);
    let err = attestor(&[&root], template::DEFAULT_TEMPLATE)
        .attest(&payload(&[&leaf.cert_der]), &mut agent)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::Denied(m) if m.contains("certificate verification failed")),
        "{err:?}"
    );
    assert!(agent.challenges.is_empty());
}

#[tokio::test]
async fn a_leaf_without_digital_signature_is_refused() {
    let root = PopCa::root("root").unwrap();
    let mut spec = NodeSpec::new(NodeKey::P256, "node-1");
    spec.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment];
    let leaf = root.issue(&spec).unwrap();
    let mut agent = FakeAgent::new(&leaf.key_pem);
    let err = attestor(&[&root], template::DEFAULT_TEMPLATE)
        .attest(&payload(&[&leaf.cert_der]), &mut agent)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("certificate not intended for digital signature use"),
        "{err:?}"
    );
    assert!(agent.challenges.is_empty());
    // No key usage extension at all: the same.
    spec.key_usages = Vec::new();
    let leaf = root.issue(&spec).unwrap();
    let err = attestor(&[&root], template::DEFAULT_TEMPLATE)
        .attest(&payload(&[&leaf.cert_der]), &mut agent)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("digital signature"), "{err:?}");
}

#[tokio::test]
async fn a_response_signed_with_another_key_is_refused() {
    let root = PopCa::root("root").unwrap();
    let attestor = attestor(&[&root], template::DEFAULT_TEMPLATE);
    for key in [NodeKey::P256, NodeKey::Rsa(2048)] {
        let leaf = node(&root, key);
        let impostor = node(&root, key);
        let mut agent = FakeAgent::new(&impostor.key_pem);
        let err = attestor
            .attest(&payload(&[&leaf.cert_der]), &mut agent)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AttestError::Denied(m) if m.contains("challenge response verification failed")),
            "{err:?}"
        );
        assert_eq!(agent.challenges.len(), 1);
    }
}

/// An answer of the wrong kind, or with a short nonce, is refused too.
#[tokio::test]
async fn malformed_responses_are_refused() {
    struct Canned(Vec<u8>);
    #[async_trait]
    impl ChallengeChannel for Canned {
        async fn challenge(&mut self, _c: Vec<u8>) -> Result<Vec<u8>, AttestError> {
            Ok(self.0.clone())
        }
    }
    let root = PopCa::root("root").unwrap();
    let leaf = node(&root, NodeKey::P256);
    let attestor = attestor(&[&root], template::DEFAULT_TEMPLATE);
    for (answer, needle) in [
        (
            serde_json::json!({"rsa_signature": {"nonce": "", "signature": ""}}).to_string(),
            "expecting ECDSA response",
        ),
        (
            serde_json::json!({"ecdsa_signature": {"nonce": "AAAA", "r": "AQ==", "s": "AQ=="}})
                .to_string(),
            "invalid response nonce",
        ),
        ("not json".into(), "unable to unmarshal challenge response"),
        (
            " ".repeat(MAX_RESPONSE_BYTES + 1),
            "larger than the 16384 bytes allowed",
        ),
    ] {
        let err = attestor
            .attest(
                &payload(&[&leaf.cert_der]),
                &mut Canned(answer.into_bytes()),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err:?}");
    }
}

/// Without the size guard this payload would be parsed (and refused for
/// its content, not its size).
#[tokio::test]
async fn oversized_payloads_are_refused_before_parsing() {
    let root = PopCa::root("root").unwrap();
    let leaf = node(&root, NodeKey::P256);
    let mut chain: Vec<&[u8]> = vec![&leaf.cert_der];
    let filler = vec![0u8; 4096];
    while payload(&chain).len() <= MAX_PAYLOAD_BYTES {
        chain.push(&filler);
    }
    let mut agent = FakeAgent::new(&leaf.key_pem);
    let err = attestor(&[&root], template::DEFAULT_TEMPLATE)
        .attest(&payload(&chain), &mut agent)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::InvalidEvidence(m) if m.contains("larger than the 65536 bytes allowed")),
        "{err:?}"
    );
    // Too many certificates (small enough in bytes) are refused too.
    let many: Vec<&[u8]> =
        std::iter::repeat_n(leaf.cert_der.as_slice(), MAX_CERTIFICATES + 1).collect();
    let err = attestor(&[&root], template::DEFAULT_TEMPLATE)
        .attest(&payload(&many), &mut agent)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 16"), "{err:?}");
    assert!(agent.challenges.is_empty());
}

/// An RSA key over 8192 bits is refused by its size, before the chain's
/// signatures are checked or a challenge is sent.
#[tokio::test]
async fn oversized_rsa_keys_are_refused_before_any_work() {
    let root = PopCa::root("root").unwrap();
    let big = oversized_rsa_leaf(&root, 9000, "big").unwrap();
    let mut agent = FakeAgent::new("");
    let attestor = attestor(&[&root], template::DEFAULT_TEMPLATE);
    let err = attestor
        .attest(&payload(&[&big]), &mut agent)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::InvalidEvidence(m) if m.contains("RSA key of 9000 bits")),
        "{err:?}"
    );
    // As an intermediate, likewise.
    let leaf = node(&root, NodeKey::P256);
    let err = attestor
        .attest(&payload(&[&leaf.cert_der, &big]), &mut agent)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::InvalidEvidence(m) if m.contains("intermediate certificate 0") && m.contains("9000 bits")),
        "{err:?}"
    );
    assert!(agent.challenges.is_empty());
}

#[tokio::test]
async fn empty_or_garbage_payloads_are_refused() {
    let root = PopCa::root("root").unwrap();
    let attestor = attestor(&[&root], template::DEFAULT_TEMPLATE);
    for (data, needle) in [
        (b"{}".to_vec(), "no certificate to attest"),
        (b"nope".to_vec(), "failed to unmarshal data"),
        (payload(&[b"not a cert"]), "unable to use leaf certificate"),
    ] {
        let err = attestor
            .attest(&data, &mut FakeAgent::new(""))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AttestError::InvalidEvidence(m) if m.contains(needle)),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn templates_render_spire_fields() {
    let root = PopCa::root("root").unwrap();
    let mut spec = NodeSpec::new(NodeKey::P256, "node-7");
    spec.uri_sans = vec!["x509pop://example.org/rack/r12".into()];
    spec.serial = Some(vec![0x01, 0x02]);
    let leaf = root.issue(&spec).unwrap();
    let fp = fingerprint(&leaf.cert_der);
    for (template, want) in [
        (
            "/{{ .PluginName }}/{{ .TrustDomain }}/{{.Subject.CommonName}}",
            "/spire/agent/x509pop/example.org/node-7".to_owned(),
        ),
        (
            "/rack/{{ .URISanSelectors.rack }}/{{ .SerialNumberHex }}",
            "/spire/agent/rack/r12/0102".to_owned(),
        ),
        ("/fp-{{ .Fingerprint }}", format!("/spire/agent/fp-{fp}")),
    ] {
        let result = attestor(&[&root], template)
            .attest(
                &payload(&[&leaf.cert_der]),
                &mut FakeAgent::new(&leaf.key_pem),
            )
            .await
            .unwrap();
        assert_eq!(result.agent_id.path(), want, "{template}");
    }
    // A SAN key the leaf lacks fails, as Go's missingkey=error does.
    let err = attestor(&[&root], "/{{ .URISanSelectors.zone }}")
        .attest(
            &payload(&[&leaf.cert_der]),
            &mut FakeAgent::new(&leaf.key_pem),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("zone"), "{err:?}");
}

#[test]
fn combined_digest_is_sha256_of_both_nonces() {
    let a = [1u8; 32];
    let b = [2u8; 32];
    let want = ring::digest::digest(&ring::digest::SHA256, &[a, b].concat());
    assert_eq!(
        wire::combined_digest(&a, &b).unwrap().as_slice(),
        want.as_ref()
    );
    assert!(wire::combined_digest(&a[..31], &b).is_none());
    assert!(wire::combined_digest(&a, &[0u8; 33]).is_none());
}

#[test]
fn wire_shapes_are_spires() {
    // As Go marshals SPIRE's structs: []byte as standard base64, nil
    // pointers as null.
    let response = Response {
        rsa_signature: None,
        ecdsa_signature: Some(EcdsaResponse {
            nonce: Bytes(vec![0xfb, 0xff]),
            r: Bytes(vec![1]),
            s: Bytes(vec![2]),
        }),
    };
    assert_eq!(
        serde_json::to_string(&response).unwrap(),
        r#"{"rsa_signature":null,"ecdsa_signature":{"nonce":"+/8=","r":"AQ==","s":"Ag=="}}"#
    );
    let data: wire::AttestationData =
        serde_json::from_str(r#"{"certificates":["AQI=",null]}"#).unwrap();
    assert_eq!(data.certificates, [Bytes(vec![1, 2]), Bytes(vec![])]);
}

#[tokio::test]
async fn a_leaf_without_its_intermediate_does_not_chain() {
    let root = PopCa::root("root").unwrap();
    let inter = root.intermediate("intermediate").unwrap();
    let leaf = node(&inter, NodeKey::P256);
    let err = attestor(&[&root], template::DEFAULT_TEMPLATE)
        .attest(
            &payload(&[&leaf.cert_der]),
            &mut FakeAgent::new(&leaf.key_pem),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AttestError::Denied(m) if m.contains("certificate verification failed")),
        "{err:?}"
    );
}

#[test]
fn ca_bundle_files_are_checked_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = PopCa::root("root").unwrap();
    let other = PopCa::root("other").unwrap();
    let both = dir.path().join("both.pem");
    std::fs::write(&both, format!("{}{}", root.cert_pem, other.cert_pem)).unwrap();
    let single = dir.path().join("single.pem");
    root.write_pem(&single).unwrap();
    let bundle = CaBundle::from_pem_files(&[both.clone(), single]).unwrap();
    assert_eq!(bundle.len(), 3);

    let key = dir.path().join("key.pem");
    std::fs::write(
        &key,
        format!("{}{}", root.cert_pem, node(&root, NodeKey::P256).key_pem),
    )
    .unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.path().join("missing.pem");
    for (path, needle) in [
        (&key, "only CERTIFICATE blocks"),
        (&empty, "holds no PEM certificate"),
        (&missing, "No such file"),
    ] {
        let err = CaBundle::from_pem_files(&[both.clone(), path.clone()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(needle) && err.contains(&path.display().to_string()),
            "{needle}: {err}"
        );
        // The key itself never appears in the message.
        assert!(!err.contains("PRIVATE KEY-----\n"), "{err}");
    }
}
