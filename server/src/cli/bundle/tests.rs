//! `bundle` flags, parsing of bundle data and output formats.

use rcgen::{CertificateParams, IsCa, KeyPair, PublicKeyData};
use spinel_proto::spire::api::server::bundle::v1::{
    batch_delete_federated_bundle_response, batch_set_federated_bundle_response,
    BatchDeleteFederatedBundleResponse, BatchSetFederatedBundleResponse,
};
use spinel_proto::spire::api::types::{JwtKey, Status};
use spinel_spiffe::id::parse_trust_domain;

use super::*;
use crate::cli::admin_client::test_support::{parse, parse_err};
use crate::cli::Command;

fn ca_der() -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().der().to_vec()
}

fn bundle_cmd(args: &[&str]) -> BundleCommand {
    let mut full = vec!["bundle"];
    full.extend_from_slice(args);
    match parse(&full).command {
        Command::Bundle(cmd) => cmd,
        other => panic!("{other:?}"),
    }
}

#[test]
fn flags() {
    match bundle_cmd(&["show"]) {
        BundleCommand::Show(a) => assert_eq!(a.format, BundleFormat::Pem),
        other => panic!("{other:?}"),
    }
    match bundle_cmd(&["show", "-format", "SPIFFE"]) {
        BundleCommand::Show(a) => assert_eq!(a.format, BundleFormat::Spiffe),
        other => panic!("{other:?}"),
    }
    match bundle_cmd(&["set", "-id", "spiffe://other.org", "-path", "b.pem"]) {
        BundleCommand::Set(a) => {
            assert_eq!(a.id.unwrap().to_string(), "other.org");
            assert_eq!(a.path.unwrap(), PathBuf::from("b.pem"));
        }
        other => panic!("{other:?}"),
    }
    match bundle_cmd(&["delete", "-id", "other.org"]) {
        BundleCommand::Delete(a) => assert_eq!(a.mode, Mode::Restrict),
        other => panic!("{other:?}"),
    }
    match bundle_cmd(&["delete", "-id", "other.org", "-mode", "dissociate"]) {
        BundleCommand::Delete(a) => assert_eq!(a.mode, Mode::Dissociate),
        other => panic!("{other:?}"),
    }
    match bundle_cmd(&["list", "-id", "other.org", "-format=spiffe"]) {
        BundleCommand::List(a) => assert_eq!(a.id.unwrap().to_string(), "other.org"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(bundle_cmd(&["count"]), BundleCommand::Count(_)));
}

#[test]
fn bad_values_name_the_flag() {
    for (args, flag) in [
        (&["bundle", "show", "-format", "der"][..], "format"),
        (&["bundle", "set", "-id", "spiffe://Other.org"][..], "id"),
        (
            &["bundle", "set", "-id", "spiffe://other.org/path"][..],
            "id",
        ),
        (
            &["bundle", "delete", "-id", "o.org", "-mode", "purge"][..],
            "mode",
        ),
    ] {
        let err = parse_err(args);
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn pem_round_trip() {
    let td = parse_trust_domain("other.org").unwrap();
    let der = ca_der();
    let pem = pem_encode("CERTIFICATE", &der);
    let bundle = parse_bundle(pem.as_bytes(), BundleFormat::Pem, &td).unwrap();
    assert_eq!(bundle.trust_domain, "other.org");
    assert_eq!(bundle.x509_authorities.len(), 1);
    assert_eq!(bundle.x509_authorities[0].asn1, der);
    assert_eq!(
        format_bundle(&bundle, BundleFormat::Pem, false).unwrap(),
        pem
    );
}

#[test]
fn bad_bundle_data_is_refused() {
    let td = parse_trust_domain("other.org").unwrap();
    let err = parse_bundle(b"not a pem", BundleFormat::Pem, &td).unwrap_err();
    assert!(err.to_string().contains("no PEM certificates"), "{err}");
    let junk = pem_encode("CERTIFICATE", b"junk");
    let err = parse_bundle(junk.as_bytes(), BundleFormat::Pem, &td).unwrap_err();
    assert!(err.to_string().contains("certificate 1"), "{err}");
    let err = parse_bundle(b"{}", BundleFormat::Spiffe, &td).unwrap_err();
    assert!(err.to_string().contains("spiffe bundle"), "{err}");
}

#[test]
fn spiffe_round_trip_with_jwt_authority() {
    let td = parse_trust_domain("example.org").unwrap();
    let jwt_key = KeyPair::generate().unwrap();
    let bundle = Bundle {
        trust_domain: "example.org".into(),
        x509_authorities: vec![X509Certificate {
            asn1: ca_der(),
            tainted: false,
        }],
        jwt_authorities: vec![JwtKey {
            public_key: jwt_key.subject_public_key_info(),
            key_id: "kid-1".into(),
            expires_at: 0,
            tainted: false,
        }],
        refresh_hint: 300,
        sequence_number: 7,
        wit_authorities: vec![],
    };
    let text = format_bundle(&bundle, BundleFormat::Spiffe, false).unwrap();
    assert!(text.starts_with("{\n    \"keys\": ["), "{text}");
    assert!(text.contains("\"spiffe_sequence\": 7"), "{text}");
    assert!(text.contains("\"spiffe_refresh_hint\": 300"), "{text}");
    assert!(text.ends_with("}\n"));
    let back = parse_bundle(text.as_bytes(), BundleFormat::Spiffe, &td).unwrap();
    assert_eq!(back, bundle);
}

#[test]
fn list_golden_layout() {
    let der = ca_der();
    let pem = pem_encode("CERTIFICATE", &der);
    let b = |td: &str| Bundle {
        trust_domain: td.into(),
        x509_authorities: vec![X509Certificate {
            asn1: der.clone(),
            tainted: false,
        }],
        ..Default::default()
    };
    let resp = ListFederatedBundlesResponse {
        bundles: vec![b("a.org"), b("b.org")],
        next_page_token: String::new(),
    };
    let rule = "****************************************";
    assert_eq!(
        format_list(&resp, BundleFormat::Pem).unwrap(),
        format!("{rule}\n* a.org\n{rule}\n{pem}\n{rule}\n* b.org\n{rule}\n{pem}")
    );
}

#[test]
fn batch_outcomes() {
    let set = |code, message: &str| BatchSetFederatedBundleResponse {
        results: vec![batch_set_federated_bundle_response::Result {
            status: Some(Status {
                code,
                message: message.into(),
            }),
            bundle: None,
        }],
    };
    assert!(set_outcome(&set(0, "OK")).is_ok());
    assert_eq!(
        set_outcome(&set(3, "bad bundle")).unwrap_err().to_string(),
        "failed to set federated bundle: bad bundle"
    );
    let delete = BatchDeleteFederatedBundleResponse {
        results: vec![batch_delete_federated_bundle_response::Result {
            status: Some(Status {
                code: 9,
                message: "entries federate with it".into(),
            }),
            trust_domain: "other.org".into(),
        }],
    };
    assert_eq!(
        delete_outcome(&delete).unwrap_err().to_string(),
        "failed to delete federated bundle \"other.org\": entries federate with it"
    );
}
