//! Node attestors: evidence from an agent in, an agent identity out.
//!
//! `AttestAgent` hands the attestor the payload of the agent's first message
//! and a [`ChallengeChannel`] for attestors that run a challenge/response
//! exchange (x509pop, TPM). The attestor answers with an
//! [`AttestationResult`]: the agent's SPIFFE ID (under
//! `spiffe://<td>/spire/agent/<attestor>/...`), its node selectors (what node
//! alias entries are matched against) and whether it may attest again.
//!
//! Attestors in this build:
//! - [`JoinTokenAttestor`] (`join_token`): a single-use, expiring secret
//!   created by an operator (invariant 7: one token, one agent).
//! - [`K8sPsatAttestor`] (`k8s_psat`): a Kubernetes projected service
//!   account token, checked with the cluster's TokenReview API; agents
//!   re-attest with fresh tokens.
//! - [`X509popAttestor`] (`x509pop`): a certificate from a configured CA
//!   and proof of possession of its key (a signed challenge); agents
//!   re-attest with a fresh challenge.
//!
//! Attestors never log evidence (tokens, keys); errors name what was wrong,
//! never the secret.

pub mod join_token;
pub mod k8s_psat;
pub mod x509pop;

pub use join_token::JoinTokenAttestor;
pub use k8s_psat::K8sPsatAttestor;
pub use x509pop::X509popAttestor;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use spinel_spiffe::{Selector, SpiffeId};

/// What an attestor concluded about an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationResult {
    /// The agent's SPIFFE ID.
    pub agent_id: SpiffeId,
    /// Node selectors (facts about the node), matched by node alias entries.
    pub selectors: Vec<Selector>,
    /// The agent may attest again with fresh evidence instead of renewing.
    pub can_reattest: bool,
}

/// Why attestation failed. Messages never carry the evidence itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The evidence is malformed, unknown, spent or expired (the caller sent
    /// something that can never succeed).
    #[error("{0}")]
    InvalidEvidence(String),
    /// The evidence is well formed but does not entitle the caller to an
    /// agent identity (e.g. a service account that is not allowed).
    #[error("{0}")]
    Denied(String),
    /// The challenge/response exchange with the agent failed.
    #[error("challenge failed: {0}")]
    Challenge(String),
    /// The server could not complete attestation (datastore, upstream API).
    #[error("{0}")]
    Internal(String),
}

/// The agent's side of a challenge/response exchange, provided by the
/// `AttestAgent` stream.
#[async_trait]
pub trait ChallengeChannel: Send {
    /// Sends `challenge` to the agent and waits for its response.
    async fn challenge(&mut self, challenge: Vec<u8>) -> Result<Vec<u8>, AttestError>;
}

/// A node attestor: verifies an agent's evidence.
#[async_trait]
pub trait NodeAttestor: Send + Sync + std::fmt::Debug + 'static {
    /// The attestor's name as agents send it in `AttestationData.type`
    /// (`join_token`, `k8s_psat`, ...).
    fn name(&self) -> &'static str;

    /// Verifies `payload` (running challenges through `challenge` if the
    /// attestor needs them) and returns who the agent is.
    async fn attest(
        &self,
        payload: &[u8],
        challenge: &mut dyn ChallengeChannel,
    ) -> Result<AttestationResult, AttestError>;
}

/// The node attestors a server is configured with, by name.
#[derive(Debug, Clone, Default)]
pub struct NodeAttestors {
    by_name: BTreeMap<&'static str, Arc<dyn NodeAttestor>>,
}

impl NodeAttestors {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an attestor under its own name.
    pub fn insert(&mut self, attestor: Arc<dyn NodeAttestor>) {
        self.by_name.insert(attestor.name(), attestor);
    }

    /// The attestor called `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn NodeAttestor>> {
        self.by_name.get(name)
    }

    /// Names of the configured attestors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}

/// A [`ChallengeChannel`] for attestors that never challenge, and for tests:
/// any challenge fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChallenges;

#[async_trait]
impl ChallengeChannel for NoChallenges {
    async fn challenge(&mut self, _challenge: Vec<u8>) -> Result<Vec<u8>, AttestError> {
        Err(AttestError::Challenge(
            "this exchange does not support challenges".into(),
        ))
    }
}
