//! The bundle endpoint in process, fetched with the federation client:
//! the document is SPIFFE bundle JSON with `spiffe_sequence` (incremented
//! on every change) and the configured `spiffe_refresh_hint`; `https_spiffe`
//! presents the server's own SVID, `https_web` the configured files, checked
//! against an extra Web PKI root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::CertificateDer;
use spinel_config::hcl::ConfigFile;
use spinel_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use spinel_proto::spire::api::server::bundle::v1::AppendBundleRequest;
use spinel_proto::spire::api::types::X509Certificate;
use spinel_server::cli::connect_admin;
use spinel_server::config::{from_file, Overrides};
use spinel_server::federation::fetch::{fetch_bundle, web_roots, Authenticate};
use spinel_server::run::{start, RunningServer};
use spinel_spiffe::id::{parse_id, parse_trust_domain};
use spinel_test_fixtures::process::free_port;

async fn server(dir: &Path, endpoint: &str) -> RunningServer {
    let text = format!(
        r#"server {{
    bind_address = "127.0.0.1"
    bind_port = 0
    socket_path = "{dir}/api.sock"
    trust_domain = "example.org"
    data_dir = "{dir}/data"
    federation {{
        bundle_endpoint {{
{endpoint}
        }}
    }}
}}
plugins {{
    DataStore "sled" {{
        plugin_data {{}}
    }}
    KeyManager "memory" {{
        plugin_data {{}}
    }}
}}
"#,
        dir = dir.display()
    );
    let file = ConfigFile::parse(&dir.join("server.conf"), &text).unwrap();
    start(from_file(&file, &Overrides::default()).unwrap())
        .await
        .unwrap()
}

fn a_ca() -> (Vec<u8>, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let der = params.self_signed(&key).unwrap().der().to_vec();
    (der, Issuer::new(params, key))
}

#[tokio::test(flavor = "multi_thread")]
async fn https_spiffe_endpoint_serves_the_bundle_with_sequence_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let running = server(
        dir.path(),
        &format!("address = \"127.0.0.1\"\nport = {port}\nrefresh_hint = \"2m\"\nprofile \"https_spiffe\" {{}}"),
    )
    .await;
    let td = parse_trust_domain("example.org").unwrap();
    let url = format!("https://127.0.0.1:{port}/");
    let auth = Authenticate::Spiffe {
        endpoint_id: parse_id("spiffe://example.org/spire/server").unwrap(),
        roots: running.bundle().x509_authorities,
    };
    let provider = spinel_server::api::tls::provider();
    let first = fetch_bundle(&url, &td, &auth, provider.clone())
        .await
        .unwrap();
    assert_eq!(first.refresh_hint, 120);
    assert!(first.sequence >= 1);
    assert_eq!(first.x509_authorities, running.bundle().x509_authorities);
    assert_eq!(
        first.jwt_authorities.len(),
        running.bundle().jwt_authorities.len()
    );

    // A change (an appended authority) is served with the next sequence.
    let (extra, _) = a_ca();
    BundleClient::new(connect_admin(running.socket_path()).await.unwrap())
        .append_bundle(AppendBundleRequest {
            x509_authorities: vec![X509Certificate {
                asn1: extra.clone(),
                tainted: false,
            }],
            jwt_authorities: vec![],
            wit_authorities: vec![],
            output_mask: None,
        })
        .await
        .unwrap();
    let second = fetch_bundle(&url, &td, &auth, provider.clone())
        .await
        .unwrap();
    assert_eq!(second.sequence, first.sequence + 1);
    assert!(second.x509_authorities.contains(&extra));

    // The wrong expected ID is refused.
    let wrong = Authenticate::Spiffe {
        endpoint_id: parse_id("spiffe://example.org/someone-else").unwrap(),
        roots: running.bundle().x509_authorities,
    };
    let err = fetch_bundle(&url, &td, &wrong, provider).await.unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn https_web_endpoint_serves_its_cert_files() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_der, issuer) = a_ca();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let port = free_port().unwrap();
    let running = server(
        dir.path(),
        &format!(
            "address = \"127.0.0.1\"\nport = {port}\nprofile \"https_web\" {{\nserving_cert_file {{\ncert_file_path = \"{}\"\nkey_file_path = \"{}\"\n}}\n}}",
            cert_path.display(),
            key_path.display()
        ),
    )
    .await;
    let td = parse_trust_domain("example.org").unwrap();
    let url = format!("https://localhost:{port}");
    let provider = spinel_server::api::tls::provider();
    let trusted = Authenticate::Web(std::sync::Arc::new(web_roots(&[CertificateDer::from(
        ca_der,
    )])));
    let bundle = fetch_bundle(&url, &td, &trusted, provider.clone())
        .await
        .unwrap();
    assert_eq!(bundle.refresh_hint, 300, "SPIRE's default hint");
    assert_eq!(bundle.x509_authorities, running.bundle().x509_authorities);
    // Without the extra root, the Web PKI does not trust the endpoint.
    let public_only = Authenticate::Web(std::sync::Arc::new(web_roots(&[])));
    assert!(fetch_bundle(&url, &td, &public_only, provider)
        .await
        .is_err());
    running.shutdown().await.unwrap();
}

/// A raw HTTPS GET with `host` as the Host header: status and body.
async fn https_get(port: u16, root: &[u8], host: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root.to_vec())).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(spinel_server::api::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8(response).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_discovery_over_tls_serves_only_its_domains() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_der, issuer) = a_ca();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (endpoint_port, oidc_port) = (free_port().unwrap(), free_port().unwrap());
    let running = server(
        dir.path(),
        &format!(
            "address = \"127.0.0.1\"\nport = {endpoint_port}\n}}\n}}\noidc_discovery {{\naddress = \"127.0.0.1\"\nport = {oidc_port}\ndomains = [\"localhost\"]\nserving_cert_file {{\ncert_file_path = \"{}\"\nkey_file_path = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        ),
    )
    .await;
    let host = format!("localhost:{oidc_port}");
    let (status, body) = https_get(
        oidc_port,
        &ca_der,
        &host,
        "/.well-known/openid-configuration",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        doc["issuer"],
        format!("https://{host}"),
        "no jwt_issuer: the host"
    );
    assert_eq!(doc["jwks_uri"], format!("https://{host}/keys"));
    let (status, body) = https_get(oidc_port, &ca_der, &host, "/keys").await;
    assert_eq!(status, 200);
    let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), running.bundle().jwt_authorities.len());
    assert_eq!(
        keys[0]["kid"],
        running.bundle().jwt_authorities[0].key_id.as_str()
    );
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[0]["use"], "sig");
    let (status, _) = https_get(oidc_port, &ca_der, "evil.example", "/keys").await;
    assert_eq!(status, 404, "a host outside `domains`");
    running.shutdown().await.unwrap();
}
