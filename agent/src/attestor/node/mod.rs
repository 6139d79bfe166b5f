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
//! - [`x509pop`]: the payload is the node's certificate chain; the server
//!   challenges the agent to sign with the certificate's key
//!   ([`attest_with_challenges`]); the agent ID is by default
//!   `spiffe://<td>/spire/agent/x509pop/<SHA-1 of the certificate>`.
//!   Reattestable.
//!
//! Tokens are secrets: they are never logged, and no error carries one.

pub mod join_token;
pub mod k8s_psat;
pub mod x509pop;

pub use k8s_psat::K8sPsatConfig;
pub use x509pop::X509popConfig;

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
    /// `NodeAttestor "x509pop"`.
    X509pop(X509popConfig),
}

impl NodeAttestorConfig {
    /// The plugin name.
    pub fn name(&self) -> &'static str {
        match self {
            NodeAttestorConfig::JoinToken => join_token::NAME,
            NodeAttestorConfig::K8sPsat(_) => k8s_psat::NAME,
            NodeAttestorConfig::X509pop(_) => x509pop::NAME,
        }
    }

    /// The attestor attests again rather than renewing, and at every start.
    pub fn reattests(&self) -> bool {
        matches!(
            self,
            NodeAttestorConfig::K8sPsat(_) | NodeAttestorConfig::X509pop(_)
        )
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

/// Answers one challenge of the server (x509pop signs it with the node's
/// key).
pub type ChallengeResponder<'a> = &'a (dyn Fn(&[u8]) -> Result<Vec<u8>, AttestError> + Sync);

/// How many challenges one attestation answers at most.
const MAX_CHALLENGES: usize = 4;

/// Runs `AttestAgent` with `data` (which holds a secret: it is never
/// logged) and `csr` for the agent's key, for attestors the server does
/// not challenge.
pub async fn attest(
    channel: Channel,
    data: types::AttestationData,
    csr: Vec<u8>,
) -> Result<Attested, AttestError> {
    attest_with_challenges(channel, data, csr, None).await
}

/// Runs `AttestAgent` with `data` and `csr`, answering each challenge the
/// server sends with `respond` (none: a challenge is an error).
pub async fn attest_with_challenges(
    channel: Channel,
    data: types::AttestationData,
    csr: Vec<u8>,
    respond: Option<ChallengeResponder<'_>>,
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
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tx.send(request)
        .await
        .map_err(|_| AttestError::Failed("the request stream closed".into()))?;
    // Without challenges the request stream ends after the first message.
    let tx = respond.is_some().then_some(tx);
    let mut stream = AgentClient::new(channel)
        .attest_agent(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(status_err)?
        .into_inner();
    let mut challenges = 0;
    loop {
        let message = stream.message().await.map_err(status_err)?.ok_or_else(|| {
            AttestError::Failed("the server closed the stream without a result".into())
        })?;
        match message.step {
            Some(attest_agent_response::Step::Result(result)) => {
                let svid = result
                    .svid
                    .ok_or_else(|| AttestError::Failed("the result holds no SVID".into()))?;
                let id = svid.id.unwrap_or_default();
                return Ok(Attested {
                    chain: svid.cert_chain,
                    spiffe_id: format!("spiffe://{}{}", id.trust_domain, id.path),
                    reattestable: result.reattestable,
                });
            }
            Some(attest_agent_response::Step::Challenge(challenge)) => {
                let (Some(respond), Some(sender)) = (respond, tx.as_ref()) else {
                    return Err(AttestError::Failed(format!(
                        "the server sent a challenge, which {kind} attestation does not expect"
                    )));
                };
                challenges += 1;
                if challenges > MAX_CHALLENGES {
                    return Err(AttestError::Failed(format!(
                        "the server sent more than {MAX_CHALLENGES} challenges"
                    )));
                }
                let answer = respond(&challenge)?;
                sender
                    .send(AttestAgentRequest {
                        step: Some(attest_agent_request::Step::ChallengeResponse(answer)),
                    })
                    .await
                    .map_err(|_| AttestError::Failed("the request stream closed".into()))?;
            }
            None => return Err(AttestError::Failed("empty response".into())),
        }
    }
}
