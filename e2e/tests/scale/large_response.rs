//! A workload matching so many entries that its `X509SVIDResponse` is
//! larger than the 4 MiB every gRPC client accepts by default. The
//! Workload API has no paging, and SPIRE's agent sends such a response as
//! it is; so does Spinel's: a client with a raised receive limit gets
//! every SVID, one keeping the default refuses the message, and the agent
//! logs a warning naming the caller and the size, so that the operator
//! learns why that workload gets nothing.
//!
//! Real processes run on the real clock, so this file reads the system time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use spinel_proto::workload::X509svidRequest;
use spinel_test_fixtures::process::my_uid;
use spinel_test_fixtures::{ServerHandle, ServerOptions};

use crate::support::workload_api_client;

const NODE: &str = "spiffe://example.org/node";
/// About 1.3 KB each in the response (chain, key, bundle): well over 4 MiB.
const ENTRIES: usize = 5_000;
const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;

fn request() -> tonic::Request<X509svidRequest> {
    let mut request = tonic::Request::new(X509svidRequest {});
    request.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_over_the_clients_default_limit_is_sent_and_logged() {
    let server = ServerHandle::start(ServerOptions {
        key_manager: "memory".into(),
        ..Default::default()
    })
    .unwrap();
    let token = server.generate_token(Some(NODE)).unwrap();
    let selector = format!("uid:{}", my_uid());
    let entries: Vec<serde_json::Value> = (0..ENTRIES)
        .map(|i| {
            serde_json::json!({
                "spiffe_id": format!("spiffe://example.org/large/{i:05}"),
                "parent_id": NODE,
                "selectors": [{"type": "unix", "value": selector}],
            })
        })
        .collect();
    server.create_entries_from_data(&entries, 1_000).unwrap();
    let agent = super::agent_holding(&server, token, ENTRIES).await;

    // A client with a raised limit gets every SVID in one message.
    let mut client = workload_api_client(&agent.socket_path, 64 << 20).await;
    let mut stream = client.fetch_x509svid(request()).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.svids.len(), ENTRIES);
    drop(stream);

    // A client keeping the default refuses it.
    let mut client = workload_api_client(&agent.socket_path, DEFAULT_LIMIT).await;
    let refused = match client.fetch_x509svid(request()).await {
        Ok(response) => response.into_inner().message().await.unwrap_err(),
        Err(status) => status,
    };
    assert!(
        refused.message().contains("too large"),
        "the client's own refusal: {refused:?}"
    );

    // The agent said why, naming the caller and the size.
    let pid = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = agent.log();
        let warning = log
            .lines()
            .find(|l| l.contains("larger than gRPC clients accept by default"));
        if let Some(line) = warning {
            assert!(line.contains(&format!("pid={pid}")), "{line}");
            let bytes: usize = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("bytes="))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no size in {line}"));
            assert!(bytes > DEFAULT_LIMIT, "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "no warning in the agent log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
