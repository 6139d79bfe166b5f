//! `UpstreamAuthority "disk"` with the files operators actually have:
//! made by `openssl` the usual ways (SEC1 and PKCS#1 keys, SHA-512 and
//! RSA-PSS signatures, intermediates), and SPIRE's own stock upstream CA
//! (`conf/server/dummy_upstream_ca.{crt,key}` of the spire Go module), read
//! from the Go module cache when it is there.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::CertificateDer;

use super::keys::read_private_key;
use super::signature::verify_signed_by;
use super::{load_disk, DiskUpstreamConfig, UpstreamCa};

/// Runs openssl in `dir`; the test fails with its stderr.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CA_EXT: [&str; 4] = [
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
];

/// A self-signed CA `name.crt` for `name.key`, with extra `req` options.
fn self_signed(dir: &Path, name: &str, extra: &[&str]) {
    let key = format!("{name}.key");
    let crt = format!("{name}.crt");
    let mut args = vec![
        "req",
        "-x509",
        "-new",
        "-key",
        &key,
        "-subj",
        "/C=US/O=SPIFFE",
        "-days",
        "30",
        "-out",
        &crt,
    ];
    args.extend_from_slice(&CA_EXT);
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

fn config(dir: &Path, name: &str, bundle: Option<&str>) -> DiskUpstreamConfig {
    DiskUpstreamConfig {
        cert_file_path: dir.join(format!("{name}.crt")),
        key_file_path: dir.join(format!("{name}.key")),
        bundle_file_path: bundle.map(|b| dir.join(b)),
    }
}

/// Signs a Spinel-CA-shaped certificate with the upstream key, as
/// `ca::x509` does, and checks the signature against the upstream cert.
fn signs_an_intermediate(up: &UpstreamCa) {
    let pair = up.key_pair().unwrap();
    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(up.cert_der()), pair).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let own = KeyPair::generate().unwrap();
    let cert = params.signed_by(&own, &issuer).unwrap();
    let (_, child) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    let (_, parent) = x509_parser::parse_x509_certificate(up.cert_der()).unwrap();
    verify_signed_by(&child, parent.public_key()).unwrap();
}

#[test]
fn sec1_p384_root_signed_with_sha512_like_spires_stock_ca() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            "up.key",
        ],
    );
    self_signed(dir.path(), "up", &["-sha512"]);
    let pem = std::fs::read_to_string(dir.path().join("up.key")).unwrap();
    assert!(pem.contains("BEGIN EC PRIVATE KEY"), "{pem}");
    let up = load_disk(&config(dir.path(), "up", None)).unwrap();
    assert_eq!(up.roots().len(), 1);
    assert!(up.chain().is_empty());
    signs_an_intermediate(&up);
}

#[test]
fn sec1_p256_and_pkcs8_keys_load() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "a.key",
        ],
    );
    self_signed(dir.path(), "a", &["-sha512"]);
    signs_an_intermediate(&load_disk(&config(dir.path(), "a", None)).unwrap());
    openssl(
        dir.path(),
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            "b.key",
        ],
    );
    self_signed(dir.path(), "b", &["-sha384"]);
    signs_an_intermediate(&load_disk(&config(dir.path(), "b", None)).unwrap());
}

#[test]
fn pkcs1_rsa_keys_with_pkcs1_and_pss_signatures() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &["genrsa", "-traditional", "-out", "r.key", "2048"],
    );
    let pem = std::fs::read_to_string(dir.path().join("r.key")).unwrap();
    assert!(pem.contains("BEGIN RSA PRIVATE KEY"), "{pem}");
    self_signed(dir.path(), "r", &["-sha512"]);
    signs_an_intermediate(&load_disk(&config(dir.path(), "r", None)).unwrap());
    std::fs::copy(dir.path().join("r.key"), dir.path().join("p.key")).unwrap();
    self_signed(
        dir.path(),
        "p",
        &[
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
        ],
    );
    load_disk(&config(dir.path(), "p", None)).unwrap();
}

/// Root (P-384) -> intermediate signed with `digest`; the intermediate's
/// key is SEC1 P-256. Files: root.crt, int.crt, int.key.
fn intermediate(dir: &Path, digest: &str) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            "root.key",
        ],
    );
    self_signed(dir, "root", &["-sha384"]);
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "int.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "int.key",
            "-subj",
            "/O=SPIFFE/CN=int",
            "-out",
            "int.csr",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "root.crt",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "30",
            digest,
            "-extfile",
            "ext.cnf",
            "-out",
            "int.crt",
        ],
    );
}

#[test]
fn an_intermediate_signed_with_sha512_chains_to_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    intermediate(dir.path(), "-sha512");
    let up = load_disk(&config(dir.path(), "int", Some("root.crt"))).unwrap();
    assert_eq!(up.chain().len(), 1);
    signs_an_intermediate(&up);
}

#[test]
fn a_chain_that_does_not_reach_the_bundle_is_named() {
    let dir = tempfile::tempdir().unwrap();
    intermediate(dir.path(), "-sha256");
    // Another root in the bundle: the intermediate's issuer is not there.
    openssl(
        dir.path(),
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "other.key",
        ],
    );
    self_signed(dir.path(), "other", &["-subj", "/O=Other"]);
    let err = load_disk(&config(dir.path(), "int", Some("other.crt")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not chain") && err.contains("int.crt"),
        "{err}"
    );
}

#[test]
fn a_sha1_intermediate_is_refused_as_insecure() {
    let dir = tempfile::tempdir().unwrap();
    intermediate(dir.path(), "-sha1");
    let err = load_disk(&config(dir.path(), "int", Some("root.crt")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ecdsa-with-SHA1") && err.contains("insecure"),
        "{err}"
    );
}

#[test]
fn an_intermediate_without_its_bundle_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    intermediate(dir.path(), "-sha256");
    let err = load_disk(&config(dir.path(), "int", None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not self-signed") && err.contains("bundle_file_path"),
        "{err}"
    );
}

#[test]
fn keys_spinel_cannot_sign_with_are_named() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &[
            "ecparam",
            "-name",
            "secp521r1",
            "-genkey",
            "-noout",
            "-out",
            "e.key",
        ],
    );
    let err = read_private_key(&std::fs::read(dir.path().join("e.key")).unwrap()).unwrap_err();
    assert!(err.contains("P-521"), "{err}");
    openssl(
        dir.path(),
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "e.key", "-out", "e8.key",
        ],
    );
    let err = read_private_key(&std::fs::read(dir.path().join("e8.key")).unwrap()).unwrap_err();
    assert!(err.contains("P-521") && err.contains("PKCS#8"), "{err}");
    openssl(
        dir.path(),
        &["genrsa", "-traditional", "-out", "small.key", "1024"],
    );
    let err = read_private_key(&std::fs::read(dir.path().join("small.key")).unwrap()).unwrap_err();
    assert!(err.contains("1024 bits"), "{err}");
    openssl(
        dir.path(),
        &[
            "pkcs8", "-topk8", "-in", "e.key", "-passout", "pass:x", "-out", "enc.key",
        ],
    );
    let err = read_private_key(&std::fs::read(dir.path().join("enc.key")).unwrap()).unwrap_err();
    assert!(err.contains("encrypted"), "{err}");
    let err = read_private_key(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap_err();
    assert!(err.contains("no PEM private key"), "{err}");
}

/// SPIRE's own `conf/server` directory in the Go module cache
/// (`go mod download github.com/spiffe/spire@v1.13.3`), if present.
fn spire_conf_server() -> Option<PathBuf> {
    let out = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .ok()?;
    let cache = String::from_utf8(out.stdout).ok()?;
    let dir = Path::new(cache.trim()).join("github.com/spiffe/spire@v1.13.3/conf/server");
    dir.join("dummy_upstream_ca.key").exists().then_some(dir)
}

#[test]
fn spires_stock_upstream_ca_loads() {
    let Some(dir) = spire_conf_server() else {
        eprintln!(
            "skipped: SPIRE's conf/server is not in the Go module cache \
             (go mod download github.com/spiffe/spire@v1.13.3)"
        );
        return;
    };
    let up = load_disk(&DiskUpstreamConfig {
        cert_file_path: dir.join("dummy_upstream_ca.crt"),
        key_file_path: dir.join("dummy_upstream_ca.key"),
        bundle_file_path: None,
    })
    .unwrap();
    assert_eq!(up.roots().len(), 1);
    signs_an_intermediate(&up);
}
