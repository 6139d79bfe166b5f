//! `AttestAgent` and `RenewAgent`: how an agent gets, and keeps, its SVID.
//!
//! Attestation runs on its own task so that attestors can challenge the
//! agent over the open stream: the handler returns the response stream at
//! once and the task feeds it (a challenge, then the result or an error).
//! The CSR is verified before the evidence is looked at, so a malformed
//! request never spends a join token.

use std::net::SocketAddr;

use async_trait::async_trait;
use futures::Stream;
use spinel_proto::spire::api::server::agent::v1::{
    attest_agent_request, attest_agent_response, AttestAgentRequest, AttestAgentResponse,
    RenewAgentRequest,
};
use spinel_proto::spire::api::types;
use spinel_spiffe::{clock, id, SpiffeId};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use super::agent::AgentService;
use super::auth::Caller;
use super::convert::x509_svid_to_proto;
use super::error::{ApiError, ApiResult};
use crate::attestor::node::{AttestError, ChallengeChannel};
use crate::ca::{verify_csr, X509SvidParams};
use crate::datastore::{AttestedAgent, StoredSelector};

/// The agent's side of the `AttestAgent` stream, for attestor challenges.
struct StreamChallenges<'a> {
    inbound: &'a mut Streaming<AttestAgentRequest>,
    outbound: &'a mpsc::Sender<Result<AttestAgentResponse, Status>>,
}

#[async_trait]
impl ChallengeChannel for StreamChallenges<'_> {
    async fn challenge(&mut self, challenge: Vec<u8>) -> Result<Vec<u8>, AttestError> {
        let message = AttestAgentResponse {
            step: Some(attest_agent_response::Step::Challenge(challenge)),
        };
        self.outbound
            .send(Ok(message))
            .await
            .map_err(|_| AttestError::Challenge("agent went away".into()))?;
        match self.inbound.message().await {
            Ok(Some(AttestAgentRequest {
                step: Some(attest_agent_request::Step::ChallengeResponse(response)),
            })) => Ok(response),
            Ok(Some(_)) => Err(AttestError::Challenge(
                "expected a challenge response".into(),
            )),
            Ok(None) => Err(AttestError::Challenge("agent closed the stream".into())),
            Err(e) => Err(AttestError::Challenge(format!(
                "failed to receive challenge response: {}",
                e.message()
            ))),
        }
    }
}

fn attest_error(e: AttestError) -> ApiError {
    match e {
        AttestError::InvalidEvidence(m) => ApiError::new(Code::InvalidArgument, m),
        AttestError::Denied(m) => ApiError::denied(format!("failed to attest: {m}")),
        AttestError::Challenge(m) => {
            ApiError::new(Code::InvalidArgument, format!("failed to attest: {m}"))
        }
        AttestError::Internal(m) => ApiError::new(Code::Internal, format!("failed to attest: {m}")),
    }
}

impl AgentService {
    /// Runs one attestation exchange on its own task; the returned stream
    /// carries its messages.
    pub(super) fn start_attestation(
        &self,
        inbound: Streaming<AttestAgentRequest>,
        remote: Option<SocketAddr>,
    ) -> impl Stream<Item = Result<AttestAgentResponse, Status>> + Send + 'static {
        let (tx, rx) = mpsc::channel(4);
        let service = self.clone();
        // In this call's audit scope, so the agent ID it notes is audited.
        tokio::spawn(super::audit::in_this_call(async move {
            let mut inbound = inbound;
            let mut attestor = None;
            let outcome = service
                .attest(&mut inbound, &tx, remote, &mut attestor)
                .await;
            let message = outcome.map_err(Status::from);
            let code = message.as_ref().map_or_else(Status::code, |_| Code::Ok);
            crate::metrics::node_attestation(attestor, code);
            let _ = tx.send(message).await;
        }));
        ReceiverStream::new(rx)
    }

    async fn attest(
        &self,
        inbound: &mut Streaming<AttestAgentRequest>,
        outbound: &mpsc::Sender<Result<AttestAgentResponse, Status>>,
        remote: Option<SocketAddr>,
        attestor_name: &mut Option<&'static str>,
    ) -> ApiResult<AttestAgentResponse> {
        let first = inbound
            .message()
            .await
            .map_err(|e| ApiError::invalid("failed to receive request from stream", e.message()))?
            .ok_or_else(|| {
                ApiError::invalid_msg("failed to receive request from stream: stream closed")
            })?;
        let Some(attest_agent_request::Step::Params(params)) = first.step else {
            return Err(ApiError::invalid_msg("malformed param: missing params"));
        };
        let data = params
            .data
            .ok_or_else(|| ApiError::invalid_msg("malformed param: missing attestation data"))?;
        if data.r#type.is_empty() {
            return Err(ApiError::invalid_msg(
                "malformed param: missing attestation data type",
            ));
        }
        let csr = params
            .params
            .map(|p| p.csr)
            .filter(|csr| !csr.is_empty())
            .ok_or_else(|| ApiError::invalid_msg("malformed param: missing CSR"))?;
        let public_key =
            verify_csr(&csr).map_err(|e| ApiError::invalid("failed to parse CSR", e))?;

        let attestor = self
            .state
            .attestors
            .get(&data.r#type)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    Code::FailedPrecondition,
                    format!(
                        "error getting node attestor: could not find node attestor type {:?}",
                        data.r#type
                    ),
                )
            })?;
        *attestor_name = Some(attestor.name());
        let mut challenges = StreamChallenges { inbound, outbound };
        let result = attestor
            .attest(&data.payload, &mut challenges)
            .await
            .map_err(attest_error)?;
        let agent_id = result.agent_id;
        if !agent_id.is_member_of(&self.state.trust_domain) || id::is_server(&agent_id) {
            return Err(ApiError::new(
                Code::Internal,
                format!("node attestor produced an agent ID outside the agent namespace: \"{agent_id}\""),
            ));
        }
        // A join token is spent by now: the ID it is part of reveals
        // nothing usable.
        super::audit::note_entity(&agent_id.to_string());
        let key = agent_id.to_string();
        let existing = self
            .state
            .datastore
            .get_agent(&key)
            .await
            .map_err(|e| ApiError::datastore("failed to fetch agent", e))?;
        if existing.as_ref().is_some_and(|a| a.banned) {
            return Err(ApiError::refused(
                spinel_proto::refusal::AgentRefusal::Banned,
                "failed to attest: agent is banned",
            ));
        }
        let svid = self.sign_agent_svid(&agent_id, public_key)?;
        let mut selectors: Vec<StoredSelector> =
            result.selectors.iter().map(StoredSelector::from).collect();
        selectors.sort();
        selectors.dedup();
        let agent = AttestedAgent {
            spiffe_id: key.clone(),
            attestation_type: data.r#type.clone(),
            cert_serial_number: svid.serial_number.clone(),
            cert_not_after: clock::to_unix_seconds(svid.not_after),
            new_cert_serial_number: String::new(),
            new_cert_not_after: 0,
            selectors,
            banned: false,
            can_reattest: result.can_reattest,
        };
        let stored = if existing.is_some() {
            self.state.update_agent(agent).await
        } else {
            self.state.create_agent(agent).await
        };
        stored.map_err(|e| ApiError::datastore("failed to store attested agent", e))?;
        tracing::info!(
            agent_id = %agent_id,
            node_attestor_type = %data.r#type,
            address = %remote.map(|a| a.to_string()).unwrap_or_default(),
            "Agent attestation request completed"
        );
        Ok(AttestAgentResponse {
            step: Some(attest_agent_response::Step::Result(
                attest_agent_response::Result {
                    svid: Some(x509_svid_to_proto(&svid, &agent_id, "")),
                    reattestable: result.can_reattest,
                },
            )),
        })
    }

    fn sign_agent_svid(
        &self,
        agent_id: &SpiffeId,
        public_key: Vec<u8>,
    ) -> ApiResult<crate::ca::X509Svid> {
        self.state
            .ca
            .sign_x509_svid(X509SvidParams {
                spiffe_id: agent_id.clone(),
                public_key,
                dns_names: Vec::new(),
                ttl: self.state.agent_ttl,
            })
            .map_err(|e| ApiError::internal("failed to sign X509 SVID", e))
    }

    /// A new SVID for the calling agent; the current one stays valid until
    /// the agent first uses the new one.
    pub(super) async fn renew(
        &self,
        caller: Caller,
        req: RenewAgentRequest,
    ) -> ApiResult<types::X509svid> {
        let Caller::Agent { id, agent } = caller else {
            return Err(ApiError::new(Code::Internal, "caller is not an agent"));
        };
        super::audit::note_entity(&id.to_string());
        if agent.can_reattest {
            return Err(ApiError::denied("agent must reattest instead of renew"));
        }
        let params = req
            .params
            .ok_or_else(|| ApiError::invalid_msg("params cannot be nil"))?;
        if params.csr.is_empty() {
            return Err(ApiError::invalid_msg("missing CSR"));
        }
        let public_key =
            verify_csr(&params.csr).map_err(|e| ApiError::invalid("failed to parse CSR", e))?;
        let svid = self.sign_agent_svid(&id, public_key)?;
        let mut updated = agent;
        updated.new_cert_serial_number = svid.serial_number.clone();
        updated.new_cert_not_after = clock::to_unix_seconds(svid.not_after);
        self.state
            .update_agent(updated)
            .await
            .map_err(|e| ApiError::datastore("failed to update agent", e))?;
        tracing::info!(agent_id = %id, "Renewing agent SVID");
        Ok(x509_svid_to_proto(&svid, &id, ""))
    }
}
