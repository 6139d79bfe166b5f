//! The `join_token` node attestor.
//!
//! The payload is the token itself. The token is taken out of the datastore
//! atomically ([`DataStore::take_join_token`]), so that of any number of
//! agents presenting the same token at once exactly one succeeds
//! (invariant 7); an expired token is spent as well, and refused. The agent
//! ID is `spiffe://<td>/spire/agent/join_token/<token>`, the agent gets no
//! node selectors, and it cannot re-attest (the token is gone).
//!
//! Messages follow SPIRE's wording, and none of them carries the token.

use std::sync::Arc;

use async_trait::async_trait;
use spinel_spiffe::{id, Clock, TrustDomain};

use super::{AttestError, AttestationResult, ChallengeChannel, NodeAttestor};
use crate::datastore::DataStore;

/// The attestor's name in config files and `AttestationData.type`.
pub const NAME: &str = "join_token";

/// Refusal for a token that is unknown or already spent (SPIRE's text).
pub const TOKEN_NOT_FOUND: &str =
    "failed to attest: join token does not exist or has already been used";
/// Refusal for a token past its expiry (SPIRE's text).
pub const TOKEN_EXPIRED: &str = "join token expired";

/// Attests agents with single-use join tokens.
#[derive(Debug, Clone)]
pub struct JoinTokenAttestor {
    trust_domain: TrustDomain,
    datastore: Arc<dyn DataStore>,
    clock: Clock,
}

impl JoinTokenAttestor {
    /// An attestor for `trust_domain`, taking tokens from `datastore`.
    pub fn new(trust_domain: TrustDomain, datastore: Arc<dyn DataStore>, clock: Clock) -> Self {
        JoinTokenAttestor {
            trust_domain,
            datastore,
            clock,
        }
    }
}

#[async_trait]
impl NodeAttestor for JoinTokenAttestor {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn attest(
        &self,
        payload: &[u8],
        _challenge: &mut dyn ChallengeChannel,
    ) -> Result<AttestationResult, AttestError> {
        let token = std::str::from_utf8(payload)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AttestError::InvalidEvidence(TOKEN_NOT_FOUND.into()))?;
        // The token is also an ID path segment; anything that cannot be one
        // was never issued.
        let agent_id = id::agent_id(&self.trust_domain, NAME, &[token])
            .map_err(|_| AttestError::InvalidEvidence(TOKEN_NOT_FOUND.into()))?;
        let taken = self.datastore.take_join_token(token).await.map_err(|e| {
            // The error may name the record's key, which is the token:
            // report only that the datastore failed.
            let kind = match e {
                crate::datastore::DataStoreError::Backend(_) => "backend failure",
                crate::datastore::DataStoreError::Corrupt { .. } => "corrupt record",
                _ => "unexpected error",
            };
            AttestError::Internal(format!("failed to fetch join token: datastore {kind}"))
        })?;
        let Some(join_token) = taken else {
            return Err(AttestError::InvalidEvidence(TOKEN_NOT_FOUND.into()));
        };
        if join_token.expires_at < self.clock.unix_seconds() {
            return Err(AttestError::InvalidEvidence(TOKEN_EXPIRED.into()));
        }
        Ok(AttestationResult {
            agent_id,
            selectors: Vec::new(),
            can_reattest: false,
        })
    }
}
