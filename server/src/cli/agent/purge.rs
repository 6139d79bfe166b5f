//! `spinel-server agent purge [-expiredFor 720h] [-dryRun]`: deletes the
//! agents that can re-attest (non-TOFU attestors, e.g. `k8s_psat`) whose
//! SVID expired more than `-expiredFor` ago, as SPIRE's command does. A
//! join-token agent is never purged: it could not come back by itself.

use std::time::Duration;

use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, list_agents_request, DeleteAgentRequest, ListAgentsRequest,
};
use spinel_proto::spire::api::types::{Agent, AgentMask};
use tonic::transport::Channel;

use super::super::admin_client::{
    connect_admin, id_from_proto, parse_go_bool, AdminArgs, AdminClientError, OutputFormat,
};
use super::super::output::pluralize;
use super::LIST_PAGE_SIZE;

/// `agent purge` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Amount of time that has passed since the agent's SVID has expired. It is used to determine which agents to purge.
    #[arg(long = "expiredFor", value_name = "DURATION", default_value = "720h", value_parser = parse_duration)]
    pub expired_for: Duration,
    /// Indicates that the command will not perform any action, but will print the agents that would be purged.
    #[arg(long = "dryRun", value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", hide_default_value = true, value_parser = parse_go_bool)]
    pub dry_run: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    spinel_config::duration::parse_go_duration(text).map_err(|e| e.to_string())
}

/// One expired agent and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    /// The agent's SPIFFE ID.
    pub agent_id: String,
    /// Whether it was deleted.
    pub deleted: bool,
    /// Why the deletion failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// The agents whose SVID expired more than `expired_for` before `now`.
pub fn expired(agents: &[Agent], now: i64, expired_for: Duration) -> Vec<&Agent> {
    let limit = i64::try_from(expired_for.as_secs()).unwrap_or(i64::MAX);
    agents
        .iter()
        .filter(|a| now.saturating_sub(a.x509svid_expires_at) > limit)
        .collect()
}

/// SPIRE's pretty output.
pub fn purge_pretty(results: &[Purged], dry_run: bool) -> String {
    if results.is_empty() {
        return "No agents to purge.\n".to_owned();
    }
    let n = results.len();
    let mut out = pluralize(&format!("Found {n} expired "), "agent", "agents", n);
    out.push_str("\n\n");
    if dry_run {
        out.push_str("\nAgents that can be purged:\n");
        for r in results {
            out.push_str(&format!("SPIFFE ID         : {}\n", r.agent_id));
        }
        return out;
    }
    let (purged, failed): (Vec<&Purged>, Vec<&Purged>) = results.iter().partition(|r| r.deleted);
    if !purged.is_empty() {
        out.push_str("Agents purged:\n");
        for r in purged {
            out.push_str(&format!("SPIFFE ID         : {}\n", r.agent_id));
        }
    }
    if !failed.is_empty() {
        out.push_str("Agents not purged:\n");
        for r in failed {
            out.push_str(&format!("SPIFFE ID         : {}\n", r.agent_id));
            out.push_str(&format!("Error             : {}\n", r.error));
        }
    }
    out
}

async fn reattestable_agents(
    client: &mut AgentClient<Channel>,
) -> Result<Vec<Agent>, AdminClientError> {
    let mut agents = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_agents(ListAgentsRequest {
                filter: Some(list_agents_request::Filter {
                    by_can_reattest: Some(true),
                    ..Default::default()
                }),
                output_mask: Some(AgentMask {
                    x509svid_expires_at: true,
                    ..Default::default()
                }),
                page_size: LIST_PAGE_SIZE,
                page_token,
            })
            .await
            .map_err(|s| AdminClientError::rpc_while("failed to list agents", s))?
            .into_inner();
        agents.extend(page.agents);
        if page.next_page_token.is_empty() {
            return Ok(agents);
        }
        page_token = page.next_page_token;
    }
}

/// Runs `agent purge`.
pub async fn purge(args: &PurgeArgs) -> Result<(), AdminClientError> {
    let mut client = AgentClient::new(connect_admin(&args.common.socket_path).await?);
    let agents = reattestable_agents(&mut client).await?;
    let now = spinel_spiffe::Clock::system().unix_seconds();
    let mut results = Vec::new();
    for agent in expired(&agents, now, args.expired_for) {
        let mut result = Purged {
            agent_id: id_from_proto(agent.id.as_ref()),
            deleted: false,
            error: String::new(),
        };
        if !args.dry_run {
            match client
                .delete_agent(DeleteAgentRequest {
                    id: agent.id.clone(),
                })
                .await
            {
                Ok(_) => result.deleted = true,
                Err(s) => result.error = AdminClientError::rpc(s).to_string(),
            }
        }
        results.push(result);
    }
    match args.common.output {
        OutputFormat::Pretty => print!("{}", purge_pretty(&results, args.dry_run)),
        OutputFormat::Json => println!("{}", serde_json::json!({ "expired_agents": results })),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(expires_at: i64) -> Agent {
        Agent {
            x509svid_expires_at: expires_at,
            ..Default::default()
        }
    }

    #[test]
    fn only_agents_expired_longer_than_the_limit() {
        let agents = [agent(1000), agent(5000), agent(9000)];
        let hour = Duration::from_secs(3600);
        let out = expired(&agents, 1000 + 3601, hour);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].x509svid_expires_at, 1000);
        assert!(expired(&agents, 9000, Duration::ZERO).len() == 2);
    }

    #[test]
    fn pretty_matches_spire() {
        assert_eq!(purge_pretty(&[], false), "No agents to purge.\n");
        let a = |id: &str, deleted: bool, error: &str| Purged {
            agent_id: id.into(),
            deleted,
            error: error.into(),
        };
        assert_eq!(
            purge_pretty(&[a("spiffe://td/a", false, "")], true),
            "Found 1 expired agent\n\n\nAgents that can be purged:\nSPIFFE ID         : spiffe://td/a\n"
        );
        assert_eq!(
            purge_pretty(
                &[
                    a("spiffe://td/a", true, ""),
                    a("spiffe://td/b", false, "boom")
                ],
                false
            ),
            "Found 2 expired agents\n\nAgents purged:\nSPIFFE ID         : spiffe://td/a\n\
             Agents not purged:\nSPIFFE ID         : spiffe://td/b\nError             : boom\n"
        );
    }
}
