//! Manual authority operations: the journal state machine, with paused time,
//! real keys and a real (sled) journal.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use spinel_spiffe::{Clock, SpiffeId, TrustDomain};

use super::*;
use crate::datastore::sled::SledDataStore;
use crate::datastore::DataStore;
use crate::keymanager::DiskKeyManager;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn config() -> CaConfig {
    CaConfig {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        server_id: "test-server".into(),
        ca_key_type: KeyType::EcP256,
        jwt_key_type: KeyType::EcP256,
        ca_ttl: DAY,
        ca_subject: CaSubject::default(),
        default_x509_svid_ttl: Duration::from_secs(3600),
        default_jwt_svid_ttl: Duration::from_secs(300),
        jwt_issuer: None,
        upstream: None,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    ds: Arc<dyn DataStore>,
    keys_path: std::path::PathBuf,
    clock: Clock,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            ds: Arc::new(SledDataStore::open(&dir.path().join("ds")).unwrap()),
            keys_path: dir.path().join("keys.json"),
            clock: Clock::starting_at(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            _dir: dir,
        }
    }

    async fn start(&self) -> Arc<Ca> {
        Ca::start(
            config(),
            Arc::new(DiskKeyManager::open(&self.keys_path).unwrap()),
            self.ds.clone(),
            self.clock.clone(),
        )
        .await
        .unwrap()
    }
}

fn leaf_issuer_is(ca: &Ca, expected_ca_der: &[u8]) -> bool {
    let key = crate::keymanager::SigningKey::generate("t", KeyType::EcP256).unwrap();
    let svid = ca
        .sign_x509_svid(X509SvidParams {
            spiffe_id: SpiffeId::new("spiffe://example.org/w").unwrap(),
            public_key: key.public_key_der().to_vec(),
            dns_names: vec![],
            ttl: None,
        })
        .unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(&svid.chain[0]).unwrap();
    let (_, issuer) = x509_parser::parse_x509_certificate(expected_ca_der).unwrap();
    leaf.verify_signature(Some(issuer.public_key())).is_ok()
}

#[tokio::test(start_paused = true)]
async fn x509_prepare_activate_taint_revoke() {
    let fx = Fixture::new();
    let ca = fx.start().await;
    let s0 = ca.authority_state(AuthorityKind::X509).unwrap();
    assert!(s0.prepared.is_none() && s0.old.is_none());
    let first_der = ca.bundle().x509_authorities[0].clone();
    assert_eq!(s0.active.authority_id, subject_key_id(&first_der).unwrap());

    // Out of order: nothing prepared, taint/revoke the active one, empty IDs.
    let err = ca
        .activate_authority(AuthorityKind::X509, &s0.active.authority_id)
        .await
        .unwrap_err();
    assert!(matches!(err, CaError::OutOfOrder(_)), "{err}");
    assert!(err.to_string().contains("no prepared authority"), "{err}");
    let err = ca
        .taint_authority(AuthorityKind::X509, &s0.active.authority_id)
        .await
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidAuthority(_)), "{err}");
    assert!(err.to_string().contains("active authority"), "{err}");
    let err = ca
        .revoke_authority(AuthorityKind::X509, "")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no authority ID provided"),
        "{err}"
    );

    // Prepare: published, not used.
    let prepared = ca.prepare_authority(AuthorityKind::X509).await.unwrap();
    assert_eq!(ca.bundle().x509_authorities.len(), 2);
    assert!(leaf_issuer_is(&ca, &first_der));
    let err = ca
        .activate_authority(AuthorityKind::X509, "0000")
        .await
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidAuthority(_)), "{err}");
    let err = ca
        .taint_authority(AuthorityKind::X509, &prepared.authority_id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("prepared authority"), "{err}");

    // Activate: new SVIDs chain to the new CA, the old one stays published.
    let active = ca
        .activate_authority(AuthorityKind::X509, &prepared.authority_id)
        .await
        .unwrap();
    assert_eq!(active.authority_id, prepared.authority_id);
    let bundle = ca.bundle();
    assert_eq!(bundle.x509_authorities.len(), 2);
    let new_der = bundle
        .x509_authorities
        .iter()
        .find(|der| subject_key_id(der).unwrap() == prepared.authority_id)
        .unwrap()
        .clone();
    assert!(leaf_issuer_is(&ca, &new_der));
    let s1 = ca.authority_state(AuthorityKind::X509).unwrap();
    assert_eq!(
        s1.old.as_ref().unwrap().authority_id,
        s0.active.authority_id
    );

    // Revoke before taint is refused; taint, taint again refused.
    let old_id = s0.active.authority_id.clone();
    let err = ca
        .revoke_authority(AuthorityKind::X509, &old_id)
        .await
        .unwrap_err();
    assert!(matches!(err, CaError::OutOfOrder(_)), "{err}");
    assert!(err.to_string().contains("not tainted"), "{err}");
    let tainted = ca
        .taint_authority(AuthorityKind::X509, &old_id)
        .await
        .unwrap();
    assert!(tainted.tainted);
    assert_eq!(ca.tainted_x509_authorities(), vec![first_der.clone()]);
    assert_eq!(ca.bundle().x509_authorities.len(), 2);
    let err = ca
        .taint_authority(AuthorityKind::X509, &old_id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already tainted"), "{err}");

    // Revoke: gone from the bundle and the datastore's copy.
    let seq = fx
        .ds
        .get_bundle("example.org")
        .await
        .unwrap()
        .unwrap()
        .sequence_number;
    ca.revoke_authority(AuthorityKind::X509, &old_id)
        .await
        .unwrap();
    assert_eq!(ca.bundle().x509_authorities, vec![new_der.clone()]);
    let stored = fx.ds.get_bundle("example.org").await.unwrap().unwrap();
    assert_eq!(stored.x509_authorities, vec![new_der]);
    assert!(stored.sequence_number > seq);
    assert!(ca
        .authority_state(AuthorityKind::X509)
        .unwrap()
        .old
        .is_none());
    assert!(ca.tainted_x509_authorities().is_empty());
}

#[tokio::test(start_paused = true)]
async fn jwt_operations_and_restart_resume_the_journal() {
    let fx = Fixture::new();
    let ca = fx.start().await;
    let first = ca.authority_state(AuthorityKind::Jwt).unwrap().active;
    let prepared = ca.prepare_authority(AuthorityKind::Jwt).await.unwrap();
    assert_eq!(ca.bundle().jwt_authorities.len(), 2);

    // A restart with a prepared key keeps it prepared.
    drop(ca);
    let ca = fx.start().await;
    let s = ca.authority_state(AuthorityKind::Jwt).unwrap();
    assert_eq!(s.active.authority_id, first.authority_id);
    assert_eq!(
        s.prepared.as_ref().unwrap().authority_id,
        prepared.authority_id
    );

    ca.activate_authority(AuthorityKind::Jwt, &prepared.authority_id)
        .await
        .unwrap();
    let token = ca
        .sign_jwt_svid(
            &SpiffeId::new("spiffe://example.org/w").unwrap(),
            &["aud".to_owned()],
            None,
        )
        .unwrap();
    let header = token.token.split('.').next().unwrap();
    let header =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap();
    assert!(String::from_utf8(header)
        .unwrap()
        .contains(&prepared.authority_id));
    ca.taint_authority(AuthorityKind::Jwt, &first.authority_id)
        .await
        .unwrap();

    // A restart keeps the taint.
    drop(ca);
    let ca = fx.start().await;
    let s = ca.authority_state(AuthorityKind::Jwt).unwrap();
    assert_eq!(s.active.authority_id, prepared.authority_id);
    let old = s.old.unwrap();
    assert_eq!(old.authority_id, first.authority_id);
    assert!(old.tainted);
    assert_eq!(
        ca.tainted_jwt_authorities(),
        vec![first.authority_id.clone()]
    );
    ca.revoke_authority(AuthorityKind::Jwt, &first.authority_id)
        .await
        .unwrap();
    let kids: Vec<String> = ca
        .bundle()
        .jwt_authorities
        .iter()
        .map(|k| k.key_id.clone())
        .collect();
    assert_eq!(kids, vec![prepared.authority_id]);
}

#[tokio::test(start_paused = true)]
async fn automatic_rotation_keeps_working_after_manual_operations() {
    let fx = Fixture::new();
    let ca = fx.start().await;
    let prepared = ca.prepare_authority(AuthorityKind::X509).await.unwrap();
    ca.activate_authority(AuthorityKind::X509, &prepared.authority_id)
        .await
        .unwrap();
    let rotation = tokio::spawn(ca.clone().run_rotation());
    // Past the new CA's prepare point (half its life) and activate point
    // (5/6 of it): the schedule runs from the manually activated CA.
    tokio::time::sleep(DAY / 2 + Duration::from_secs(60)).await;
    let s = ca.authority_state(AuthorityKind::X509).unwrap();
    assert_eq!(s.active.authority_id, prepared.authority_id);
    let auto = s.prepared.expect("rotation prepared the next CA");
    tokio::time::sleep(DAY / 3).await;
    let s = ca.authority_state(AuthorityKind::X509).unwrap();
    assert_eq!(s.active.authority_id, auto.authority_id);
    assert_eq!(s.old.unwrap().authority_id, prepared.authority_id);
    rotation.abort();
}

#[tokio::test(start_paused = true)]
async fn upstream_intermediate_chains_and_bundle() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    p.not_after = time::OffsetDateTime::from_unix_timestamp(1_800_000_000 + 3600 * 12).unwrap();
    let root = p.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("ca.crt"), root.pem()).unwrap();
    std::fs::write(dir.path().join("ca.key"), key.serialize_pem()).unwrap();
    let upstream = crate::upstream::load_disk(&crate::upstream::DiskUpstreamConfig {
        cert_file_path: dir.path().join("ca.crt"),
        key_file_path: dir.path().join("ca.key"),
        bundle_file_path: None,
    })
    .unwrap();
    let fx = Fixture::new();
    let mut cfg = config();
    cfg.upstream = Some(upstream);
    let ca = Ca::start(
        cfg,
        Arc::new(DiskKeyManager::open(&fx.keys_path).unwrap()),
        fx.ds.clone(),
        fx.clock.clone(),
    )
    .await
    .unwrap();
    assert_eq!(ca.bundle().x509_authorities, vec![root.der().to_vec()]);
    // The intermediate never outlives the upstream certificate (12 h < ca_ttl).
    assert_eq!(
        ca.ca_not_after().unwrap(),
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 3600 * 12)
    );
    let key = crate::keymanager::SigningKey::generate("t", KeyType::EcP256).unwrap();
    let svid = ca
        .sign_x509_svid(X509SvidParams {
            spiffe_id: SpiffeId::new("spiffe://example.org/w").unwrap(),
            public_key: key.public_key_der().to_vec(),
            dns_names: vec![],
            ttl: None,
        })
        .unwrap();
    assert_eq!(svid.chain.len(), 2);
    let state = ca.authority_state(AuthorityKind::X509).unwrap();
    assert_eq!(
        state.active.upstream_authority_subject_key_id,
        subject_key_id(root.der()).unwrap()
    );
    let prepared = ca.prepare_authority(AuthorityKind::X509).await.unwrap();
    ca.activate_authority(AuthorityKind::X509, &prepared.authority_id)
        .await
        .unwrap();
    assert_eq!(ca.bundle().x509_authorities, vec![root.der().to_vec()]);
    let old = ca
        .authority_state(AuthorityKind::X509)
        .unwrap()
        .old
        .unwrap();
    let err = ca
        .taint_authority(AuthorityKind::X509, &old.authority_id)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UpstreamAuthority"), "{err}");
}

/// A disk key manager that stores a new key and then fails, as a server
/// killed (or a datastore failing) right after the key write would.
#[derive(Debug)]
struct FailsAfterStoring(DiskKeyManager);

impl crate::keymanager::KeyManager for FailsAfterStoring {
    fn generate_key(
        &self,
        id: &str,
        key_type: KeyType,
    ) -> Result<Arc<crate::keymanager::SigningKey>, crate::keymanager::KeyError> {
        self.0.generate_key(id, key_type)?;
        Err(crate::keymanager::KeyError::Key {
            id: id.to_owned(),
            reason: "stopped after storing the key".into(),
        })
    }

    fn get_key(
        &self,
        id: &str,
    ) -> Result<Option<Arc<crate::keymanager::SigningKey>>, crate::keymanager::KeyError> {
        self.0.get_key(id)
    }
}

#[tokio::test(start_paused = true)]
async fn preparing_again_never_journals_a_prepared_authority_whose_key_was_replaced() {
    for kind in [AuthorityKind::X509, AuthorityKind::Jwt] {
        let fx = Fixture::new();
        let ca = fx.start().await;
        ca.prepare_authority(kind).await.unwrap();
        drop(ca);
        // The second prepare writes its key into the prepared one's slot
        // and stops before journaling.
        let ca = Ca::start(
            config(),
            Arc::new(FailsAfterStoring(
                DiskKeyManager::open(&fx.keys_path).unwrap(),
            )),
            fx.ds.clone(),
            fx.clock.clone(),
        )
        .await
        .unwrap();
        assert!(ca.prepare_authority(kind).await.is_err());
        // The withdrawal was journaled first, in memory and in the store:
        // nothing prepared, and a restart finds every journaled key.
        assert!(ca.authority_state(kind).unwrap().prepared.is_none());
        drop(ca);
        let ca = fx.start().await;
        assert!(ca.authority_state(kind).unwrap().prepared.is_none());
        ca.prepare_authority(kind).await.unwrap();
        drop(ca);
        fx.start().await;
    }
}
