//! Shared by the `standing_*` and `audit_*` process tests: a raw agent
//! (a tonic client, no `spinel-agent`) against a real `spinel-server`
//! process: it attests with a join token over anonymous TLS and then calls
//! with the SVID it got, so a test controls exactly what is sent.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use spinel_proto::spire::api::server::agent::v1::{
    agent_client::AgentClient, attest_agent_request, attest_agent_response, AgentX509svidParams,
    AttestAgentRequest,
};
use spinel_proto::spire::api::types;
use spinel_test_fixtures::ServerHandle;
use tonic::transport::Channel;

use crate::api_support::{client_config, csr, id_string, tls_channel, Agent};

/// The X.509 authorities of the server's bundle (`bundle show`).
pub fn roots(server: &ServerHandle) -> Vec<Vec<u8>> {
    let pem = server.bundle_pem().unwrap();
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

/// The server's TCP address.
pub fn addr(server: &ServerHandle) -> std::net::SocketAddr {
    format!("127.0.0.1:{}", server.port).parse().unwrap()
}

/// A TLS channel without a client certificate.
pub async fn anonymous(server: &ServerHandle) -> Channel {
    tls_channel(addr(server), client_config(&roots(server), None)).await
}

/// A TLS channel authenticated with `agent`'s SVID.
pub async fn as_agent(server: &ServerHandle, agent: &Agent) -> Channel {
    tls_channel(
        addr(server),
        client_config(&roots(server), Some((&agent.chain, &agent.key_der))),
    )
    .await
}

/// `AttestAgent` with the join token `token`.
pub async fn attest(server: &ServerHandle, token: &str) -> Result<Agent, tonic::Status> {
    let (key, csr) = csr(&[]);
    let request = AttestAgentRequest {
        step: Some(attest_agent_request::Step::Params(
            attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: "join_token".into(),
                    payload: token.as_bytes().to_vec(),
                }),
                params: Some(AgentX509svidParams { csr }),
            },
        )),
    };
    let mut stream = AgentClient::new(anonymous(server).await)
        .attest_agent(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let message = stream
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("stream ended without a result"))?;
    let Some(attest_agent_response::Step::Result(result)) = message.step else {
        return Err(tonic::Status::unknown("expected a result"));
    };
    let svid = result.svid.unwrap();
    Ok(Agent {
        id: id_string(svid.id.as_ref().unwrap()),
        chain: svid.cert_chain,
        key_der: key.serialize_der(),
    })
}

/// A channel over the server's admin Unix socket (a local admin).
pub async fn admin(server: &ServerHandle) -> Channel {
    use hyper_util::rt::TokioIo;
    use tonic::transport::{Endpoint, Uri};
    let path = server.socket_path.clone();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap()
}

/// The audit records in the server log, as JSON `fields` objects (the
/// server must run with `audit_log_enabled` and `log_format = "json"`).
pub fn audit_lines(server: &ServerHandle) -> Vec<serde_json::Value> {
    server
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["type"] == "audit")
        .map(|v| v["fields"].clone())
        .collect()
}

/// Waits (bounded, as a failure guard) for the audit line of `method`
/// (a path suffix) matching `keep`.
pub async fn audit_line(
    server: &ServerHandle,
    method: &str,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(line) = audit_lines(server)
            .into_iter()
            .find(|l| l["method"].as_str().is_some_and(|m| m.ends_with(method)) && keep(l))
        {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no audit line for {method}:\n{}",
            server.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
