//! Tests of the listener TLS configuration.

use super::*;
use rustls_pki_types::PrivatePkcs8KeyDer;
use spinel_spiffe::{TrustBundle, TrustDomain};

/// Whether `config` can resume a session in any way.
fn resumes(config: &ServerConfig) -> bool {
    config.session_storage.can_cache() || config.ticketer.enabled() || config.send_tls13_tickets > 0
}

fn resolver(provider: &CryptoProvider) -> Arc<ServerCertResolver> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let signing = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key.serialize_der(),
        )))
        .unwrap();
    Arc::new(ServerCertResolver::new(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    ))))
}

#[test]
fn the_listener_never_resumes_a_session() {
    let provider = provider();
    let (_tx, bundles) =
        tokio::sync::watch::channel(TrustBundle::new(TrustDomain::new("example.org").unwrap()));
    let trust = ClientTrust::new(bundles, provider.clone(), Clock::system());
    let config = server_config(provider.clone(), resolver(&provider), trust).unwrap();
    assert!(!resumes(&config));
    // What rustls does unless told otherwise.
    let default = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver(&provider));
    assert!(resumes(&default));
}
