//! [`X509popAttestor`]: the checks, in the order that keeps a hostile
//! payload cheap (sizes, then key type and size, then key usage, then the
//! chain's signatures, then the challenge).

use async_trait::async_trait;
use rustls_pki_types::UnixTime;
use spinel_spiffe::{id, Clock, Selector, TrustDomain};

use super::chain::CaBundle;
use super::leaf::{challenge_for, check_key_size, parse_leaf, verify_response};
use super::template::AgentPathTemplate;
use super::wire::{AttestationData, Response};
use super::{CHALLENGE_TIMEOUT, MAX_CERTIFICATES, MAX_PAYLOAD_BYTES, MAX_RESPONSE_BYTES, NAME};
use crate::attestor::node::{AttestError, AttestationResult, ChallengeChannel, NodeAttestor};

/// Attests agents that hold a certificate from the configured CAs and its
/// private key.
#[derive(Debug, Clone)]
pub struct X509popAttestor {
    trust_domain: TrustDomain,
    bundle: CaBundle,
    template: AgentPathTemplate,
    clock: Clock,
}

fn invalid(message: impl Into<String>) -> AttestError {
    AttestError::InvalidEvidence(message.into())
}

fn denied(message: impl Into<String>) -> AttestError {
    AttestError::Denied(message.into())
}

impl X509popAttestor {
    /// An attestor for `trust_domain` trusting `bundle`, naming agents
    /// with `template`.
    pub fn new(
        trust_domain: TrustDomain,
        bundle: CaBundle,
        template: AgentPathTemplate,
        clock: Clock,
    ) -> Self {
        X509popAttestor {
            trust_domain,
            bundle,
            template,
            clock,
        }
    }
}

#[async_trait]
impl NodeAttestor for X509popAttestor {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn attest(
        &self,
        payload: &[u8],
        challenge: &mut dyn ChallengeChannel,
    ) -> Result<AttestationResult, AttestError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(invalid(format!(
                "attestation payload of {} bytes is larger than the {MAX_PAYLOAD_BYTES} bytes allowed",
                payload.len()
            )));
        }
        let data: AttestationData = serde_json::from_slice(payload)
            .map_err(|e| invalid(format!("failed to unmarshal data: {e}")))?;
        let certs: Vec<Vec<u8>> = data.certificates.into_iter().map(|c| c.0).collect();
        let Some((leaf_der, intermediates)) = certs.split_first() else {
            return Err(invalid("no certificate to attest"));
        };
        if certs.len() > MAX_CERTIFICATES {
            return Err(invalid(format!(
                "{} certificates sent: at most {MAX_CERTIFICATES} are allowed",
                certs.len()
            )));
        }
        let td = self.trust_domain.as_str();
        let leaf = parse_leaf(leaf_der, td)
            .map_err(|e| invalid(format!("unable to use leaf certificate: {e}")))?;
        for (i, der) in intermediates.iter().enumerate() {
            check_key_size(der).map_err(|e| {
                invalid(format!("unable to parse intermediate certificate {i}: {e}"))
            })?;
        }

        let seconds = u64::try_from(self.clock.unix_seconds()).unwrap_or(0);
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
        let above = self
            .bundle
            .verify(leaf_der, intermediates, now)
            .map_err(|e| denied(format!("certificate verification failed: {e}")))?;

        // The leaf is trusted: prove the agent holds its key.
        let nonce: [u8; 32] = rand::random();
        let sent = challenge_for(&leaf.key, nonce);
        let sent = serde_json::to_vec(&sent)
            .map_err(|e| AttestError::Internal(format!("unable to marshal challenge: {e}")))?;
        let answer = tokio::time::timeout(CHALLENGE_TIMEOUT, challenge.challenge(sent))
            .await
            .map_err(|_| {
                AttestError::Challenge(format!(
                    "no challenge response within {}s",
                    CHALLENGE_TIMEOUT.as_secs()
                ))
            })??;
        if answer.len() > MAX_RESPONSE_BYTES {
            return Err(invalid(format!(
                "challenge response of {} bytes is larger than the {MAX_RESPONSE_BYTES} bytes allowed",
                answer.len()
            )));
        }
        let response: Response = serde_json::from_slice(&answer)
            .map_err(|e| invalid(format!("unable to unmarshal challenge response: {e}")))?;
        verify_response(&leaf.key, &nonce, &response)
            .map_err(|e| denied(format!("challenge response verification failed: {e}")))?;

        let path = self
            .template
            .render(&leaf, td)
            .map_err(|e| AttestError::Internal(format!("failed to make spiffe id: {e}")))?;
        let agent_id = id::parse_id(&format!(
            "{}/spire/agent{path}",
            self.trust_domain.id_string()
        ))
        .map_err(|e| AttestError::Internal(format!("failed to make spiffe id: {e}")))?;
        Ok(AttestationResult {
            agent_id,
            selectors: selectors(&leaf, &above)?,
            can_reattest: true,
        })
    }
}

/// The node selectors (SPIRE's values, type `x509pop`).
fn selectors(leaf: &super::leaf::Leaf, above: &[Vec<u8>]) -> Result<Vec<Selector>, AttestError> {
    let mut values = Vec::new();
    if !leaf.common_name.is_empty() {
        values.push(format!("subject:cn:{}", leaf.common_name));
    }
    let mut seen = std::collections::BTreeSet::new();
    for der in above {
        let fp = super::leaf::fingerprint(der);
        if seen.insert(fp.clone()) {
            values.push(format!("ca:fingerprint:{fp}"));
        }
    }
    values.push(format!("serialnumber:{}", leaf.serial_hex));
    for (key, value) in &leaf.san_selectors {
        values.push(format!("san:{key}:{value}"));
    }
    values
        .into_iter()
        .map(|v| {
            Selector::new(NAME, v)
                .map_err(|e| AttestError::Internal(format!("cannot build a node selector: {e}")))
        })
        .collect()
}
