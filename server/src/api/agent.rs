//! `spire.api.server.agent.v1.Agent`: agent management and join tokens.
//! Attestation and renewal live in `attest.rs`.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use spinel_proto::spire::api::server::agent::v1::{
    agent_server::Agent, AttestAgentRequest, AttestAgentResponse, BanAgentRequest,
    CountAgentsRequest, CountAgentsResponse, CreateJoinTokenRequest, DeleteAgentRequest,
    GetAgentRequest, ListAgentsRequest, ListAgentsResponse, PostStatusRequest, PostStatusResponse,
    RenewAgentRequest, RenewAgentResponse,
};
use spinel_proto::spire::api::types;
use spinel_spiffe::id;
use tonic::{Request, Response, Status, Streaming};

use super::auth::method;
use super::convert::{agent_to_proto, paginate, set_matches};
use super::error::{ApiError, ApiResult};
use super::{validate, ApiState};
use crate::attestor::node::join_token;
use crate::datastore::{AttestedAgent, JoinToken, RegistrationEntry, StoredSelector};

/// The Agent service.
#[derive(Debug, Clone)]
pub struct AgentService {
    pub(super) state: Arc<ApiState>,
}

impl AgentService {
    /// The service over `state`.
    pub fn new(state: Arc<ApiState>) -> Self {
        AgentService { state }
    }
}

/// Criteria of `CountAgents`/`ListAgents`, validated.
#[derive(Debug, Default)]
struct AgentFilter {
    attestation_type: String,
    selectors: Option<(BTreeSet<StoredSelector>, i32)>,
    banned: Option<bool>,
    can_reattest: Option<bool>,
    expires_before: Option<i64>,
}

impl AgentFilter {
    #[allow(clippy::too_many_arguments)]
    fn new(
        attestation_type: &str,
        selector_match: Option<&types::SelectorMatch>,
        banned: Option<bool>,
        can_reattest: Option<bool>,
        expires_before: &str,
    ) -> ApiResult<Self> {
        let selectors = match selector_match {
            Some(m) => {
                let set = validate::selectors(&m.selectors)
                    .map_err(|e| ApiError::invalid("failed to parse selectors", e))?;
                Some((set.into_iter().collect(), m.r#match))
            }
            None => None,
        };
        let expires_before = if expires_before.is_empty() {
            None
        } else {
            let t = time::OffsetDateTime::parse(
                expires_before,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|e| ApiError::invalid("failed to parse by_expires_before", e))?;
            Some(t.unix_timestamp())
        };
        Ok(AgentFilter {
            attestation_type: attestation_type.to_owned(),
            selectors,
            banned,
            can_reattest,
            expires_before,
        })
    }

    fn matches(&self, a: &AttestedAgent) -> bool {
        if !self.attestation_type.is_empty() && a.attestation_type != self.attestation_type {
            return false;
        }
        if let Some((filter, behavior)) = &self.selectors {
            let own: BTreeSet<StoredSelector> = a.selectors.iter().cloned().collect();
            if !set_matches(&own, filter, *behavior) {
                return false;
            }
        }
        if self.banned.is_some_and(|b| b != a.banned) {
            return false;
        }
        if self.can_reattest.is_some_and(|c| c != a.can_reattest) {
            return false;
        }
        if self.expires_before.is_some_and(|t| a.cert_not_after >= t) {
            return false;
        }
        true
    }
}

impl AgentService {
    async fn agents(&self, filter: &AgentFilter) -> ApiResult<Vec<AttestedAgent>> {
        let all = self
            .state
            .datastore
            .list_agents()
            .await
            .map_err(|e| ApiError::datastore("failed to list agents", e))?;
        Ok(all.into_iter().filter(|a| filter.matches(a)).collect())
    }

    async fn create_join_token_inner(
        &self,
        req: CreateJoinTokenRequest,
    ) -> ApiResult<types::JoinToken> {
        if req.ttl < 1 {
            return Err(ApiError::invalid_msg(
                "ttl is required, you must provide one",
            ));
        }
        let td = &self.state.trust_domain;
        let alias_id = match req.agent_id.as_ref() {
            Some(p) => Some(
                validate::workload_id(td, Some(p))
                    .map_err(|e| ApiError::invalid("invalid agent ID", e))?,
            ),
            None => None,
        };
        let value = if req.token.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.token
        };
        // The token becomes a path segment of the agent's ID.
        let token_agent_id = id::agent_id(td, join_token::NAME, &[&value]).map_err(|_| {
            ApiError::invalid_msg("invalid token: it must be a valid SPIFFE ID path segment")
        })?;
        let expires_at = self
            .state
            .clock
            .unix_seconds()
            .saturating_add(i64::from(req.ttl));
        self.state
            .datastore
            .create_join_token(JoinToken {
                value: value.clone(),
                expires_at,
            })
            .await
            .map_err(|e| match e {
                crate::datastore::DataStoreError::AlreadyExists { .. } => ApiError::new(
                    tonic::Code::AlreadyExists,
                    "failed to create token: token already exists",
                ),
                other => ApiError::datastore("failed to create token", other),
            })?;
        if let Some(alias_id) = &alias_id {
            // The agent ID the token is for; never the token (nor the
            // token's own agent ID, which contains it).
            super::audit::note_entity(&alias_id.to_string());
        }
        if let Some(alias_id) = alias_id {
            // As SPIRE: an entry giving the agent that attests with this
            // token the requested ID, selected by the agent's own ID.
            let parent = token_agent_id.to_string();
            let entry = RegistrationEntry {
                parent_id: parent.clone(),
                spiffe_id: alias_id.to_string(),
                selectors: vec![StoredSelector {
                    kind: "spiffe_id".into(),
                    value: parent,
                }],
                ..Default::default()
            };
            self.state
                .datastore
                .create_entry(entry)
                .await
                .map_err(|e| {
                    ApiError::datastore("failed to create join token registration entry", e)
                })?;
        }
        tracing::info!(ttl = req.ttl, "join token created");
        Ok(types::JoinToken { value, expires_at })
    }
}

type AttestStream =
    Pin<Box<dyn Stream<Item = Result<AttestAgentResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Agent for AgentService {
    async fn count_agents(
        &self,
        request: Request<CountAgentsRequest>,
    ) -> Result<Response<CountAgentsResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::COUNT_AGENTS)
            .await?;
        let f = request.into_inner().filter.unwrap_or_default();
        let filter = AgentFilter::new(
            &f.by_attestation_type,
            f.by_selector_match.as_ref(),
            f.by_banned,
            f.by_can_reattest,
            &f.by_expires_before,
        )?;
        let count = self.agents(&filter).await?.len();
        Ok(Response::new(CountAgentsResponse {
            count: i32::try_from(count).unwrap_or(i32::MAX),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::LIST_AGENTS)
            .await?;
        let req = request.into_inner();
        let f = req.filter.clone().unwrap_or_default();
        let filter = AgentFilter::new(
            &f.by_attestation_type,
            f.by_selector_match.as_ref(),
            f.by_banned,
            f.by_can_reattest,
            &f.by_expires_before,
        )?;
        let agents = self.agents(&filter).await?;
        let (page, next_page_token) =
            paginate(agents, req.page_size, &req.page_token, |a| &a.spiffe_id);
        Ok(Response::new(ListAgentsResponse {
            agents: page
                .iter()
                .map(|a| agent_to_proto(a, req.output_mask.as_ref()))
                .collect(),
            next_page_token,
        }))
    }

    async fn get_agent(
        &self,
        request: Request<GetAgentRequest>,
    ) -> Result<Response<types::Agent>, Status> {
        self.state
            .authorize(request.extensions(), method::GET_AGENT)
            .await?;
        let req = request.into_inner();
        let id = validate::agent_id(&self.state.trust_domain, req.id.as_ref())
            .map_err(|e| ApiError::invalid("invalid agent ID", e))?;
        super::audit::note_entity(&id.to_string());
        let agent = self
            .state
            .datastore
            .get_agent(&id.to_string())
            .await
            .map_err(|e| ApiError::datastore("failed to fetch agent", e))?
            .ok_or_else(|| ApiError::not_found("agent not found"))?;
        Ok(Response::new(agent_to_proto(
            &agent,
            req.output_mask.as_ref(),
        )))
    }

    async fn delete_agent(
        &self,
        request: Request<DeleteAgentRequest>,
    ) -> Result<Response<()>, Status> {
        self.state
            .authorize(request.extensions(), method::DELETE_AGENT)
            .await?;
        let id = validate::agent_id(&self.state.trust_domain, request.get_ref().id.as_ref())
            .map_err(|e| ApiError::invalid("invalid agent ID", e))?;
        super::audit::note_entity(&id.to_string());
        match self.state.delete_agent(&id.to_string()).await {
            Ok(_) => {
                tracing::info!(agent_id = %id, "Agent deleted");
                Ok(Response::new(()))
            }
            Err(crate::datastore::DataStoreError::NotFound { .. }) => {
                Err(ApiError::not_found("agent not found").into())
            }
            Err(e) => Err(ApiError::datastore("failed to remove agent", e).into()),
        }
    }

    async fn ban_agent(&self, request: Request<BanAgentRequest>) -> Result<Response<()>, Status> {
        self.state
            .authorize(request.extensions(), method::BAN_AGENT)
            .await?;
        let id = validate::agent_id(&self.state.trust_domain, request.get_ref().id.as_ref())
            .map_err(|e| ApiError::invalid("invalid agent ID", e))?;
        super::audit::note_entity(&id.to_string());
        let mut agent = self
            .state
            .datastore
            .get_agent(&id.to_string())
            .await
            .map_err(|e| ApiError::datastore("failed to ban agent", e))?
            .ok_or_else(|| ApiError::not_found("agent not found"))?;
        agent.banned = true;
        agent.new_cert_serial_number.clear();
        agent.new_cert_not_after = 0;
        self.state
            .update_agent(agent)
            .await
            .map_err(|e| ApiError::datastore("failed to ban agent", e))?;
        tracing::info!(agent_id = %id, "Agent banned");
        Ok(Response::new(()))
    }

    type AttestAgentStream = AttestStream;

    async fn attest_agent(
        &self,
        request: Request<Streaming<AttestAgentRequest>>,
    ) -> Result<Response<Self::AttestAgentStream>, Status> {
        self.state
            .authorize(request.extensions(), method::ATTEST_AGENT)
            .await?;
        let remote = match request.extensions().get::<super::PeerInfo>() {
            Some(super::PeerInfo::Tcp { remote, .. }) => *remote,
            _ => None,
        };
        let stream = self.start_attestation(request.into_inner(), remote);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn renew_agent(
        &self,
        request: Request<RenewAgentRequest>,
    ) -> Result<Response<RenewAgentResponse>, Status> {
        let caller = self
            .state
            .authorize(request.extensions(), method::RENEW_AGENT)
            .await?;
        let svid = self.renew(caller, request.into_inner()).await?;
        Ok(Response::new(RenewAgentResponse { svid: Some(svid) }))
    }

    async fn create_join_token(
        &self,
        request: Request<CreateJoinTokenRequest>,
    ) -> Result<Response<types::JoinToken>, Status> {
        self.state
            .authorize(request.extensions(), method::CREATE_JOIN_TOKEN)
            .await?;
        Ok(Response::new(
            self.create_join_token_inner(request.into_inner()).await?,
        ))
    }

    async fn post_status(
        &self,
        request: Request<PostStatusRequest>,
    ) -> Result<Response<PostStatusResponse>, Status> {
        self.state
            .authorize(request.extensions(), method::POST_STATUS)
            .await?;
        if request.get_ref().agent_version.len() > 255 {
            return Err(
                ApiError::invalid_msg("agent version is too long (max 255 characters)").into(),
            );
        }
        Ok(Response::new(PostStatusResponse {}))
    }
}
