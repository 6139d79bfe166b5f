//! An unspent join token never reaches the server's log, with the audit
//! log on and `log_level = "DEBUG"` (the harness's level), against a real
//! `spinel-server` process: neither a generated token nor the wrong ones an
//! attacker tries. Once spent, the token appears only inside the agent's
//! SPIFFE ID (SPIRE's `spire/agent/join_token/<token>`), which reveals
//! nothing usable: the token attests no second agent.
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use crate::support::raw_agent;
use crate::support::raw_agent::{attest, audit_line};
use spinel_proto::spinel::server::v1::watch_client::WatchClient;
use spinel_proto::spinel::server::v1::WatchChangesRequest;
use spinel_test_fixtures::{ServerHandle, ServerOptions};
use tonic::Code;

/// Every place `secret` occurs in `log`, with some context, for the
/// failure message.
fn occurrences(log: &str, secret: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(secret))
        .map(|l| l.chars().take(400).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn unspent_join_tokens_never_reach_the_log() {
    let server = ServerHandle::start(ServerOptions {
        server_extra: "    audit_log_enabled = true\n    log_format = \"json\"".into(),
        ..Default::default()
    })
    .unwrap();
    let config = std::fs::read_to_string(&server.config_path).unwrap();
    assert!(config.contains("log_level = \"DEBUG\""), "{config}");

    let token = server
        .generate_token(Some("spiffe://example.org/node"))
        .unwrap();
    // A second token that stays unspent all along.
    let idle = server.generate_token(None).unwrap();

    // Wrong tokens: a guess, one that differs from the real one by its
    // last character, and one that cannot even be an ID path segment.
    let mut near = token.clone();
    let last = near.pop().unwrap();
    near.push(if last == '0' { '1' } else { '0' });
    let wrong = [
        "4a5b1c2d-not-a-real-token".to_owned(),
        near,
        "bad/../token".to_owned(),
    ];
    for guess in &wrong {
        let err = attest(&server, guess)
            .await
            .err()
            .expect("a wrong token attests nothing");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(!err.message().contains(guess.as_str()), "{err:?}");
    }
    // The refusals are audited (and so finished) before the log is read.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while raw_agent::audit_lines(&server)
        .iter()
        .filter(|l| {
            l["method"]
                .as_str()
                .is_some_and(|m| m.ends_with("/AttestAgent"))
                && l["status_code"] == 3
        })
        .count()
        < wrong.len()
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = server.log();
    for secret in [&token, &idle].into_iter().chain(&wrong) {
        let found = occurrences(&log, secret);
        assert!(found.is_empty(), "{secret:?} is in the log: {found:#?}");
    }

    // The right token: spent, it is part of the agent's ID, and only there.
    let agent = attest(&server, &token).await.unwrap();
    assert_eq!(
        agent.id,
        format!("spiffe://example.org/spire/agent/join_token/{token}")
    );
    audit_line(&server, "/AttestAgent", |l| l["status_code"] == 0).await;
    // An agent call logged at DEBUG (the level is on): it names the agent.
    let channel = raw_agent::as_agent(&server, &agent).await;
    let _watch = WatchClient::new(channel)
        .watch_changes(WatchChangesRequest {})
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !server
        .log()
        .lines()
        .any(|l| l.contains("\"level\":\"DEBUG\"") && l.contains(&agent.id))
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = server.log();
    assert!(log.contains(&agent.id), "the attestation is logged");
    assert_eq!(
        log.matches(token.as_str()).count(),
        log.matches(&format!("join_token/{token}")).count(),
        "the token appears outside the agent ID: {:#?}",
        occurrences(&log, &token)
    );
    let found = occurrences(&log, &idle);
    assert!(
        found.is_empty(),
        "the unspent token is in the log: {found:#?}"
    );
    // Spent means spent: the ID's token attests nothing more.
    let err = attest(&server, &token).await.err().expect("single use");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}
