//! `spinel-server agent list|show|evict|ban|count|purge`: attested agents
//! through the server's `spire.api.server.agent.v1.Agent` API, with
//! SPIRE's flags and output (`purge` in `purge.rs`).

mod purge;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, count_agents_request, list_agents_request, BanAgentRequest,
    CountAgentsRequest, CountAgentsResponse, DeleteAgentRequest, GetAgentRequest,
    ListAgentsRequest, ListAgentsResponse,
};
use spinel_proto::spire::api::types::{Agent, Selector, SelectorMatch};
use spinel_spiffe::id::SpiffeId;
use tonic::transport::Channel;

use super::admin_client::{
    connect_admin, id_from_proto, id_to_proto, parse_match, parse_selector, parse_spiffe_id,
    AdminArgs, AdminClientError, MatchOn, OutputFormat,
};
use super::output::{go_utc_time, pluralize, print_proto_json};

/// Agents per `ListAgents` page, as SPIRE's CLI asks.
const LIST_PAGE_SIZE: i32 = 1000;

/// `agent` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Lists attested agents and their SPIFFE IDs.
    List(ListArgs),
    /// Shows the details of an attested agent given its SPIFFE ID.
    Show(IdArgs),
    /// Evicts an attested agent given its SPIFFE ID: it must attest again.
    Evict(IdArgs),
    /// Bans an attested agent given its SPIFFE ID: it may not renew or re-attest until evicted.
    Ban(IdArgs),
    /// Counts attested agents.
    Count(ListArgs),
    /// Purges expired agents that were attested using a non-TOFU security model (they can re-attest).
    Purge(purge::PurgeArgs),
}

/// Filters of `agent list` and `agent count`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// A colon-delimited type:value selector to match. Can be used more than once.
    #[arg(long = "selector", value_name = "TYPE:VALUE", value_parser = parse_selector)]
    pub selectors: Vec<Selector>,
    /// How -selector matches: exact, any, superset or subset.
    #[arg(long = "matchSelectorsOn", value_name = "MODE", default_value = "superset", value_parser = parse_match)]
    pub match_selectors_on: MatchOn,
    /// Only agents attested this way, like join_token or x509pop.
    #[arg(long = "attestationType", value_name = "TYPE")]
    pub attestation_type: Option<String>,
    /// 'true': agents that can re-attest, 'false': agents that cannot; any other value: all.
    #[arg(long = "canReattest", value_name = "true|false", default_value = "", hide_default_value = true, value_parser = parse_tristate)]
    pub can_reattest: BoolFilter,
    /// 'true': banned agents, 'false': agents not banned; any other value: all.
    #[arg(long = "banned", value_name = "true|false", default_value = "", hide_default_value = true, value_parser = parse_tristate)]
    pub banned: BoolFilter,
    /// Only agents whose SVID expires before this time (format: "2006-01-02 15:04:05 -0700 -07").
    #[arg(long = "expiresBefore", value_name = "TIME", value_parser = parse_expires_before)]
    pub expires_before: Option<String>,
}

/// `-spiffeID` of `agent show|evict|ban`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct IdArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The SPIFFE ID of the agent (agent identity).
    #[arg(long = "spiffeID", value_name = "ID", value_parser = parse_spiffe_id)]
    pub spiffe_id: Option<SpiffeId>,
}

/// SPIRE's three-way filter: only `true`, only `false`, or all (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BoolFilter(pub Option<bool>);

/// `true`, `false`; anything else means all, as in SPIRE.
fn parse_tristate(value: &str) -> Result<BoolFilter, String> {
    Ok(BoolFilter(match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }))
}

/// Checks Go's layout `2006-01-02 15:04:05 -0700 -07` (the server parses it
/// again) and passes the text on unchanged.
fn parse_expires_before(value: &str) -> Result<String, String> {
    match go_layout_time(value) {
        Some(()) => Ok(value.to_owned()),
        None => Err(format!(
            "date is not valid: {value:?} does not match \"2006-01-02 15:04:05 -0700 -07\""
        )),
    }
}

/// `Some(())` when `value` is a real time in Go's layout
/// `2006-01-02 15:04:05 -0700 -07`, the zone hours agreeing with the offset.
fn go_layout_time(value: &str) -> Option<()> {
    let (date, rest) = value.split_once(' ')?;
    let (clock, rest) = rest.split_once(' ')?;
    let (offset, zone) = rest.split_once(' ')?;
    let field = |s: &str, len: usize| -> Option<u16> {
        if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let mut d = date.split('-');
    let (year, month, day) = (
        field(d.next()?, 4)?,
        field(d.next()?, 2)?,
        field(d.next()?, 2)?,
    );
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    time::Date::from_calendar_date(i32::from(year), month, u8::try_from(day).ok()?).ok()?;
    let mut t = clock.split(':');
    let (h, m, s) = (
        field(t.next()?, 2)?,
        field(t.next()?, 2)?,
        field(t.next()?, 2)?,
    );
    let (sign, hhmm) = offset.split_at_checked(1)?;
    let (zone_sign, zone_hh) = zone.split_at_checked(1)?;
    field(hhmm, 4)?;
    field(zone_hh, 2)?;
    let ok = d.next().is_none()
        && t.next().is_none()
        && h < 24
        && m < 60
        && s < 60
        && matches!(sign, "+" | "-")
        && sign == zone_sign
        && hhmm.get(..2) == Some(zone_hh);
    ok.then_some(())
}

impl ListArgs {
    fn selector_match(&self) -> Option<SelectorMatch> {
        (!self.selectors.is_empty()).then(|| SelectorMatch {
            selectors: self.selectors.clone(),
            r#match: self.match_selectors_on.selector_match() as i32,
        })
    }

    /// The `ListAgents` filter.
    pub fn list_filter(&self) -> list_agents_request::Filter {
        list_agents_request::Filter {
            by_attestation_type: self.attestation_type.clone().unwrap_or_default(),
            by_selector_match: self.selector_match(),
            by_banned: self.banned.0,
            by_can_reattest: self.can_reattest.0,
            by_expires_before: self.expires_before.clone().unwrap_or_default(),
        }
    }

    /// The `CountAgents` request.
    pub fn count_request(&self) -> CountAgentsRequest {
        CountAgentsRequest {
            filter: Some(count_agents_request::Filter {
                by_attestation_type: self.attestation_type.clone().unwrap_or_default(),
                by_selector_match: self.selector_match(),
                by_banned: self.banned.0,
                by_can_reattest: self.can_reattest.0,
                by_expires_before: self.expires_before.clone().unwrap_or_default(),
            }),
        }
    }
}

impl IdArgs {
    /// The agent's ID in the API's form.
    pub fn id(&self) -> Result<spinel_proto::spire::api::types::Spiffeid, AdminClientError> {
        self.spiffe_id
            .as_ref()
            .map(id_to_proto)
            .ok_or_else(|| AdminClientError::usage("a SPIFFE ID is required (-spiffeID)"))
    }
}

fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{label:<17} : {value}");
}

/// One agent block, as SPIRE prints it (a banned agent shows `Banned`
/// instead of its serial number).
pub fn agent_block(agent: &Agent) -> String {
    let mut out = String::new();
    line(&mut out, "SPIFFE ID", id_from_proto(agent.id.as_ref()));
    line(&mut out, "Attestation type", &agent.attestation_type);
    line(
        &mut out,
        "Expiration time",
        go_utc_time(agent.x509svid_expires_at),
    );
    if agent.banned {
        line(&mut out, "Banned", true);
    } else {
        line(&mut out, "Serial number", &agent.x509svid_serial_number);
    }
    line(&mut out, "Can re-attest", agent.can_reattest);
    if !agent.agent_version.is_empty() {
        line(&mut out, "Agent version", &agent.agent_version);
    }
    out.push('\n');
    out
}

/// `agent list`'s pretty output.
pub fn list_pretty(resp: &ListAgentsResponse) -> String {
    let n = resp.agents.len();
    if n == 0 {
        return "No attested agents found\n".to_owned();
    }
    let mut out = pluralize(&format!("Found {n} attested "), "agent", "agents", n);
    out.push_str(":\n\n");
    for agent in &resp.agents {
        out.push_str(&agent_block(agent));
    }
    out
}

/// `agent show`'s pretty output: the block, then the agent's selectors.
pub fn show_pretty(agent: &Agent) -> String {
    let mut out = "Found an attested agent given its SPIFFE ID\n\n".to_owned();
    out.push_str(&agent_block(agent));
    for s in &agent.selectors {
        line(
            &mut out,
            "Selectors",
            format_args!("{}:{}", s.r#type, s.value),
        );
    }
    out
}

/// `agent count`'s pretty output.
pub fn count_pretty(resp: &CountAgentsResponse) -> String {
    let n = usize::try_from(resp.count).unwrap_or(0);
    let mut out = pluralize(&format!("{} attested ", resp.count), "agent", "agents", n);
    out.push('\n');
    out
}

/// Runs an `agent` subcommand.
pub async fn run(cmd: AgentCommand) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::List(args) => list(&args).await?,
        AgentCommand::Show(args) => show(&args).await?,
        AgentCommand::Evict(args) => evict(&args).await?,
        AgentCommand::Ban(args) => ban(&args).await?,
        AgentCommand::Count(args) => count(&args).await?,
        AgentCommand::Purge(args) => purge::purge(&args).await?,
    }
    Ok(())
}

async fn client(common: &AdminArgs) -> Result<AgentClient<Channel>, AdminClientError> {
    Ok(AgentClient::new(connect_admin(&common.socket_path).await?))
}

async fn list(args: &ListArgs) -> Result<(), AdminClientError> {
    let filter = args.list_filter();
    let mut client = client(&args.common).await?;
    let mut resp = ListAgentsResponse::default();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_agents(ListAgentsRequest {
                filter: Some(filter.clone()),
                output_mask: None,
                page_size: LIST_PAGE_SIZE,
                page_token,
            })
            .await
            .map_err(AdminClientError::rpc)?
            .into_inner();
        resp.agents.extend(page.agents);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    match args.common.output {
        OutputFormat::Pretty => print!("{}", list_pretty(&resp)),
        OutputFormat::Json => {
            print_proto_json(&resp, "spire.api.server.agent.v1.ListAgentsResponse")?;
        }
    }
    Ok(())
}

async fn show(args: &IdArgs) -> Result<(), AdminClientError> {
    let id = args.id()?;
    let agent = client(&args.common)
        .await?
        .get_agent(GetAgentRequest {
            id: Some(id),
            output_mask: None,
        })
        .await
        .map_err(AdminClientError::rpc)?
        .into_inner();
    match args.common.output {
        OutputFormat::Pretty => print!("{}", show_pretty(&agent)),
        OutputFormat::Json => print_proto_json(&agent, "spire.api.types.Agent")?,
    }
    Ok(())
}

/// What `evict` and `ban` print: SPIRE's sentence, or the empty response.
fn print_done(output: OutputFormat, sentence: &str) {
    match output {
        OutputFormat::Pretty => println!("{sentence}"),
        OutputFormat::Json => println!("{{}}"),
    }
}

async fn evict(args: &IdArgs) -> Result<(), AdminClientError> {
    let id = args.id()?;
    client(&args.common)
        .await?
        .delete_agent(DeleteAgentRequest { id: Some(id) })
        .await
        .map_err(AdminClientError::rpc)?;
    print_done(args.common.output, "Agent evicted successfully");
    Ok(())
}

async fn ban(args: &IdArgs) -> Result<(), AdminClientError> {
    let id = args.id()?;
    client(&args.common)
        .await?
        .ban_agent(BanAgentRequest { id: Some(id) })
        .await
        .map_err(AdminClientError::rpc)?;
    print_done(args.common.output, "Agent banned successfully");
    Ok(())
}

async fn count(args: &ListArgs) -> Result<(), AdminClientError> {
    let request = args.count_request();
    let resp = client(&args.common)
        .await?
        .count_agents(request)
        .await
        .map_err(AdminClientError::rpc)?
        .into_inner();
    match args.common.output {
        OutputFormat::Pretty => print!("{}", count_pretty(&resp)),
        OutputFormat::Json => {
            print_proto_json(&resp, "spire.api.server.agent.v1.CountAgentsResponse")?;
        }
    }
    Ok(())
}
