use super::*;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType,
};

const SERVER_ID: &str = "spiffe://example.org/spire/server";

/// A CA with a fixed subject: two of them differ only by key, as a
/// reinstalled server's CA differs from the one before it.
fn ca() -> (Vec<u8>, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "SPIFFE");
    params.distinguished_name = dn;
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), Issuer::new(params, key))
}

fn server_cert(issuer: &Issuer<'_, KeyPair>) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(SERVER_ID.try_into().unwrap())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.signed_by(&key, issuer).unwrap().der().to_vec()
}

fn verify(verifier: &SpiffeIdServerVerifier, leaf: &[u8], at: u64) -> Result<(), rustls::Error> {
    let name = ServerName::try_from("localhost").unwrap();
    verifier
        .verify_server_cert(
            &CertificateDer::from(leaf.to_vec()),
            &[],
            &name,
            &[],
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at)),
        )
        .map(|_| ())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[tokio::test(start_paused = true)]
async fn watch_remembers_the_first_untrusted_handshake_until_one_verifies() {
    let (old_root, _) = ca();
    let (new_root, new_issuer) = ca();
    let leaf = server_cert(&new_issuer);
    let now = rustls::pki_types::UnixTime::now().as_secs();
    let clock = Clock::starting_at(std::time::UNIX_EPOCH + std::time::Duration::from_secs(now));
    let watch = TrustWatch::new(clock);
    let stale = SpiffeIdServerVerifier::new(&[old_root], SERVER_ID.into(), provider())
        .watched_by(watch.clone());
    assert_eq!(watch.untrusted_since(), None);

    let err = verify(&stale, &leaf, now).unwrap_err().to_string();
    assert!(err.contains("does not chain to the trust bundle"), "{err}");
    assert_eq!(watch.untrusted_since(), Some(now));
    // Later failures keep the first time: the delay counts from it.
    tokio::time::advance(std::time::Duration::from_secs(30)).await;
    assert!(verify(&stale, &leaf, now + 30).is_err());
    assert_eq!(watch.untrusted_since(), Some(now));
    assert_eq!(
        watch.untrusted_for(),
        Some(std::time::Duration::from_secs(30))
    );

    let fresh = SpiffeIdServerVerifier::new(&[new_root], SERVER_ID.into(), provider())
        .watched_by(watch.clone());
    verify(&fresh, &leaf, now + 40).unwrap();
    assert_eq!(watch.untrusted_since(), None);
}

#[test]
fn a_wrong_id_or_an_expired_certificate_is_not_a_trust_mismatch() {
    let (root, issuer) = ca();
    let leaf = server_cert(&issuer);
    let now = rustls::pki_types::UnixTime::now().as_secs();
    let watch = TrustWatch::new(Clock::system());
    let other_id = SpiffeIdServerVerifier::new(
        std::slice::from_ref(&root),
        "spiffe://example.org/other".into(),
        provider(),
    )
    .watched_by(watch.clone());
    let err = verify(&other_id, &leaf, now).unwrap_err().to_string();
    assert!(err.contains("expected spiffe://example.org/other"), "{err}");
    assert_eq!(watch.untrusted_since(), None);

    let verifier = SpiffeIdServerVerifier::new(&[root], SERVER_ID.into(), provider())
        .watched_by(watch.clone());
    // rcgen's default validity ends in 4096: far past it the leaf is expired.
    let err = verify(&verifier, &leaf, 4_200_000_000 * 20)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not chain"), "{err}");
    assert_eq!(watch.untrusted_since(), None);
}
