//! The TLS connection to the server.
//!
//! The server proves itself with an X509-SVID for `spiffe://<td>/spire/server`
//! that chains to the trust bundle; [`SpiffeIdServerVerifier`] checks exactly
//! that (no DNS name is involved: the agent may reach the server by any
//! address). After attestation the agent authenticates with its own SVID.
//! `insecure_bootstrap` skips server verification, only for the very first
//! attestation of an agent that has no bundle yet.
//!
//! [`server_channel`] is the one way the agent reaches its server: without
//! a client certificate to attest (`manager::identity`), with its SVID for
//! every sync round (`manager::sync`); the manager rebuilds it whenever its
//! roots or its SVID change.
//!
//! Over that channel: incremental entry sync ([`sync_authorized_entries`],
//! SPIRE's `SyncAuthorizedEntries`) and Spinel's change push
//! ([`watch_changes`]).

mod entries;
mod watch;

pub use entries::{sync_authorized_entries, SyncedEntries};
pub use watch::{wait_for_change, watch_changes, WatchGuard};

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::ClientConfig;
use spinel_spiffe::tls::{AnyServerCertificate, SpiffeIdServerVerifier, TrustWatch};
use spinel_spiffe::TrustDomain;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::AgentConfig;

/// Why the server connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TLS configuration could not be built (bad certificate or key).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The server address is not usable.
    #[error("invalid server address {0:?}")]
    Address(String),
}

/// The agent's own identity for mTLS: chain (leaf first) and PKCS#8 key.
pub type Identity<'a> = (&'a [Vec<u8>], &'a [u8]);

/// A rustls client config trusting `roots` for `trust_domain`'s server;
/// each handshake's verdict on the chain goes to `trust`.
pub fn tls_config(
    trust_domain: &TrustDomain,
    roots: &[Vec<u8>],
    identity: Option<Identity<'_>>,
    insecure: bool,
    trust: &Arc<TrustWatch>,
) -> Result<ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if insecure {
        AnyServerCertificate::new(provider.clone())
    } else {
        Arc::new(
            SpiffeIdServerVerifier::new(
                roots,
                spinel_spiffe::id::server_id(trust_domain).to_string(),
                provider.clone(),
            )
            .watched_by(trust.clone()),
        )
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                chain
                    .iter()
                    .map(|c| CertificateDer::from(c.clone()))
                    .collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
            )
            .map_err(|e| ClientError::Tls(format!("agent SVID unusable: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A lazily connecting gRPC channel to `address:port` over TLS. It
/// reconnects by itself when the server comes back.
pub fn channel(address: &str, port: u16, config: ClientConfig) -> Result<Channel, ClientError> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let host = address.to_owned();
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| ClientError::Address(host.clone()))?
        .to_owned();
    let endpoint = Endpoint::from_shared(format!("http://{}:{port}", bracket(&host)))
        .map_err(|_| ClientError::Address(host.clone()))?
        .connect_timeout(std::time::Duration::from_secs(5));
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let target = format!("{}:{port}", bracket(&host));
            async move {
                let tcp = TcpStream::connect(target).await?;
                // gRPC writes small frames; Nagle would hold them for the
                // peer's delayed ACK (~40 ms per exchange).
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        })),
    )
}

/// The channel to the configured server, trusting `roots` and presenting
/// `identity` (none: to attest). With no roots and `insecure_bootstrap`,
/// the server is not verified (first attestation only).
pub fn server_channel(
    config: &AgentConfig,
    roots: &[Vec<u8>],
    identity: Option<Identity<'_>>,
    trust: &Arc<TrustWatch>,
) -> Result<Channel, ClientError> {
    let tls = tls_config(
        &config.trust_domain,
        roots,
        identity,
        roots.is_empty() && config.insecure_bootstrap,
        trust,
    )?;
    channel(&config.server_address, config.server_port, tls)
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}
