//! The TLS connection to the server.
//!
//! The server proves itself with an X509-SVID for `spiffe://<td>/spire/server`
//! that chains to the trust bundle; [`SpiffeServerVerifier`] checks exactly
//! that (no DNS name is involved: the agent may reach the server by any
//! address). After attestation the agent authenticates with its own SVID.
//! `insecure_bootstrap` skips server verification, only for the very first
//! attestation of an agent that has no bundle yet.
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
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use spinel_spiffe::TrustDomain;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

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

/// Verifies the server's X509-SVID against the bundle and its SPIFFE ID.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Vec<CertificateDer<'static>>,
    expected_id: String,
    provider: Arc<CryptoProvider>,
    insecure: bool,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let anchors: Vec<_> = self
            .roots
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .collect();
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|e| {
            rustls::Error::General(format!("server certificate does not parse: {e}"))
        })?;
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &anchors,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| {
            rustls::Error::General(format!(
                "server certificate does not chain to the trust bundle: {e}"
            ))
        })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| rustls::Error::General("server certificate does not parse".into()))?;
        let uris: Vec<String> = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if uris != [self.expected_id.clone()] {
            return Err(rustls::Error::General(format!(
                "server presented SPIFFE ID {uris:?}, expected {}",
                self.expected_id
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The agent's own identity for mTLS: chain (leaf first) and PKCS#8 key.
pub type Identity<'a> = (&'a [Vec<u8>], &'a [u8]);

/// A rustls client config trusting `roots` for `trust_domain`'s server.
pub fn tls_config(
    trust_domain: &TrustDomain,
    roots: &[Vec<u8>],
    identity: Option<Identity<'_>>,
    insecure: bool,
) -> Result<ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = SpiffeServerVerifier {
        roots: roots
            .iter()
            .map(|r| CertificateDer::from(r.clone()))
            .collect(),
        expected_id: spinel_spiffe::id::server_id(trust_domain).to_string(),
        provider: provider.clone(),
        insecure,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
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
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        })),
    )
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}
