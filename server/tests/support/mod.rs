//! What the areas of the server's tests share: a real server started in
//! process (temporary data dir, TCP port 0, admin socket in the temp dir),
//! admin clients over the Unix socket, and agent clients over TLS that
//! verify the server's SPIFFE ID and authenticate with the SVID they got
//! from `AttestAgent`.
//!
//! `fake_kube`: a small fake Kubernetes API server for `k8s_psat/`.

pub mod fake_kube;

use std::path::{Path, PathBuf};

use spinel_config::hcl::ConfigFile;
use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, CreateJoinTokenRequest,
};
use spinel_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use spinel_proto::spire::api::server::entry::v1::{
    entry_client::EntryClient, BatchCreateEntryRequest,
};
use spinel_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use spinel_proto::spire::api::types;
use spinel_server::config::{self, Overrides};
use spinel_server::run::{self, RunningServer};
use tempfile::TempDir;
use tonic::transport::Channel;

/// The trust domain of test servers.
pub const TD: &str = "example.org";

use spinel_test_fixtures::raw_agent;
pub use spinel_test_fixtures::raw_agent::{
    attest, client_config, csr, id, id_string, tls_channel, Agent, ApiServer,
};

/// A raw agent's view of the in-process server: its TCP address and the
/// X.509 authorities of its current bundle.
impl ApiServer for TestServer {
    fn addr(&self) -> std::net::SocketAddr {
        TestServer::addr(self)
    }

    fn roots(&self) -> Vec<Vec<u8>> {
        TestServer::roots(self)
    }
}

/// A running server and its directory.
pub struct TestServer {
    pub dir: TempDir,
    pub server: Option<RunningServer>,
    pub socket_path: PathBuf,
    config_text: String,
}

impl TestServer {
    /// A server with a disk key manager, so a restart keeps the CA.
    pub async fn start() -> TestServer {
        Self::start_with("").await
    }

    /// A server with `extra` lines inside `server { }`.
    pub async fn start_with(extra: &str) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("spinel-api")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        let socket_path = root.join("private/api.sock");
        let config_text = format!(
            r#"server {{
    bind_address = "127.0.0.1"
    bind_port = 0
    socket_path = "{socket}"
    trust_domain = "{TD}"
    data_dir = "{data}"
{extra}
}}
plugins {{
    DataStore "sled" {{
        plugin_data {{}}
    }}
    KeyManager "disk" {{
        plugin_data {{
            keys_path = "{data}/keys.json"
        }}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
}}
"#,
            socket = socket_path.display(),
            data = root.join("data").display(),
        );
        let mut server = TestServer {
            dir,
            server: None,
            socket_path,
            config_text,
        };
        server.boot().await;
        server
    }

    async fn boot(&mut self) {
        let file = ConfigFile::parse(Path::new("test.conf"), &self.config_text).unwrap();
        let config = config::from_file(&file, &Overrides::default()).unwrap();
        self.server = Some(run::start(config).await.unwrap());
    }

    /// Stops the server gracefully.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }

    /// Stops and starts the server on the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.boot().await;
    }

    fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server is running")
    }

    /// The TCP address agents connect to.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.running().local_addr()
    }

    /// The X.509 authorities of the current bundle.
    pub fn roots(&self) -> Vec<Vec<u8>> {
        self.running().bundle().x509_authorities
    }

    /// A channel over the admin Unix socket.
    pub async fn admin_channel(&self) -> Channel {
        raw_agent::unix_channel(self.socket_path.clone()).await
    }

    /// Entry API over the admin socket.
    pub async fn entries(&self) -> EntryClient<Channel> {
        EntryClient::new(self.admin_channel().await)
    }

    /// Agent API over the admin socket.
    pub async fn agents(&self) -> AgentClient<Channel> {
        AgentClient::new(self.admin_channel().await)
    }

    /// Bundle API over the admin socket.
    pub async fn bundles(&self) -> BundleClient<Channel> {
        BundleClient::new(self.admin_channel().await)
    }

    /// A join token (600 s), optionally with an alias entry.
    pub async fn token(&self, alias: Option<&str>) -> String {
        self.agents()
            .await
            .create_join_token(CreateJoinTokenRequest {
                ttl: 600,
                token: String::new(),
                agent_id: alias.map(id),
            })
            .await
            .unwrap()
            .into_inner()
            .value
    }

    /// Creates one entry over the admin socket, returning its ID.
    pub async fn create_entry(
        &self,
        parent: &str,
        spiffe_id: &str,
        selector: &str,
        dns: &[&str],
    ) -> String {
        let (kind, value) = selector.split_once(':').unwrap();
        let response = self
            .entries()
            .await
            .batch_create_entry(BatchCreateEntryRequest {
                entries: vec![types::Entry {
                    parent_id: Some(id(parent)),
                    spiffe_id: Some(id(spiffe_id)),
                    selectors: vec![types::Selector {
                        r#type: kind.into(),
                        value: value.into(),
                    }],
                    dns_names: dns.iter().map(|d| d.to_string()).collect(),
                    ..Default::default()
                }],
                output_mask: None,
            })
            .await
            .unwrap()
            .into_inner();
        let result = &response.results[0];
        let status = result.status.as_ref().unwrap();
        assert_eq!(status.code, 0, "{}", status.message);
        result.entry.as_ref().unwrap().id.clone()
    }

    /// A TLS channel to the server, as an agent before attestation.
    pub async fn anonymous_channel(&self) -> Channel {
        raw_agent::anonymous(self).await
    }
}

/// The SVID client of an agent.
pub async fn svid_client(server: &TestServer, agent: &Agent) -> SvidClient<Channel> {
    SvidClient::new(agent.channel(server).await)
}
