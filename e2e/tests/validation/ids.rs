//! SPIFFE IDs over the SPIFFE spec's 2,048 bytes: refused by the admin CLI
//! (entry create, token generate) and by the Workload API (`FetchJWTSVID`
//! naming one is `InvalidArgument`, not "no identity"). Before the fix the
//! server registered such an entry and issued SVIDs for it.

use spiffe::{SpiffeId, WorkloadApiClient};
use spinel_test_fixtures::process::my_uid;

use crate::support::{AgentHandle, AgentOptions, ServerHandle, ServerOptions};

/// `spiffe://example.org/aaa...` of exactly `len` bytes.
fn id_of_len(len: usize) -> String {
    let prefix = "spiffe://example.org/";
    format!("{prefix}{}", "a".repeat(len - prefix.len()))
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_over_2048_bytes_are_refused_at_the_cli_and_the_workload_api() {
    let server = ServerHandle::start(ServerOptions::default()).unwrap();
    let alias = "spiffe://example.org/node";
    let token = server.generate_token(Some(alias)).unwrap();
    let agent = AgentHandle::start(
        &server,
        AgentOptions {
            join_token: Some(token),
            ..Default::default()
        },
    )
    .unwrap();
    let selector = format!("unix:uid:{}", my_uid());
    let too_long = id_of_len(2049);

    // The longest allowed ID registers; one byte more does not.
    server
        .create_entry(&[
            "-parentID",
            alias,
            "-spiffeID",
            &id_of_len(2048),
            "-selector",
            &selector,
        ])
        .unwrap();
    for args in [
        vec![
            "entry",
            "create",
            "-parentID",
            alias,
            "-spiffeID",
            &too_long,
            "-selector",
            &selector,
        ],
        vec![
            "entry",
            "create",
            "-parentID",
            &too_long,
            "-spiffeID",
            "spiffe://example.org/w",
            "-selector",
            &selector,
        ],
        vec!["token", "generate", "-spiffeID", &too_long],
    ] {
        let out = server.cli(&args).unwrap();
        assert!(!out.success(), "{args:?} succeeded:\n{}", out.stdout);
        assert!(
            out.stderr.contains("2048 bytes"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let listed = server
        .cli(&["entry", "show", "-output", "json"])
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        !listed.stdout.contains(&too_long),
        "no over-long entry is stored"
    );

    // The Workload API: asking for an over-long ID is a bad request.
    let client = WorkloadApiClient::connect_to(agent.endpoint())
        .await
        .unwrap();
    let wanted = SpiffeId::new(&too_long).unwrap();
    let err = client
        .fetch_jwt_svid(["db"], Some(&wanted))
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
}
