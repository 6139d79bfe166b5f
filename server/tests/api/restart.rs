//! A restart on the same data directory keeps entries, agents and the
//! trust bundle; the admin socket is reclaimed and a second server on the
//! same socket is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{attest, TestServer};
use spinel_proto::spire::api::server::entry::v1::{
    entry_client::EntryClient, GetAuthorizedEntriesRequest, ListEntriesRequest,
};

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_entries_agents_and_bundle() {
    let mut server = TestServer::start().await;
    let token = server.token(Some("spiffe://example.org/myagent")).await;
    let agent = attest(&server, &token).await.unwrap();
    let entry = server
        .create_entry(
            "spiffe://example.org/myagent",
            "spiffe://example.org/web",
            "unix:uid:1000",
            &[],
        )
        .await;
    let bundle_before = server.server.as_ref().unwrap().bundle();

    server.restart().await;

    let bundle_after = server.server.as_ref().unwrap().bundle();
    assert_eq!(
        bundle_before.x509_authorities,
        bundle_after.x509_authorities
    );
    assert_eq!(
        bundle_before
            .jwt_authorities
            .iter()
            .map(|k| &k.key_id)
            .collect::<Vec<_>>(),
        bundle_after
            .jwt_authorities
            .iter()
            .map(|k| &k.key_id)
            .collect::<Vec<_>>()
    );
    let listed = server
        .entries()
        .await
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(listed.iter().any(|e| e.id == entry), "{listed:?}");

    // The agent's SVID from before the restart still works.
    let mut client = EntryClient::new(agent.channel(&server).await);
    let authorized = client
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(authorized.iter().any(|e| e.id == entry));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_a_live_socket_is_refused() {
    let server = TestServer::start().await;
    let file = spinel_config::hcl::ConfigFile::parse(
        std::path::Path::new("second.conf"),
        &format!(
            "server {{\n bind_address = \"127.0.0.1\"\n bind_port = 0\n trust_domain = \"example.org\"\n socket_path = \"{}\"\n data_dir = \"{}\"\n}}\nplugins {{\n DataStore \"sled\" {{}}\n KeyManager \"memory\" {{}}\n}}\n",
            server.socket_path.display(),
            server.dir.path().join("second").display()
        ),
    )
    .unwrap();
    let config = spinel_server::config::from_file(&file, &Default::default()).unwrap();
    let err = spinel_server::run::start(config)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("another server"), "{err}");
}
