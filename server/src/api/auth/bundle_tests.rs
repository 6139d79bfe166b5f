//! Authorization judges a connection's client chain by the bundle as it is
//! when the request arrives, not as it was at the handshake (DESIGN.md
//! invariant 9): a real CA rotated away from the chain's CA.

use std::sync::Arc;
use std::time::Duration;

use rcgen::PublicKeyData;
use rustls_pki_types::CertificateDer;
use spinel_spiffe::{Clock, SpiffeId, TrustDomain};

use super::*;
use crate::api::client_trust::{ClientTrust, PeerChain};
use crate::api::ApiSettings;
use crate::attestor::node::NodeAttestors;
use crate::ca::{AuthorityKind, Ca, CaConfig, CaSubject, X509SvidParams};
use crate::datastore::sled::SledDataStore;
use crate::keymanager::{KeyType, MemoryKeyManager};

const ADMIN: &str = "spiffe://example.org/admin";

fn ca_config() -> CaConfig {
    CaConfig {
        trust_domain: TrustDomain::new("example.org").unwrap(),
        server_id: "test-server".into(),
        ca_key_type: KeyType::EcP256,
        jwt_key_type: KeyType::EcP256,
        ca_ttl: Duration::from_secs(24 * 3600),
        ca_subject: CaSubject::default(),
        default_x509_svid_ttl: Duration::from_secs(3600),
        default_jwt_svid_ttl: Duration::from_secs(300),
        upstream: None,
        jwt_issuer: None,
    }
}

#[tokio::test]
async fn a_request_is_judged_by_the_bundle_of_its_time() {
    let clock = Clock::system();
    let datastore = Arc::new(SledDataStore::open_temporary().unwrap());
    let ca = Ca::start(
        ca_config(),
        Arc::new(MemoryKeyManager::new()),
        datastore.clone(),
        clock.clone(),
    )
    .await
    .unwrap();
    let state = ApiState::new(
        ApiSettings {
            trust_domain: TrustDomain::new("example.org").unwrap(),
            admin_ids: vec![SpiffeId::new(ADMIN).unwrap()],
            agent_ttl: None,
        },
        datastore,
        ca.clone(),
        NodeAttestors::new(),
        clock.clone(),
    );
    let key = rcgen::KeyPair::generate().unwrap();
    let svid = ca
        .sign_x509_svid(X509SvidParams {
            spiffe_id: SpiffeId::new(ADMIN).unwrap(),
            public_key: key.subject_public_key_info(),
            dns_names: Vec::new(),
            ttl: None,
        })
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let trust = ClientTrust::new(ca.watch_bundle(), provider, clock);
    let chain = svid.chain.into_iter().map(CertificateDer::from).collect();
    let peer = PeerInfo::Tcp {
        remote: None,
        chain: Some(PeerChain::new(chain, trust)),
    };
    let count = method::COUNT_ENTRIES;
    assert!(state.authorize_peer(Some(&peer), count).await.is_ok());

    // Rotated away from; still in the bundle while tainted.
    let first = crate::ca::subject_key_id(&ca.bundle().x509_authorities[0]).unwrap();
    let next = ca.prepare_authority(AuthorityKind::X509).await.unwrap();
    ca.activate_authority(AuthorityKind::X509, &next.authority_id)
        .await
        .unwrap();
    ca.taint_authority(AuthorityKind::X509, &first)
        .await
        .unwrap();
    assert!(state.authorize_peer(Some(&peer), count).await.is_ok());

    // Revoked: the same connection's next request is refused.
    ca.revoke_authority(AuthorityKind::X509, &first)
        .await
        .unwrap();
    let refused = state.authorize_peer(Some(&peer), count).await.unwrap_err();
    assert_eq!(refused.code, tonic::Code::PermissionDenied);
    assert!(
        refused
            .message
            .contains("does not chain to the current trust bundle"),
        "{}",
        refused.message
    );
}
