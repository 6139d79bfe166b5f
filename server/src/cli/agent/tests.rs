//! `agent` flags and output.

use spinel_proto::spire::api::types::{selector_match, Spiffeid};

use super::*;
use crate::cli::admin_client::test_support::{parse, parse_err};
use crate::cli::Command;

fn agent_cmd(args: &[&str]) -> AgentCommand {
    let mut full = vec!["agent"];
    full.extend_from_slice(args);
    match parse(&full).command {
        Command::Agent(cmd) => cmd,
        other => panic!("{other:?}"),
    }
}

fn sample_agent() -> Agent {
    Agent {
        id: Some(Spiffeid {
            trust_domain: "example.org".into(),
            path: "/spire/agent/join_token/2b8a5c1e".into(),
        }),
        attestation_type: "join_token".into(),
        x509svid_serial_number: "1234567890".into(),
        x509svid_expires_at: 1_700_000_000,
        selectors: vec![Selector {
            r#type: "join_token".into(),
            value: "2b8a5c1e".into(),
        }],
        banned: false,
        can_reattest: false,
        agent_version: String::new(),
    }
}

const SAMPLE_BLOCK: &str = "\
SPIFFE ID         : spiffe://example.org/spire/agent/join_token/2b8a5c1e
Attestation type  : join_token
Expiration time   : 2023-11-14 22:13:20 +0000 UTC
Serial number     : 1234567890
Can re-attest     : false

";

#[test]
fn list_golden() {
    let resp = ListAgentsResponse {
        agents: vec![sample_agent()],
        next_page_token: String::new(),
    };
    assert_eq!(
        list_pretty(&resp),
        format!("Found 1 attested agent:\n\n{SAMPLE_BLOCK}")
    );
    assert_eq!(
        list_pretty(&ListAgentsResponse::default()),
        "No attested agents found\n"
    );
}

#[test]
fn show_golden() {
    assert_eq!(
        show_pretty(&sample_agent()),
        format!(
            "Found an attested agent given its SPIFFE ID\n\n{SAMPLE_BLOCK}Selectors         : join_token:2b8a5c1e\n"
        )
    );
}

#[test]
fn banned_agent_shows_banned_instead_of_serial() {
    let agent = Agent {
        banned: true,
        agent_version: "1.2.3".into(),
        ..sample_agent()
    };
    let block = agent_block(&agent);
    assert!(block.contains("Banned            : true\n"), "{block}");
    assert!(!block.contains("Serial number"), "{block}");
    assert!(block.contains("Agent version     : 1.2.3\n"), "{block}");
}

#[test]
fn count_golden() {
    assert_eq!(
        count_pretty(&CountAgentsResponse { count: 1 }),
        "1 attested agent\n"
    );
    assert_eq!(
        count_pretty(&CountAgentsResponse { count: 0 }),
        "0 attested agents\n"
    );
}

#[test]
fn list_filters() {
    let AgentCommand::List(args) = agent_cmd(&[
        "list",
        "-selector",
        "join_token:abc",
        "-matchSelectorsOn",
        "any",
        "-attestationType",
        "join_token",
        "-banned",
        "false",
        "-canReattest",
        "all",
        "-expiresBefore",
        "2024-01-02 15:04:05 +0100 +01",
    ]) else {
        panic!("not list");
    };
    let f = args.list_filter();
    assert_eq!(f.by_attestation_type, "join_token");
    assert_eq!(f.by_banned, Some(false));
    assert_eq!(f.by_can_reattest, None);
    assert_eq!(f.by_expires_before, "2024-01-02 15:04:05 +0100 +01");
    let m = f.by_selector_match.unwrap();
    assert_eq!(m.r#match, selector_match::MatchBehavior::MatchAny as i32);

    let AgentCommand::Count(args) = agent_cmd(&["count", "-canReattest", "true"]) else {
        panic!("not count");
    };
    let f = args.count_request().filter.unwrap();
    assert_eq!(f.by_can_reattest, Some(true));
    assert_eq!(f.by_banned, None);
}

#[test]
fn id_commands_require_a_valid_spiffe_id() {
    for sub in ["show", "evict", "ban"] {
        let (AgentCommand::Show(a) | AgentCommand::Evict(a) | AgentCommand::Ban(a)) =
            agent_cmd(&[sub])
        else {
            panic!("{sub}");
        };
        let err = a.id().unwrap_err().to_string();
        assert!(
            err.starts_with("a SPIFFE ID is required") && err.contains("-spiffeID"),
            "{err}"
        );
        let err = parse_err(&[
            "agent",
            sub,
            "-spiffeID",
            "spiffe://example.org/spire/agent/../x",
        ]);
        assert!(err.contains("spiffeID"), "{err}");
    }
    let AgentCommand::Ban(a) = agent_cmd(&[
        "ban",
        "-spiffeID",
        "spiffe://example.org/spire/agent/join_token/t",
    ]) else {
        panic!("not ban");
    };
    assert_eq!(a.id().unwrap().path, "/spire/agent/join_token/t");
}

#[test]
fn expires_before_layout() {
    for good in [
        "2024-01-02 15:04:05 -0700 -07",
        "2024-02-29 00:00:00 +0000 +00",
    ] {
        assert!(parse_expires_before(good).is_ok(), "{good}");
    }
    for bad in [
        "2024-01-02",
        "2024-13-02 15:04:05 -0700 -07",
        "2023-02-29 15:04:05 -0700 -07",
        "2024-01-02 25:04:05 -0700 -07",
        "2024-01-02 15:04:05 -0700 -08",
        "2024-01-02 15:04:05 0700 07",
        "2024-01-02T15:04:05Z",
    ] {
        assert!(parse_expires_before(bad).is_err(), "{bad}");
    }
    let err = parse_err(&["agent", "list", "-expiresBefore", "tomorrow"]);
    assert!(
        err.contains("expiresBefore") && err.contains("date is not valid"),
        "{err}"
    );
}
