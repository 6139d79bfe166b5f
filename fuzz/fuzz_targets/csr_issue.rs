//! The CSR path of `BatchNewX509SVID`: parse and verify the CSR, take the
//! SVID's names from the registration entry (`api::x509_params_for_entry`,
//! the function the handler calls), and sign with a real CA.
//!
//! Invariants: never issues an ID not in the entry (the one URI SAN is the
//! entry's SPIFFE ID, the DNS SANs are exactly the entry's, whatever the
//! CSR asks for); the certified key is the CSR's; a CSR whose bytes were
//! edited after signing is never accepted with another key; a well-formed
//! CSR from the test key is always served.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData, SanType};
use spinel_server::api::x509_params_for_entry;
use spinel_server::ca::{Ca, CaConfig, CaSubject};
use spinel_server::datastore::sled::SledDataStore;
use spinel_server::datastore::RegistrationEntry;
use spinel_server::keymanager::{KeyType, MemoryKeyManager};
use spinel_spiffe::{Clock, TrustDomain};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

const ENTRY_ID: &str = "spiffe://example.org/workload";
const ENTRY_DNS: &str = "web.example.org";

struct Fixture {
    ca: Arc<Ca>,
    ca_cert: Vec<u8>,
    key: KeyPair,
    /// The test key's SubjectPublicKeyInfo (DER).
    spki: Vec<u8>,
    _runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let config = CaConfig {
            trust_domain: TrustDomain::new("example.org").expect("valid"),
            server_id: "fuzz".into(),
            ca_key_type: KeyType::EcP256,
            jwt_key_type: KeyType::EcP256,
            ca_ttl: Duration::from_secs(24 * 3600),
            ca_subject: CaSubject::default(),
            default_x509_svid_ttl: Duration::from_secs(3600),
            default_jwt_svid_ttl: Duration::from_secs(300),
            upstream: None,
            jwt_issuer: None,
        };
        let ca = runtime
            .block_on(Ca::start(
                config,
                Arc::new(MemoryKeyManager::new()),
                Arc::new(SledDataStore::open_temporary().expect("temporary datastore")),
                Clock::system(),
            ))
            .expect("CA starts");
        let ca_cert = ca.bundle().x509_authorities[0].clone();
        let key = KeyPair::try_from(spinel_fuzz::test_key_pkcs8(1).as_slice()).expect("test key");
        let spki = key.subject_public_key_info();
        Fixture {
            ca,
            ca_cert,
            key,
            spki,
            _runtime: runtime,
        }
    })
}

#[derive(Debug, Arbitrary)]
enum San {
    Uri(String),
    Dns(String),
    Email(String),
    Ip([u8; 4]),
}

#[derive(Debug, Arbitrary)]
enum Input {
    /// Arbitrary bytes as the CSR.
    Raw(Vec<u8>),
    /// A CSR signed by the test key asking for these names, then edited.
    Built {
        sans: Vec<San>,
        common_name: Option<String>,
        edits: Vec<(u16, u8)>,
    },
}

fn build_csr(fx: &Fixture, sans: &[San], common_name: &Option<String>) -> Option<Vec<u8>> {
    let mut params = CertificateParams::default();
    for san in sans {
        params.subject_alt_names.push(match san {
            San::Uri(s) => SanType::URI(s.as_str().try_into().ok()?),
            San::Dns(s) => SanType::DnsName(s.as_str().try_into().ok()?),
            San::Email(s) => SanType::Rfc822Name(s.as_str().try_into().ok()?),
            San::Ip(b) => SanType::IpAddress((*b).into()),
        });
    }
    if let Some(cn) = common_name {
        params
            .distinguished_name
            .push(DnType::CommonName, cn.clone());
    }
    let csr = params.serialize_request(&fx.key).ok()?;
    Some(csr.der().to_vec())
}

fuzz_target!(|input: Input| {
    let fx = fixture();
    let entry = RegistrationEntry {
        id: "entry-1".into(),
        spiffe_id: ENTRY_ID.into(),
        parent_id: "spiffe://example.org/spire/agent/join_token/t".into(),
        dns_names: vec![ENTRY_DNS.into()],
        ..RegistrationEntry::default()
    };
    let (csr, built, edited) = match &input {
        Input::Raw(bytes) => (bytes.clone(), false, true),
        Input::Built {
            sans,
            common_name,
            edits,
        } => {
            let Some(original) = build_csr(fx, sans, common_name) else {
                return;
            };
            let mut csr = original.clone();
            for &(at, byte) in edits {
                let at = usize::from(at) % csr.len();
                csr[at] = byte;
            }
            let edited = csr != original;
            (csr, true, edited)
        }
    };

    let params = match x509_params_for_entry(&entry, &csr) {
        Ok(params) => params,
        Err(e) => {
            assert!(
                !(built && !edited),
                "a CSR signed by the test key was refused: {e:?}"
            );
            return;
        }
    };
    // Names and lifetime come from the entry; the key from the CSR.
    assert_eq!(params.spiffe_id.to_string(), ENTRY_ID);
    assert_eq!(params.dns_names, vec![ENTRY_DNS.to_owned()]);
    assert_eq!(params.ttl, None);
    let (_, parsed_csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&csr)
            .expect("an accepted CSR parses");
    assert_eq!(
        params.public_key,
        parsed_csr.certification_request_info.subject_pki.raw
    );
    if built {
        assert_eq!(
            params.public_key, fx.spki,
            "an edited CSR was accepted with another key"
        );
    }
    let public_key = params.public_key.clone();

    let svid = match fx.ca.sign_x509_svid(params) {
        Ok(svid) => svid,
        // A verified CSR may still hold a key rcgen cannot certify.
        Err(e) => {
            assert!(!built, "the test key's CSR was not signed: {e}");
            return;
        }
    };
    assert_eq!(svid.chain.len(), 1);
    let (_, leaf) = x509_parser::parse_x509_certificate(&svid.chain[0]).expect("leaf parses");
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&fx.ca_cert).expect("CA parses");
    leaf.verify_signature(Some(ca_cert.public_key()))
        .expect("the leaf is signed by the CA");
    assert_eq!(leaf.public_key().raw, public_key.as_slice());
    assert!(!leaf.is_ca());
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    for ext in leaf.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                match name {
                    GeneralName::URI(u) => uris.push(u.to_string()),
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    other => panic!("the SVID carries a name not in the entry: {other:?}"),
                }
            }
        }
    }
    assert_eq!(
        uris,
        vec![ENTRY_ID.to_owned()],
        "issued an ID not in the entry"
    );
    assert_eq!(
        dns,
        vec![ENTRY_DNS.to_owned()],
        "issued a DNS name not in the entry"
    );
    for cn in leaf.subject().iter_common_name() {
        assert_eq!(cn.as_str().ok(), Some(ENTRY_DNS));
    }
});
