//! The TLS connection to the server.
//!
//! The server proves itself with an X509-SVID for `spiffe://<td>/spire/server`
//! that chains to the trust bundle; [`SpiffeIdServerVerifier`] checks exactly
//! that (no DNS name is involved: the agent may reach the server by any
//! address). After attestation the agent authenticates with its own SVID.
//! `insecure_bootstrap` skips server verification, only for the very first
//! attestation of an agent that has no bundle yet.
//!
//! [`server_channel`] is the one way the agent reaches its servers
//! ([`ServerPool`]: one or several, tried in turn): without
//! a client certificate to attest (`manager::identity`), with its SVID for
//! every sync round (`manager::sync`); the manager rebuilds it whenever its
//! roots or its SVID change.
//!
//! Over that channel: incremental entry sync ([`sync_authorized_entries`],
//! SPIRE's `SyncAuthorizedEntries`) and Spinel's change push
//! ([`watch_changes`]).

mod entries;
mod servers;
mod watch;

pub use entries::{sync_authorized_entries, SyncedEntries};
pub use servers::{Reach, ServerPool, CONNECT_TIMEOUT, PROBE_TIMEOUT};
pub use watch::{wait_for_change, watch_changes, WatchGuard};

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ClientConfig;
use spinel_spiffe::tls::{AnyServerCertificate, SpiffeIdServerVerifier, TrustWatch};
use spinel_spiffe::TrustDomain;
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

/// A lazily connecting gRPC channel to the servers of `pool` over TLS. It
/// reconnects by itself when the server comes back, or moves to another
/// server of the pool when the one in use fails.
pub fn channel(pool: Arc<ServerPool>, config: ClientConfig) -> Result<Channel, ClientError> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // The `:authority` of every request: the first configured server (the
    // server ignores it; its certificate is checked by SPIFFE ID).
    let first = pool
        .targets()
        .first()
        .map(ToString::to_string)
        .ok_or_else(|| ClientError::Address(String::new()))?;
    let endpoint = Endpoint::from_shared(format!("http://{first}"))
        .map_err(|_| ClientError::Address(first.clone()))?;
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let pool = pool.clone();
            async move {
                let tls = pool.connect(&connector).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        })),
    )
}

/// The channel to the configured servers, trusting `roots` and presenting
/// `identity` (none: to attest). With no roots and `insecure_bootstrap`,
/// the server is not verified (first attestation only).
pub fn server_channel(
    config: &AgentConfig,
    pool: &Arc<ServerPool>,
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
    channel(pool.clone(), tls)
}
