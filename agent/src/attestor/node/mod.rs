//! Node attestation: proving this node to the server for an agent SVID.
//!
//! The agent sends `AttestationData { type, payload }` with a CSR for a
//! fresh key over `AttestAgent` ([`attest`]); the server answers with the
//! agent's X509-SVID and whether the agent may attest again.
//!
//! - [`join_token`]: the payload is the token (single use, from
//!   `spinel-server token generate`); the agent ID is
//!   `spiffe://<td>/spire/agent/join_token/<token>`. Not reattestable: the
//!   agent renews its SVID with `RenewAgent`.
//! - [`k8s_psat`]: the payload is `{"cluster", "token"}` with the pod's
//!   projected service account token, read fresh at every attestation; the
//!   agent ID is `spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node-uid>`.
//!   Reattestable: where a join_token agent renews, it attests again.
//!
//! Tokens are secrets: they are never logged, and no error carries one.

pub mod join_token;
pub mod k8s_psat;

pub use k8s_psat::K8sPsatConfig;

use spinel_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use spinel_proto::spire::api::server::agent::v1::{
    attest_agent_request, attest_agent_response, AgentX509svidParams, AttestAgentRequest,
};
use spinel_proto::spire::api::types;
use tonic::transport::Channel;

/// Why attestation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The server refused the evidence (the message says why).
    #[error("the server refused attestation: {0}")]
    Refused(String),
    /// The server could not be reached or answered out of protocol.
    #[error("attestation failed: {0}")]
    Failed(String),
    /// The evidence could not be gathered on this node (the message names
    /// the file or setting).
    #[error("cannot gather attestation evidence: {0}")]
    Evidence(String),
}

/// The node attestor the agent is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAttestorConfig {
    /// `NodeAttestor "join_token"`: the token comes from `-joinToken` or
    /// `agent.join_token`.
    JoinToken,
    /// `NodeAttestor "k8s_psat"`.
    K8sPsat(K8sPsatConfig),
}

impl NodeAttestorConfig {
    /// The plugin name.
    pub fn name(&self) -> &'static str {
        match self {
            NodeAttestorConfig::JoinToken => join_token::NAME,
            NodeAttestorConfig::K8sPsat(_) => k8s_psat::NAME,
        }
    }

    /// The attestor attests again rather than renewing, and at every start.
    pub fn reattests(&self) -> bool {
        matches!(self, NodeAttestorConfig::K8sPsat(_))
    }
}

/// The agent SVID the server issued.
#[derive(Debug, Clone)]
pub struct Attested {
    /// Chain, leaf first, DER.
    pub chain: Vec<Vec<u8>>,
    /// The agent's SPIFFE ID.
    pub spiffe_id: String,
    /// The server lets this agent attest again (and refuses `RenewAgent`).
    pub reattestable: bool,
}

/// Attests with a join token, sending `csr` for the agent's key.
pub async fn attest_join_token(
    channel: Channel,
    token: &str,
    csr: Vec<u8>,
) -> Result<Attested, AttestError> {
    attest(channel, join_token::attestation_data(token), csr).await
}

/// Runs `AttestAgent` with `data` (which holds a secret: it is never
/// logged) and `csr` for the agent's key.
pub async fn attest(
    channel: Channel,
    data: types::AttestationData,
    csr: Vec<u8>,
) -> Result<Attested, AttestError> {
    let kind = data.r#type.clone();
    let request = AttestAgentRequest {
        step: Some(attest_agent_request::Step::Params(
            attest_agent_request::Params {
                data: Some(data),
                params: Some(AgentX509svidParams { csr }),
            },
        )),
    };
    let status_err = |s: tonic::Status| match s.code() {
        tonic::Code::PermissionDenied | tonic::Code::InvalidArgument | tonic::Code::NotFound => {
            AttestError::Refused(s.message().to_owned())
        }
        _ => AttestError::Failed(format!("{}: {}", s.code(), s.message())),
    };
    let mut stream = AgentClient::new(channel)
        .attest_agent(tokio_stream::iter(vec![request]))
        .await
        .map_err(status_err)?
        .into_inner();
    let message = stream.message().await.map_err(status_err)?.ok_or_else(|| {
        AttestError::Failed("the server closed the stream without a result".into())
    })?;
    match message.step {
        Some(attest_agent_response::Step::Result(result)) => {
            let svid = result
                .svid
                .ok_or_else(|| AttestError::Failed("the result holds no SVID".into()))?;
            let id = svid.id.unwrap_or_default();
            Ok(Attested {
                chain: svid.cert_chain,
                spiffe_id: format!("spiffe://{}{}", id.trust_domain, id.path),
                reattestable: result.reattestable,
            })
        }
        Some(attest_agent_response::Step::Challenge(_)) => Err(AttestError::Failed(format!(
            "the server sent a challenge, which {kind} attestation does not expect"
        ))),
        None => Err(AttestError::Failed("empty response".into())),
    }
}
