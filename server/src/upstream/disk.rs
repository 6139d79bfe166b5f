//! `UpstreamAuthority "disk"`: the upstream CA's certificate and key in PEM
//! files.
//!
//! - `cert_file_path`: the upstream signing certificate first, then any
//!   intermediates up to the root;
//! - `key_file_path`: its private key (PKCS#8 `PRIVATE KEY`, SEC1
//!   `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`: see [`super::keys`]);
//! - `bundle_file_path` (optional): the roots; the signing certificate
//!   must chain to one of them. Without it the file holds exactly one
//!   certificate, self-signed, which is the one root (SPIRE's rules).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::PublicKeyData;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use spinel_spiffe::clock::from_unix_seconds;
use x509_parser::extensions::ParsedExtension;

use super::keys::read_private_key;
use super::signature::{verify_signed_by, SignatureProblem};
use super::{UpstreamCa, UpstreamError};
use crate::ca::subject_key_id;

/// `plugin_data` of `UpstreamAuthority "disk"`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUpstreamConfig {
    /// The upstream certificate (and chain), PEM.
    pub cert_file_path: PathBuf,
    /// The upstream private key, PEM.
    pub key_file_path: PathBuf,
    /// The upstream roots, PEM; `None`: the certificate is its own root.
    pub bundle_file_path: Option<PathBuf>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, UpstreamError> {
    std::fs::read(path).map_err(|e| UpstreamError::Read {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<Vec<u8>>, UpstreamError> {
    let bad = |reason: String| UpstreamError::BadCertificate {
        what,
        path: path.to_owned(),
        reason,
    };
    let bytes = read(what, path)?;
    let mut out = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| bad(format!("not valid PEM: {e}")))?;
        x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|e| bad(format!("unparsable certificate: {e}")))?;
        out.push(cert.as_ref().to_vec());
    }
    if out.is_empty() {
        return Err(bad("no PEM CERTIFICATE block found".into()));
    }
    Ok(out)
}

/// Checks that `der` is a CA certificate allowed to sign certificates.
fn check_ca(path: &Path, der: &[u8]) -> Result<(), UpstreamError> {
    let not_ca = |reason: &str| UpstreamError::NotCa {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| not_ca("unparsable certificate"))?;
    let mut is_ca = false;
    let mut can_sign = true;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => can_sign = ku.key_cert_sign(),
            _ => {}
        }
    }
    if !is_ca {
        return Err(not_ca("basicConstraints cA is not true"));
    }
    if !can_sign {
        return Err(not_ca("keyUsage lacks keyCertSign"));
    }
    Ok(())
}

/// Without `bundle_file_path` (SPIRE's rule): the file holds exactly one
/// certificate, the self-signed root. Its own signature is checked where
/// the algorithm allows, but a root is trusted by configuration, so an
/// algorithm that cannot be checked only earns a warning (Go's verifier,
/// and so SPIRE, never checks a root's self-signature either).
fn check_single_root(path: &Path, chain: &[Vec<u8>]) -> Result<(), UpstreamError> {
    let bad = |reason: String| UpstreamError::BadCertificate {
        what: "cert_file_path",
        path: path.to_owned(),
        reason,
    };
    if chain.len() != 1 {
        return Err(bad(format!(
            "holds {} certificates; without bundle_file_path it must hold exactly one, \
             the self-signed upstream root (set bundle_file_path to the roots to use an intermediate)",
            chain.len()
        )));
    }
    let (_, cert) =
        x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| bad(e.to_string()))?;
    if cert.subject() != cert.issuer() {
        return Err(bad(format!(
            "the certificate is not self-signed (issued by \"{}\", not by its subject \"{}\"), \
             so bundle_file_path must name its roots",
            cert.issuer(),
            cert.subject()
        )));
    }
    match verify_signed_by(&cert, cert.public_key()) {
        Ok(()) => Ok(()),
        Err(problem @ SignatureProblem::Invalid(_)) => Err(bad(format!(
            "the self-signed certificate is corrupt: {problem}"
        ))),
        Err(problem) => {
            tracing::warn!(file = %path.display(), %problem, "the upstream root's own signature was not checked; a root is trusted as configured");
            Ok(())
        }
    }
}

/// With `bundle_file_path` (SPIRE's rule): the signing certificate chains
/// to one of the roots, through the other certificates of `cert_file_path`.
fn check_chain(
    cert_path: &Path,
    bundle_path: &Path,
    chain: &[Vec<u8>],
    roots: &[Vec<u8>],
) -> Result<(), UpstreamError> {
    let parsed = |ders: &[Vec<u8>]| -> Vec<(Vec<u8>, Vec<u8>)> {
        // (DER, subject DER) pairs; every DER was parsed once already.
        ders.iter()
            .filter_map(|d| {
                let (_, c) = x509_parser::parse_x509_certificate(d).ok()?;
                Some((d.clone(), c.subject().as_raw().to_vec()))
            })
            .collect()
    };
    let roots_p = parsed(roots);
    let inter_p = parsed(chain.get(1..).unwrap_or_default());
    let mut current = chain[0].clone();
    let mut problem: Option<String> = None;
    for _ in 0..=inter_p.len() {
        if roots.contains(&current) {
            return Ok(());
        }
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&current) else {
            break;
        };
        let issuer = cert.issuer().as_raw();
        let mut signed_by = |candidates: &[(Vec<u8>, Vec<u8>)], file: &Path| {
            for (der, _) in candidates.iter().filter(|(_, s)| s.as_slice() == issuer) {
                let Ok((_, parent)) = x509_parser::parse_x509_certificate(der) else {
                    continue;
                };
                match verify_signed_by(&cert, parent.public_key()) {
                    Ok(()) => return Some(der.clone()),
                    Err(p) => {
                        problem = Some(format!(
                            "\"{}\": {p} (issuer \"{}\" in {})",
                            cert.subject(),
                            parent.subject(),
                            file.display()
                        ));
                    }
                }
            }
            None
        };
        if signed_by(&roots_p, bundle_path).is_some() {
            return Ok(());
        }
        match signed_by(&inter_p, cert_path) {
            Some(next) => current = next,
            None => {
                if problem.is_none() {
                    problem = Some(format!(
                        "no certificate in {} or {} is the issuer \"{}\" of \"{}\"",
                        bundle_path.display(),
                        cert_path.display(),
                        cert.issuer(),
                        cert.subject()
                    ));
                }
                break;
            }
        }
    }
    Err(UpstreamError::BadCertificate {
        what: "cert_file_path",
        path: cert_path.to_owned(),
        reason: format!(
            "the certificate does not chain to a root in bundle_file_path: {}",
            problem.unwrap_or_else(|| "the chain is longer than the certificates given".into())
        ),
    })
}

/// Loads and checks an upstream CA from its files.
pub fn load_disk(config: &DiskUpstreamConfig) -> Result<UpstreamCa, UpstreamError> {
    let cert_path = &config.cert_file_path;
    let key_path = &config.key_file_path;
    let chain = certs("cert_file_path", cert_path)?;
    let signing = chain[0].clone();
    check_ca(cert_path, &signing)?;

    let key_bytes = zeroize::Zeroizing::new(read("key_file_path", key_path)?);
    let bad_key = |reason: String| UpstreamError::BadKey {
        path: key_path.to_owned(),
        reason,
    };
    let key = read_private_key(&key_bytes).map_err(bad_key)?;
    let pair = rcgen::KeyPair::try_from(&key.der)
        .map_err(|e| bad_key(format!("{}: the signing library refused it: {e}", key.kind)))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&signing).map_err(|e| {
        UpstreamError::BadCertificate {
            what: "cert_file_path",
            path: cert_path.to_owned(),
            reason: e.to_string(),
        }
    })?;
    if pair.subject_public_key_info() != parsed.public_key().raw {
        return Err(UpstreamError::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        });
    }
    let not_after = from_unix_seconds(parsed.validity().not_after.timestamp());

    let roots = match &config.bundle_file_path {
        Some(path) => {
            let roots = certs("bundle_file_path", path)?;
            check_chain(cert_path, path, &chain, &roots)?;
            roots
        }
        None => {
            check_single_root(cert_path, &chain)?;
            vec![signing.clone()]
        }
    };
    // What SVID chains carry after the Spinel CA: the upstream certificates
    // that are not roots.
    let chain: Vec<Vec<u8>> = chain.into_iter().filter(|c| !roots.contains(c)).collect();
    let authority_id = subject_key_id(&signing).map_err(|e| UpstreamError::BadCertificate {
        what: "cert_file_path",
        path: cert_path.to_owned(),
        reason: e.to_string(),
    })?;
    tracing::info!(cert = %cert_path.display(), key = %key.kind, authority_id = %authority_id, "loaded the upstream CA");
    Ok(UpstreamCa {
        cert_der: signing,
        key: Arc::new(key.der),
        chain,
        roots,
        authority_id,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};

    use super::*;

    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    }

    /// Root -> upstream intermediate, in files: (config, root DER, intermediate DER).
    fn intermediate(dir: &Path, with_bundle: bool) -> (DiskUpstreamConfig, Vec<u8>, Vec<u8>) {
        let root_key = KeyPair::generate().unwrap();
        let root = ca_params("Root").self_signed(&root_key).unwrap();
        let int_key = KeyPair::generate().unwrap();
        let issuer = Issuer::new(ca_params("Root"), &root_key);
        let int = ca_params("Intermediate")
            .signed_by(&int_key, &issuer)
            .unwrap();
        let cfg = DiskUpstreamConfig {
            cert_file_path: dir.join("int.crt"),
            key_file_path: dir.join("int.key"),
            bundle_file_path: with_bundle.then(|| dir.join("roots.crt")),
        };
        std::fs::write(&cfg.cert_file_path, int.pem()).unwrap();
        std::fs::write(&cfg.key_file_path, int_key.serialize_pem()).unwrap();
        std::fs::write(dir.join("roots.crt"), root.pem()).unwrap();
        (cfg, root.der().to_vec(), int.der().to_vec())
    }

    #[test]
    fn intermediate_upstream_with_a_bundle_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, root, int) = intermediate(dir.path(), true);
        let up = load_disk(&cfg).unwrap();
        assert_eq!(up.roots(), &[root]);
        assert_eq!(up.chain(), std::slice::from_ref(&int));
        assert_eq!(up.cert_der(), int.as_slice());
        assert_eq!(up.authority_id(), subject_key_id(&int).unwrap());
        assert!(!format!("{up:?}").contains("PRIVATE"));
    }

    #[test]
    fn intermediate_without_bundle_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, _, _) = intermediate(dir.path(), false);
        let err = load_disk(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("bundle_file_path") && err.contains("int.crt"),
            "{err}"
        );
    }

    #[test]
    fn garbage_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cfg, _, _) = intermediate(dir.path(), true);
        std::fs::write(&cfg.key_file_path, "not a key").unwrap();
        let err = load_disk(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("key_file_path") && err.contains("int.key"),
            "{err}"
        );
        cfg.cert_file_path = dir.path().join("int.key");
        let err = load_disk(&cfg).unwrap_err().to_string();
        assert!(err.contains("no PEM CERTIFICATE"), "{err}");
    }
}
