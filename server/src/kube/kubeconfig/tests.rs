//! Kubeconfig and in-cluster resolution.

use base64::Engine;

use super::*;

fn cert_pem() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["kube".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn config(cluster: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: ctx\nclusters:\n- name: k\n  cluster:\n    server: https://10.0.0.1:6443/\n{cluster}contexts:\n- name: ctx\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n{user}"
    )
}

#[test]
fn relative_ca_file_and_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = cert_pem();
    std::fs::write(dir.path().join("ca.crt"), &ca).unwrap();
    std::fs::write(dir.path().join("tok"), "secret\n").unwrap();
    let text = config(
        "    certificate-authority: ca.crt\n",
        "    tokenFile: tok\n",
    );
    let c = ClusterConnection::parse_kubeconfig(&text, dir.path()).unwrap();
    assert_eq!(c.server, "https://10.0.0.1:6443");
    assert_eq!(c.ca.len(), 1);
    assert!(matches!(c.credentials, Credentials::TokenFile(ref p) if p == &dir.path().join("tok")));
    assert!(!format!("{c:?}").contains("secret"));
}

#[test]
fn client_certificate_data_and_inline_token() {
    let (ca, _) = cert_pem();
    let (cert, key) = cert_pem();
    let cluster = format!("    certificate-authority-data: {}\n", b64(&ca));
    let user = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&cert),
        b64(&key)
    );
    let c = ClusterConnection::parse_kubeconfig(&config(&cluster, &user), Path::new(".")).unwrap();
    assert!(matches!(c.credentials, Credentials::ClientCert { ref chain, .. } if chain.len() == 1));
    assert!(!format!("{c:?}").contains("PRIVATE"));

    let user = "    token: abc.def\n";
    let c = ClusterConnection::parse_kubeconfig(&config(&cluster, user), Path::new(".")).unwrap();
    assert!(matches!(c.credentials, Credentials::Token(ref t) if t.as_str() == "abc.def"));
    assert!(!format!("{c:?}").contains("abc.def"));

    let half = format!("    client-certificate-data: {}\n", b64(&cert));
    let e =
        ClusterConnection::parse_kubeconfig(&config(&cluster, &half), Path::new(".")).unwrap_err();
    assert!(e.contains("without client-key"), "{e}");
}

#[test]
fn refusals_name_the_problem() {
    let insecure = "    insecure-skip-tls-verify: true\n";
    let plain = config(insecure, "    token: t\n").replace("https://", "http://");
    let e = ClusterConnection::parse_kubeconfig(&plain, Path::new(".")).unwrap_err();
    assert!(e.contains("https://"), "{e}");
    let other_ctx =
        config(insecure, "    token: t\n").replace("current-context: ctx", "current-context: nope");
    let e = ClusterConnection::parse_kubeconfig(&other_ctx, Path::new(".")).unwrap_err();
    assert!(e.contains("\"nope\""), "{e}");
    let bad_ca = config("    certificate-authority-data: '%%%'\n", "    token: t\n");
    let e = ClusterConnection::parse_kubeconfig(&bad_ca, Path::new(".")).unwrap_err();
    assert!(
        e.contains("certificate-authority-data is not base64"),
        "{e}"
    );
}

#[test]
fn in_cluster_config() {
    let dir = tempfile::tempdir().unwrap();
    let e = ClusterConnection::in_cluster(None, Some("443".into()), dir.path()).unwrap_err();
    assert!(e.to_string().contains("KUBERNETES_SERVICE_HOST"), "{e}");
    let e = ClusterConnection::in_cluster(Some("10.96.0.1".into()), Some("443".into()), dir.path())
        .unwrap_err();
    assert!(e.to_string().contains("ca.crt"), "{e}");
    std::fs::write(dir.path().join("ca.crt"), cert_pem().0).unwrap();
    let e = ClusterConnection::in_cluster(Some("10.96.0.1".into()), Some("443".into()), dir.path())
        .unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
    std::fs::write(dir.path().join("token"), "t").unwrap();
    let c = ClusterConnection::in_cluster(Some("fd00::1".into()), Some("443".into()), dir.path())
        .unwrap();
    assert_eq!(c.server, "https://[fd00::1]:443");
    assert!(matches!(c.credentials, Credentials::TokenFile(_)));
}
