//! Unit tests of `client_trust.rs`: verdicts follow the bundle published
//! last, at the handshake, per request and for open connections.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use spinel_spiffe::TrustDomain;

use super::*;

struct TestCa {
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A CA; every test CA has the same subject, as the server's CAs do.
fn ca() -> TestCa {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "SPIFFE");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let der = params.self_signed(&key).unwrap().der().to_vec();
    TestCa {
        der,
        issuer: Issuer::new(params, key),
    }
}

/// An X509-SVID chain (the leaf alone) signed by `ca`.
fn svid(ca: &TestCa) -> Vec<CertificateDer<'static>> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names.push(SanType::URI(
        "spiffe://example.org/admin".try_into().unwrap(),
    ));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf = params.signed_by(&key, &ca.issuer).unwrap();
    vec![CertificateDer::from(leaf.der().to_vec())]
}

fn bundle(cas: &[&TestCa], sequence: u64) -> TrustBundle {
    let mut bundle = TrustBundle::new(TrustDomain::new("example.org").unwrap());
    bundle.x509_authorities = cas.iter().map(|ca| ca.der.clone()).collect();
    bundle.sequence = sequence;
    bundle
}

fn trust(initial: TrustBundle) -> (watch::Sender<TrustBundle>, Arc<ClientTrust>) {
    let (tx, rx) = watch::channel(initial);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    (tx, ClientTrust::new(rx, provider, Clock::system()))
}

fn handshake_accepts(trust: &ClientTrust, chain: &[CertificateDer<'static>]) -> bool {
    let now = trust.now();
    trust
        .verify_client_cert(&chain[0], &chain[1..], now)
        .is_ok()
}

#[test]
fn verdicts_follow_the_bundle_published_last() {
    let (first, second) = (ca(), ca());
    let (tx, trust) = trust(bundle(&[&first], 1));
    let old = PeerChain::new(svid(&first), trust.clone());
    let new = svid(&second);
    assert!(old.trusted());
    assert!(handshake_accepts(&trust, &old));
    assert!(!handshake_accepts(&trust, &new));

    // Prepared: both CAs are trusted.
    tx.send(bundle(&[&first, &second], 2)).unwrap();
    assert!(old.trusted());
    assert!(handshake_accepts(&trust, &new));

    // Revoked: the first CA's chain fails at once, with no one told to
    // update anything.
    tx.send(bundle(&[&second], 3)).unwrap();
    assert!(!old.trusted());
    assert!(!handshake_accepts(&trust, &old));
    assert!(handshake_accepts(&trust, &new));

    // Verdicts are judged again on every change of authorities.
    tx.send(bundle(&[&first], 4)).unwrap();
    assert!(old.trusted());
}

#[test]
fn a_change_that_keeps_the_authorities_keeps_the_verdicts() {
    let first = ca();
    let (tx, trust) = trust(bundle(&[&first], 1));
    let chain = PeerChain::new(svid(&first), trust.clone());
    assert!(chain.trusted());
    // A JWT key change: new sequence, same X.509 authorities.
    tx.send(bundle(&[&first], 2)).unwrap();
    assert!(chain.trusted());
    assert_eq!(trust.current().generation, 1);
}

#[test]
fn a_bundle_without_authorities_trusts_no_certificate() {
    let first = ca();
    let (tx, trust) = trust(bundle(&[&first], 1));
    let chain = PeerChain::new(svid(&first), trust.clone());
    assert!(chain.trusted());
    tx.send(bundle(&[], 2)).unwrap();
    assert!(!chain.trusted());
    assert!(!handshake_accepts(&trust, &chain));
}

#[tokio::test]
async fn an_open_connection_is_revoked_when_its_ca_leaves_the_bundle() {
    let (first, second) = (ca(), ca());
    let (tx, trust) = trust(bundle(&[&first], 1));
    let chain = PeerChain::new(svid(&first), trust);
    let revoked = tokio::spawn(chain.until_untrusted(None));

    // Changes that keep its CA leave it alone.
    tx.send(bundle(&[&first, &second], 2)).unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tx.send(bundle(&[&first, &second], 3)).unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!revoked.is_finished());

    tx.send(bundle(&[&second], 4)).unwrap();
    revoked.await.unwrap();
}

#[tokio::test]
async fn a_chain_untrusted_already_is_revoked_at_once() {
    let (first, second) = (ca(), ca());
    let (_tx, trust) = trust(bundle(&[&second], 1));
    PeerChain::new(svid(&first), trust)
        .until_untrusted(None)
        .await;
}
