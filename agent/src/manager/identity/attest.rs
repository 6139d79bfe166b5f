//! Attestation: the bootstrap roots (`trust_bundle_path`), one node
//! attestation with the configured attestor ([`attest`]), and attesting
//! again while running (`Manager::reattest`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use spinel_spiffe::tls::TrustWatch;

use crate::client::{self, ServerPool};
use crate::config::AgentConfig;
use crate::manager::certs::{key_and_csr, validity};
use crate::manager::error::ManagerError;
use crate::manager::persist::store::Store;
use crate::manager::state::{AgentSvid, Manager};

pub(crate) fn bootstrap_roots(config: &AgentConfig) -> Result<Vec<Vec<u8>>, ManagerError> {
    let Some(path) = &config.trust_bundle_path else {
        if config.insecure_bootstrap {
            tracing::warn!("insecure_bootstrap: the server is not verified on first contact");
            return Ok(Vec::new());
        }
        return Err(ManagerError::NoIdentity(
            "no trust bundle: set agent.trust_bundle_path (e.g. the output of `spinel-server bundle show -format pem`) or insecure_bootstrap = true".into(),
        ));
    };
    let bad = |reason: String| ManagerError::Bundle {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let roots = if config.trust_bundle_format == "spiffe" {
        spinel_spiffe::TrustBundle::from_json(config.trust_domain.clone(), &bytes)
            .map_err(|e| bad(e.to_string()))?
            .x509_authorities
    } else {
        let text = String::from_utf8(bytes).map_err(|_| bad("not PEM text".into()))?;
        pem_certificates(&text).map_err(bad)?
    };
    if roots.is_empty() {
        return Err(bad("holds no CA certificate".into()));
    }
    Ok(roots)
}

/// The DER certificates of a PEM document.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            body = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            let b64 = body.take().ok_or("END without BEGIN")?;
            out.push(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| "certificate is not base64".to_owned())?,
            );
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    Ok(out)
}

/// Attests with the configured node attestor; returns the SVID and whether
/// the server lets the agent attest again.
pub(crate) async fn attest(
    config: &AgentConfig,
    pool: &Arc<ServerPool>,
    roots: &[Vec<u8>],
    store: &Store,
    trust: &Arc<TrustWatch>,
) -> Result<(AgentSvid, bool), ManagerError> {
    use crate::attestor::node::{self, NodeAttestorConfig};
    // x509pop answers the server's challenge with the node's key.
    let mut evidence = None;
    let data = match &config.node_attestor {
        NodeAttestorConfig::JoinToken => {
            let Some(token) = &config.join_token else {
                return Err(ManagerError::NoIdentity(
                    "the agent has no valid SVID in data_dir and no join token: create one with `spinel-server token generate` and pass it with -joinToken or agent.join_token".into(),
                ));
            };
            node::join_token::attestation_data(token)
        }
        NodeAttestorConfig::K8sPsat(psat) => node::k8s_psat::attestation_data(psat)?,
        NodeAttestorConfig::X509pop(pop) => {
            let loaded = node::x509pop::load(pop)?;
            let data = loaded.attestation_data();
            evidence = Some(loaded);
            data
        }
    };
    let (key, csr) = key_and_csr()?;
    let channel = client::server_channel(config, pool, roots, None, trust)?;
    let respond = evidence
        .as_ref()
        .map(|e| move |challenge: &[u8]| e.respond(challenge));
    let attested = node::attest_with_challenges(
        channel,
        data,
        csr,
        respond.as_ref().map(|r| r as node::ChallengeResponder<'_>),
    )
    .await?;
    let (not_before, not_after) = attested
        .chain
        .first()
        .and_then(|c| validity(c))
        .ok_or_else(|| {
            ManagerError::NoIdentity("the server returned an unreadable agent SVID".into())
        })?;
    tracing::info!(
        spiffe_id = %attested.spiffe_id,
        node_attestor = config.node_attestor.name(),
        reattestable = attested.reattestable,
        "node attestation succeeded"
    );
    crate::metrics::node_attestation(config.node_attestor.name());
    store.save_svid(&attested.chain, &key)?;
    Ok((
        AgentSvid {
            chain: attested.chain,
            key,
            not_before,
            not_after,
        },
        attested.reattestable,
    ))
}

impl Manager {
    /// Attests again with fresh evidence and installs the new SVID.
    pub(crate) async fn reattest(&self) -> Result<(), ManagerError> {
        let roots = self.roots.read().map(|r| r.clone()).unwrap_or_default();
        let (svid, reattestable) =
            attest(&self.config, &self.pool, &roots, &self.store, &self.trust).await?;
        self.reattestable.store(reattestable, Ordering::Relaxed);
        let not_after = svid.not_after;
        self.set_agent_svid(svid)?;
        tracing::info!(expires = ?not_after, "re-attested: new agent SVID");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_certificates_parse() {
        let pem = spinel_spiffe::bundle::pem_encode("CERTIFICATE", &[1, 2, 3]);
        assert_eq!(pem_certificates(&pem).unwrap(), vec![vec![1, 2, 3]]);
        assert!(pem_certificates("-----END CERTIFICATE-----").is_err());
    }
}
