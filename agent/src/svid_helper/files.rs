//! What the helper writes: PEM files from an X.509 response, JWT-SVID and
//! JWT bundle files, each replaced atomically (temporary file, fsync,
//! rename), the key never readable beyond its configured mode.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use spinel_proto::workload::{X509svid, X509svidResponse};
use spinel_spiffe::bundle::pem_encode;
use spinel_spiffe::keyfile;
use zeroize::Zeroizing;

use super::config::HelperConfig;
use crate::workload_client::parse_certs;

/// The SVID of `response` the helper keeps: the one with the configured
/// hint, else the first (the workload's default identity).
pub fn choose<'a>(
    config: &HelperConfig,
    response: &'a X509svidResponse,
) -> anyhow::Result<&'a X509svid> {
    let chosen = match &config.hint {
        Some(hint) => response.svids.iter().find(|s| &s.hint == hint),
        None => response.svids.first(),
    };
    match (chosen, &config.hint) {
        (Some(svid), _) => Ok(svid),
        (None, Some(hint)) => bail!(
            "no X509-SVID has hint {hint:?} (the agent sent {})",
            response
                .svids
                .iter()
                .map(|s| format!("{} hint {:?}", s.spiffe_id, s.hint))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (None, None) => bail!("the Workload API response holds no X509-SVID"),
    }
}

fn pem_certs(der: &[&[u8]]) -> String {
    der.iter().map(|d| pem_encode("CERTIFICATE", d)).collect()
}

/// The three X.509 files' contents for `svid`: chain, key, bundle.
pub fn x509_contents(
    config: &HelperConfig,
    svid: &X509svid,
    response: &X509svidResponse,
) -> anyhow::Result<(String, Zeroizing<String>, String)> {
    let context = || format!("the X509-SVID of {}", svid.spiffe_id);
    let chain = parse_certs(&svid.x509_svid).with_context(context)?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        bail!("{} has no certificate", context());
    };
    let bundle = parse_certs(&svid.bundle).with_context(context)?;
    if bundle.is_empty() {
        bail!("{} comes with an empty trust bundle", context());
    }
    if svid.x509_svid_key.is_empty() {
        bail!("{} comes without its private key", context());
    }
    let mut chain_der: Vec<&[u8]> = vec![leaf.der];
    let mut bundle_der: Vec<&[u8]> = bundle.iter().map(|c| c.der).collect();
    let intermediates = intermediates.iter().map(|c| c.der);
    if config.add_intermediates_to_bundle {
        bundle_der.extend(intermediates);
    } else {
        chain_der.extend(intermediates);
    }
    let mut federated_pem = String::new();
    if config.include_federated_domains {
        // Sorted by trust domain, so an unchanged set writes the same bytes.
        let mut domains: Vec<_> = response.federated_bundles.iter().collect();
        domains.sort();
        for (td, der) in domains {
            let certs =
                parse_certs(der).with_context(|| format!("the federated bundle of {td}"))?;
            federated_pem.push_str(&pem_certs(&certs.iter().map(|c| c.der).collect::<Vec<_>>()));
        }
    }
    let key = Zeroizing::new(pem_encode("PRIVATE KEY", &svid.x509_svid_key));
    Ok((
        pem_certs(&chain_der),
        key,
        pem_certs(&bundle_der) + &federated_pem,
    ))
}

/// Writes the X.509 files of `svid` into `cert_dir`; returns the paths.
pub fn write_x509(
    config: &HelperConfig,
    svid: &X509svid,
    response: &X509svidResponse,
) -> anyhow::Result<Vec<PathBuf>> {
    let (chain, key, bundle) = x509_contents(config, svid, response)?;
    let dir = &config.cert_dir;
    let bundle_path = dir.join(&config.svid_bundle_file_name);
    let key_path = dir.join(&config.svid_key_file_name);
    let chain_path = dir.join(&config.svid_file_name);
    // Bundle first, so that a reader of the new chain can verify it; the
    // key before the chain it belongs to.
    keyfile::write_atomic(&bundle_path, bundle.as_bytes(), config.cert_file_mode)?;
    keyfile::write_atomic(&key_path, key.as_bytes(), config.key_file_mode)?;
    keyfile::write_atomic(&chain_path, chain.as_bytes(), config.cert_file_mode)?;
    Ok(vec![chain_path, key_path, bundle_path])
}

/// Writes a JWT-SVID file.
pub fn write_jwt(config: &HelperConfig, file_name: &str, token: &str) -> anyhow::Result<PathBuf> {
    let path = config.cert_dir.join(file_name);
    keyfile::write_atomic(&path, token.as_bytes(), config.jwt_svid_file_mode)?;
    Ok(path)
}

/// Writes the JWT bundle file (the JWKS of the SVID's trust domain).
pub fn write_jwt_bundle(
    config: &HelperConfig,
    file_name: &str,
    jwks: &[u8],
) -> anyhow::Result<PathBuf> {
    let path = config.cert_dir.join(file_name);
    keyfile::write_atomic(&path, jwks, config.jwt_bundle_file_mode)?;
    Ok(path)
}
