//! The rustls client configuration for the kubelet's secure port: its CA
//! (or no verification), and the agent's client certificate if any.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spinel_spiffe::tls::AnyServerCertificate;

use super::config::{Auth, Verify};
use super::K8sError;

/// Builds the client config for `verify` and `auth`, reading the files.
pub(crate) fn client_config(verify: &Verify, auth: &Auth) -> Result<Arc<ClientConfig>, K8sError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| K8sError::Internal(format!("TLS setup: {e}")))?;
    let builder = match verify {
        Verify::Ca(path) => builder.with_root_certificates(roots(path)?),
        Verify::Skip => builder
            .dangerous()
            .with_custom_certificate_verifier(AnyServerCertificate::new(provider)),
    };
    let config = match auth {
        Auth::ClientCert { cert, key } => {
            let chain = certificates(cert, "certificate_path")?;
            let private = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| pem_error(key, "private_key_path", e))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| K8sError::BadCredential {
                    path: cert.clone(),
                    reason: format!("unusable with private_key_path {}: {e}", key.display()),
                })?
        }
        Auth::Token(_) | Auth::Anonymous => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A PEM file that cannot be used; `key` is the `plugin_data` key naming it.
fn pem_error(path: &Path, key: &str, e: rustls_pki_types::pem::Error) -> K8sError {
    let hint = if key == "kubelet_ca_path" {
        " (set `kubelet_ca_path` to the kubelet's CA, or `skip_kubelet_verification = true`)"
    } else {
        ""
    };
    let reason = match e {
        rustls_pki_types::pem::Error::Io(source) => format!("cannot read `{key}`: {source}{hint}"),
        other => format!("`{key}` is not valid PEM: {other}{hint}"),
    };
    K8sError::BadCredential {
        path: path.to_owned(),
        reason,
    }
}

fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, K8sError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, key, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, key, e))?;
    if certs.is_empty() {
        return Err(K8sError::BadCredential {
            path: path.to_owned(),
            reason: format!("`{key}` holds no PEM certificate"),
        });
    }
    Ok(certs)
}

fn roots(path: &Path) -> Result<RootCertStore, K8sError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path, "kubelet_ca_path")? {
        store.add(cert).map_err(|e| K8sError::BadCredential {
            path: path.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}
