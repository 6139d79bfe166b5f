//! Node attestation: proving this node to the server for a first agent SVID.
//!
//! `join_token`: the agent sends the token (single use, from `spinel-server
//! token generate`) with a CSR for a fresh key over `AttestAgent`; the server
//! answers with the agent's X509-SVID
//! (`spiffe://<td>/spire/agent/join_token/<token>`). The token is a secret:
//! it is never logged.

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
}

/// The agent SVID the server issued.
#[derive(Debug, Clone)]
pub struct Attested {
    /// Chain, leaf first, DER.
    pub chain: Vec<Vec<u8>>,
    /// The agent's SPIFFE ID.
    pub spiffe_id: String,
}

/// Attests with a join token, sending `csr` for the agent's key.
pub async fn attest_join_token(
    channel: Channel,
    token: &str,
    csr: Vec<u8>,
) -> Result<Attested, AttestError> {
    let request = AttestAgentRequest {
        step: Some(attest_agent_request::Step::Params(
            attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: "join_token".into(),
                    payload: token.as_bytes().to_vec(),
                }),
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
            })
        }
        Some(attest_agent_response::Step::Challenge(_)) => Err(AttestError::Failed(
            "the server sent a challenge, which join_token attestation does not expect".into(),
        )),
        None => Err(AttestError::Failed("empty response".into())),
    }
}
