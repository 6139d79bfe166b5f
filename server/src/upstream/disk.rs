//! `UpstreamAuthority "disk"`: the upstream CA's certificate and key in PEM
//! files.
//!
//! - `cert_file_path`: the upstream signing certificate first, then any
//!   intermediates up to the root;
//! - `key_file_path`: its private key (PKCS#8 `PRIVATE KEY`, or SEC1 /
//!   PKCS#1 where the crypto backend reads them);
//! - `bundle_file_path` (optional): the roots. Without it the signing
//!   certificate must be self-signed and is the one root.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::PublicKeyData;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spinel_spiffe::clock::from_unix_seconds;
use x509_parser::extensions::ParsedExtension;

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

fn self_signed(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject() == c.issuer() && c.verify_signature(None).is_ok())
        .unwrap_or(false)
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
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| bad_key(format!("no usable PEM private key: {e}")))?;
    let pair = rcgen::KeyPair::try_from(&key)
        .map_err(|e| bad_key(format!("unsupported private key: {e}")))?;
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
        Some(path) => certs("bundle_file_path", path)?,
        None => {
            if !self_signed(&signing) {
                return Err(UpstreamError::BadCertificate {
                    what: "cert_file_path",
                    path: cert_path.to_owned(),
                    reason: "the certificate is not self-signed, so bundle_file_path must name its roots".into(),
                });
            }
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
    Ok(UpstreamCa {
        cert_der: signing,
        key: Arc::new(key),
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
