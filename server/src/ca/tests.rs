//! CA tests with real keys, real certificates and paused time.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use spinel_spiffe::{Clock, SpiffeId, TrustDomain};
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::*;
use crate::datastore::sled::SledDataStore;
use crate::keymanager::{DiskKeyManager, MemoryKeyManager};

fn config(ca_ttl: Duration) -> CaConfig {
    CaConfig {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        server_id: "test-server".into(),
        ca_key_type: KeyType::EcP256,
        jwt_key_type: KeyType::EcP256,
        ca_ttl,
        ca_subject: CaSubject::default(),
        default_x509_svid_ttl: Duration::from_secs(3600),
        default_jwt_svid_ttl: Duration::from_secs(300),
        upstream: None,
        jwt_issuer: Some("https://oidc.example.org".into()),
    }
}

fn start_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

async fn memory_ca(ca_ttl: Duration) -> Arc<Ca> {
    Ca::start(
        config(ca_ttl),
        Arc::new(MemoryKeyManager::new()),
        Arc::new(SledDataStore::open_temporary().unwrap()),
        Clock::starting_at(start_time()),
    )
    .await
    .unwrap()
}

/// A CSR for a fresh key that asks for names the server must ignore.
fn greedy_csr() -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example.com".to_owned()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://example.org/admin".try_into().unwrap(),
    ));
    let csr = params.serialize_request(&key).unwrap();
    (
        csr.der().to_vec(),
        rcgen::PublicKeyData::subject_public_key_info(&key),
    )
}

#[tokio::test(start_paused = true)]
async fn svid_takes_names_from_the_entry_not_the_csr() {
    let ca = memory_ca(Duration::from_secs(24 * 3600)).await;
    let (csr, spki) = greedy_csr();
    let public_key = verify_csr(&csr).unwrap();
    assert_eq!(public_key, spki);
    let svid = ca
        .sign_x509_svid(X509SvidParams {
            spiffe_id: SpiffeId::new("spiffe://example.org/web").unwrap(),
            public_key,
            dns_names: vec!["web.example.org".into()],
            ttl: Some(Duration::from_secs(120)),
        })
        .unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&svid.chain[0]).unwrap();
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for ext in leaf.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::URI(u) => uris.push(u.to_string()),
                        GeneralName::DNSName(d) => dns.push(d.to_string()),
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => assert!(!bc.ca),
            ParsedExtension::KeyUsage(ku) => {
                assert!(ext.critical && ku.digital_signature() && !ku.key_cert_sign());
            }
            _ => {}
        }
    }
    assert_eq!(uris, vec!["spiffe://example.org/web"]);
    assert_eq!(dns, vec!["web.example.org"]);
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert_eq!(lifetime, 130, "TTL plus 10 s backdating");
    // Chains to the bundle.
    let bundle = ca.bundle();
    let (_, root) = x509_parser::parse_x509_certificate(&bundle.x509_authorities[0]).unwrap();
    leaf.verify_signature(Some(root.public_key())).unwrap();
    assert!(leaf.validity().not_after <= root.validity().not_after);
}

#[test]
fn tampered_csr_is_refused() {
    let (mut csr, _) = greedy_csr();
    let last = csr.len() - 1;
    csr[last] ^= 0xff;
    assert!(matches!(verify_csr(&csr), Err(CaError::InvalidCsr(_))));
    assert!(matches!(
        verify_csr(b"garbage"),
        Err(CaError::InvalidCsr(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn svids_never_outlive_the_ca() {
    let ca = memory_ca(Duration::from_secs(600)).await;
    let (csr, _) = greedy_csr();
    let svid = ca
        .sign_x509_svid(X509SvidParams {
            spiffe_id: SpiffeId::new("spiffe://example.org/long").unwrap(),
            public_key: verify_csr(&csr).unwrap(),
            dns_names: vec![],
            ttl: Some(Duration::from_secs(100_000)),
        })
        .unwrap();
    assert!(svid.not_after <= ca.ca_not_after().unwrap());
}

#[tokio::test(start_paused = true)]
async fn restart_keeps_the_same_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let ds: Arc<dyn crate::datastore::DataStore> =
        Arc::new(SledDataStore::open(&dir.path().join("ds")).unwrap());
    let keys_path = dir.path().join("keys.json");
    let clock = Clock::starting_at(start_time());
    let first = Ca::start(
        config(Duration::from_secs(24 * 3600)),
        Arc::new(DiskKeyManager::open(&keys_path).unwrap()),
        ds.clone(),
        clock.clone(),
    )
    .await
    .unwrap();
    let bundle = first.bundle();
    drop(first);
    let second = Ca::start(
        config(Duration::from_secs(24 * 3600)),
        Arc::new(DiskKeyManager::open(&keys_path).unwrap()),
        ds.clone(),
        clock,
    )
    .await
    .unwrap();
    assert_eq!(second.bundle().x509_authorities, bundle.x509_authorities);
    assert_eq!(second.bundle().jwt_authorities, bundle.jwt_authorities);

    // A key manager without the CA key is refused, not silently replaced.
    let err = Ca::start(
        config(Duration::from_secs(24 * 3600)),
        Arc::new(MemoryKeyManager::new()),
        ds,
        Clock::starting_at(start_time()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CaError::State(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn rotation_prepares_then_activates() {
    let ca = memory_ca(Duration::from_secs(60)).await;
    let rotation = tokio::spawn(ca.clone().run_rotation());
    let first_root = ca.bundle().x509_authorities[0].clone();
    assert_eq!(ca.bundle().x509_authorities.len(), 1);

    // Prepared at NotAfter - life/2 (life = 60 s + 10 s backdating): published, not yet used.
    // The datastore write is real I/O, so wait for the published bundle
    // rather than for a fixed amount of paused time.
    let clock = Clock::starting_at(start_time());
    let mut bundles = ca.watch_bundle();
    let bundle = bundles
        .wait_for(|b| b.x509_authorities.len() == 2 && b.jwt_authorities.len() == 2)
        .await
        .unwrap()
        .clone();
    let elapsed = clock.now().duration_since(start_time()).unwrap();
    assert!(
        elapsed >= Duration::from_secs(25) && elapsed < Duration::from_secs(48),
        "{elapsed:?}"
    );
    assert_eq!(
        bundle.jwt_authorities.len(),
        2,
        "next JWT key published before use"
    );
    tokio::time::sleep(Duration::from_secs(36).saturating_sub(elapsed)).await;

    // Activated at NotAfter - life/6 (~50 s in): new SVIDs chain to the new CA.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let (csr, _) = greedy_csr();
    let svid = ca
        .sign_x509_svid(X509SvidParams {
            spiffe_id: SpiffeId::new("spiffe://example.org/w").unwrap(),
            public_key: verify_csr(&csr).unwrap(),
            dns_names: vec![],
            ttl: None,
        })
        .unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&svid.chain[0]).unwrap();
    let (_, old_root) = x509_parser::parse_x509_certificate(&first_root).unwrap();
    assert!(
        leaf.verify_signature(Some(old_root.public_key())).is_err(),
        "signed by the new CA"
    );
    assert!(svid.not_after <= ca.ca_not_after().unwrap());

    // The old CA leaves the bundle once it expires.
    bundles
        .wait_for(|b| !b.x509_authorities.contains(&first_root))
        .await
        .unwrap();
    assert!(clock.now() >= start_time() + Duration::from_secs(60));
    rotation.abort();
}

#[tokio::test(start_paused = true)]
async fn jwt_svids_validate_against_the_bundle() {
    let ca = memory_ca(Duration::from_secs(24 * 3600)).await;
    let id = SpiffeId::new("spiffe://example.org/w").unwrap();
    let svid = ca.sign_jwt_svid(&id, &["vault".to_owned()], None).unwrap();
    let bundle = ca.bundle();
    let now = spinel_spiffe::clock::to_unix_seconds(start_time());
    let lookup = |td: &TrustDomain| (td == &bundle.trust_domain).then(|| bundle.clone());
    let ok = spinel_spiffe::jwt::validate(&svid.token, "vault", &lookup, now).unwrap();
    assert_eq!(ok.spiffe_id, id);
    assert_eq!(ok.claims["iss"], "https://oidc.example.org");
    assert_eq!(
        ok.claims["exp"].as_i64().unwrap() - ok.claims["iat"].as_i64().unwrap(),
        300
    );
    assert!(matches!(
        ca.sign_jwt_svid(&id, &[], None),
        Err(CaError::InvalidRequest(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn ids_over_2048_bytes_are_never_signed() {
    let ca = memory_ca(Duration::from_secs(24 * 3600)).await;
    // The `spiffe` crate parses it; the CA must still refuse to sign it (an
    // entry stored before the API checked the length).
    let long = SpiffeId::new(format!("spiffe://example.org/{}", "a".repeat(2048))).unwrap();
    let (csr, _) = greedy_csr();
    let refused = ca.sign_x509_svid(X509SvidParams {
        spiffe_id: long.clone(),
        public_key: verify_csr(&csr).unwrap(),
        dns_names: Vec::new(),
        ttl: None,
    });
    assert!(
        matches!(&refused, Err(CaError::InvalidRequest(m)) if m.contains("2048")),
        "X509-SVID signed: {}",
        refused.is_ok()
    );
    let refused = ca.sign_jwt_svid(&long, &["vault".to_owned()], None);
    assert!(
        matches!(&refused, Err(CaError::InvalidRequest(m)) if m.contains("2048")),
        "JWT-SVID signed: {}",
        refused.is_ok()
    );
}

fn signed_by(svid: &X509Svid, ca_der: &[u8]) -> bool {
    let (_, leaf) = x509_parser::parse_x509_certificate(&svid.chain[0]).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).unwrap();
    leaf.verify_signature(Some(ca.public_key())).is_ok()
}

fn sign_one(ca: &Ca) -> X509Svid {
    let (csr, _) = greedy_csr();
    ca.sign_x509_svid(X509SvidParams {
        spiffe_id: SpiffeId::new("spiffe://example.org/w").unwrap(),
        public_key: verify_csr(&csr).unwrap(),
        dns_names: vec![],
        ttl: None,
    })
    .unwrap()
}

/// The parsed signing key is cached between SVIDs; activating another
/// authority (by hand or by rotation) must never leave SVIDs signed by the
/// one it replaced.
#[tokio::test(start_paused = true)]
async fn the_cached_signer_follows_the_active_authority() {
    let ca = memory_ca(Duration::from_secs(24 * 3600)).await;
    let first = ca.bundle().x509_authorities[0].clone();
    assert!(signed_by(&sign_one(&ca), &first));
    assert!(signed_by(&sign_one(&ca), &first), "cached signer");

    // Prepared: published, not yet signing.
    let prepared = ca.prepare_authority(AuthorityKind::X509).await.unwrap();
    assert!(signed_by(&sign_one(&ca), &first));
    let second = ca
        .bundle()
        .x509_authorities
        .into_iter()
        .find(|c| *c != first)
        .unwrap();

    // Activated: every SVID from now on is signed by the new authority.
    ca.activate_authority(AuthorityKind::X509, &prepared.authority_id)
        .await
        .unwrap();
    for _ in 0..3 {
        let svid = sign_one(&ca);
        assert!(signed_by(&svid, &second));
        assert!(!signed_by(&svid, &first));
    }
}

#[tokio::test(start_paused = true)]
async fn the_cached_signer_follows_automatic_rotation() {
    let ca = memory_ca(Duration::from_secs(60)).await;
    let first = ca.bundle().x509_authorities[0].clone();
    // Fill the cache before the rotation.
    assert!(signed_by(&sign_one(&ca), &first));
    let rotation = tokio::spawn(ca.clone().run_rotation());
    let mut bundles = ca.watch_bundle();
    let second = bundles
        .wait_for(|b| b.x509_authorities.len() == 2)
        .await
        .unwrap()
        .x509_authorities
        .iter()
        .find(|c| **c != first)
        .unwrap()
        .clone();
    // The old authority leaves the bundle once it expires, well after the
    // new one was activated.
    bundles
        .wait_for(|b| !b.x509_authorities.contains(&first))
        .await
        .unwrap();
    let svid = sign_one(&ca);
    assert!(signed_by(&svid, &second));
    assert!(!signed_by(&svid, &first));
    rotation.abort();
}

/// Two servers on one datastore (as on a shared database): each keeps its
/// own CA and journal, the stored bundle holds both, each serves it, and
/// one server revoking its old authority leaves the other's in place.
#[tokio::test(start_paused = true)]
async fn servers_sharing_a_datastore_publish_one_bundle_with_both_cas() {
    let ds: Arc<dyn crate::datastore::DataStore> =
        Arc::new(SledDataStore::open_temporary().unwrap());
    let clock = Clock::starting_at(start_time());
    let start = |id: &str| {
        let mut c = config(Duration::from_secs(24 * 3600));
        c.server_id = id.into();
        Ca::start(
            c,
            Arc::new(MemoryKeyManager::new()),
            ds.clone(),
            clock.clone(),
        )
    };
    let a = start("a").await.unwrap();
    let b = start("b").await.unwrap();
    let a_ca = a.authority_state(AuthorityKind::X509).unwrap().active;
    let b_ca = b.authority_state(AuthorityKind::X509).unwrap().active;
    assert_ne!(
        a_ca.authority_id, b_ca.authority_id,
        "each server has its own CA"
    );
    let ids = |bundle: &TrustBundle| -> Vec<String> {
        let mut ids: Vec<_> = bundle
            .x509_authorities
            .iter()
            .map(|der| subject_key_id(der).unwrap())
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![a_ca.authority_id.clone(), b_ca.authority_id.clone()];
    both.sort();
    assert_eq!(ids(&b.bundle()), both);
    // A learns of B's CA when it reads the bundle again (the server does
    // so when the stored sequence moves).
    a.refresh_shared_bundle().await.unwrap();
    assert_eq!(ids(&a.bundle()), both);
    assert_eq!(a.bundle().jwt_authorities.len(), 2);

    // A rotates by hand and revokes its first CA: only that one leaves.
    let prepared = a.prepare_authority(AuthorityKind::X509).await.unwrap();
    a.activate_authority(AuthorityKind::X509, &prepared.authority_id)
        .await
        .unwrap();
    a.taint_authority(AuthorityKind::X509, &a_ca.authority_id)
        .await
        .unwrap();
    a.revoke_authority(AuthorityKind::X509, &a_ca.authority_id)
        .await
        .unwrap();
    let mut now = vec![prepared.authority_id.clone(), b_ca.authority_id.clone()];
    now.sort();
    assert_eq!(ids(&a.bundle()), now);
    b.refresh_shared_bundle().await.unwrap();
    assert_eq!(ids(&b.bundle()), now);

    // Restarted, each server finds its own journal (not the other's).
    drop(b);
    let b = start("b").await;
    assert!(
        b.is_err(),
        "a new key manager without B's keys must not load B's journal"
    );
}
