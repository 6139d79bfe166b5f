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
