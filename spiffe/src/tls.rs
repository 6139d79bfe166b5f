//! TLS pieces both binaries need.
//!
//! [`SpiffeIdServerVerifier`] authenticates a server by its X509-SVID: the
//! certificate must chain to a trust bundle and carry exactly one URI SAN,
//! the expected SPIFFE ID (no DNS name is involved). The agent uses it for
//! `spiffe://<td>/spire/server`, the server for `https_spiffe` federation
//! endpoints.
//!
//! A [`TrustWatch`] attached to the verifier remembers since when the
//! server's certificate has not chained to the bundle (its issuer is not a
//! trusted authority) and forgets it at the next handshake that verifies:
//! the agent's `rebootstrap_delay` counts from there.
//!
//! [`AnyServerCertificate`] backs the explicit "do not verify" switches
//! operators set for Kubernetes endpoints with self-signed certificates
//! (`skip_kubelet_verification`, a kubeconfig's `insecure-skip-tls-verify`):
//! the peer's certificate is accepted whatever it is, but the handshake
//! signatures are still checked, so the session is with the holder of the
//! presented key. Never use it for anything a SPIFFE ID must authenticate.

use std::sync::{Arc, Mutex};

use crate::Clock;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// The URI SANs of a DER certificate (none if it does not parse).
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    cert.subject_alternative_name()
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
        .unwrap_or_default()
}

/// Verifies a server's X509-SVID against a bundle and one SPIFFE ID.
#[derive(Debug)]
pub struct SpiffeIdServerVerifier {
    roots: Vec<CertificateDer<'static>>,
    expected_id: String,
    provider: Arc<CryptoProvider>,
    /// What the peer is called in errors ("server", "endpoint").
    peer: &'static str,
    /// What the roots are called in errors ("the trust bundle").
    bundle: &'static str,
    /// The error when no root is usable, if that needs its own advice.
    no_roots: Option<&'static str>,
    /// Told about untrusted and verified certificates, if set.
    watch: Option<Arc<TrustWatch>>,
}

/// Since when a server's certificate has failed to chain to the trust
/// bundle, if it does now: set by the first such handshake, cleared by the
/// next one whose chain verifies.
#[derive(Debug)]
pub struct TrustWatch {
    clock: Clock,
    since: Mutex<Option<u64>>,
}

impl TrustWatch {
    /// A watch that has seen nothing yet, telling time by `clock`.
    pub fn new(clock: Clock) -> Arc<Self> {
        Arc::new(TrustWatch {
            clock,
            since: Mutex::new(None),
        })
    }

    /// Unix seconds of the first handshake, since the last verified one,
    /// whose certificate did not chain to the bundle.
    pub fn untrusted_since(&self) -> Option<u64> {
        self.since
            .lock()
            .map(|s| *s)
            .unwrap_or_else(|p| *p.into_inner())
    }

    /// How long the server has been untrusted, if it is.
    pub fn untrusted_for(&self) -> Option<std::time::Duration> {
        let since = self.untrusted_since()?;
        let now = u64::try_from(self.clock.unix_seconds()).unwrap_or_default();
        Some(std::time::Duration::from_secs(now.saturating_sub(since)))
    }

    /// Records an untrusted certificate now (keeps an earlier time).
    pub fn saw_untrusted(&self) {
        let now = u64::try_from(self.clock.unix_seconds()).unwrap_or_default();
        self.set(Some(now), false);
    }

    /// Forgets what was seen: a chain verified, or the bundle itself was
    /// replaced.
    pub fn reset(&self) {
        self.set(None, true);
    }

    fn set(&self, value: Option<u64>, overwrite: bool) {
        let mut since = match self.since.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if overwrite || since.is_none() {
            *since = value;
        }
    }
}

/// Whether a chain error means the issuer is not among the trusted
/// authorities (as opposed to an expired or malformed certificate).
fn untrusted_issuer(e: &webpki::Error) -> bool {
    matches!(
        e,
        webpki::Error::UnknownIssuer
            | webpki::Error::InvalidSignatureForPublicKey
            | webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
    )
}

impl SpiffeIdServerVerifier {
    /// Accepts a server whose certificate chains to `roots` (DER) and names
    /// exactly `expected_id`.
    pub fn new(roots: &[Vec<u8>], expected_id: String, provider: Arc<CryptoProvider>) -> Self {
        SpiffeIdServerVerifier {
            roots: roots
                .iter()
                .map(|r| CertificateDer::from(r.clone()))
                .collect(),
            expected_id,
            provider,
            peer: "server",
            bundle: "the trust bundle",
            no_roots: None,
            watch: None,
        }
    }

    /// Reports every handshake's chain verdict to `watch`.
    pub fn watched_by(mut self, watch: Arc<TrustWatch>) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Words errors use for the peer and its bundle, e.g. `("endpoint",
    /// "the trust domain's known bundle")`.
    pub fn described_as(mut self, peer: &'static str, bundle: &'static str) -> Self {
        self.peer = peer;
        self.bundle = bundle;
        self
    }

    /// The error to give when no root is usable, instead of a chain error.
    pub fn when_no_roots(mut self, message: &'static str) -> Self {
        self.no_roots = Some(message);
        self
    }
}

/// The handshake-signature methods of a rustls certificate verifier
/// (`ServerCertVerifier` or `ClientCertVerifier`) with a
/// `provider: Arc<CryptoProvider>` field: every Spinel verifier checks them
/// the same way, with the provider's algorithms. Used inside the `impl`:
///
/// ```ignore
/// impl ClientCertVerifier for MyVerifier {
///     // verify_client_cert, root_hint_subjects, ...
///     spinel_spiffe::handshake_signatures_by_provider!();
/// }
/// ```
#[macro_export]
macro_rules! handshake_signatures_by_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> ::std::result::Result<
            ::rustls::client::danger::HandshakeSignatureValid,
            ::rustls::Error,
        > {
            ::rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &::rustls::pki_types::CertificateDer<'_>,
            dss: &::rustls::DigitallySignedStruct,
        ) -> ::std::result::Result<
            ::rustls::client::danger::HandshakeSignatureValid,
            ::rustls::Error,
        > {
            ::rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> ::std::vec::Vec<::rustls::SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

impl ServerCertVerifier for SpiffeIdServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let peer = self.peer;
        let anchors: Vec<_> = self
            .roots
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .collect();
        if let (true, Some(message)) = (anchors.is_empty(), self.no_roots) {
            return Err(rustls::Error::General(message.to_owned()));
        }
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|e| {
            rustls::Error::General(format!("{peer} certificate does not parse: {e}"))
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
            if let (true, Some(watch)) = (untrusted_issuer(&e), &self.watch) {
                watch.saw_untrusted();
            }
            rustls::Error::General(format!(
                "{peer} certificate does not chain to {}: {e}",
                self.bundle
            ))
        })?;
        if let Some(watch) = &self.watch {
            watch.reset();
        }
        let uris = uri_sans(end_entity);
        if uris != [self.expected_id.clone()] {
            return Err(rustls::Error::General(format!(
                "{peer} presented SPIFFE ID {uris:?}, expected {}",
                self.expected_id
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    crate::handshake_signatures_by_provider!();
}

/// A server certificate verifier that accepts any certificate.
#[derive(Debug)]
pub struct AnyServerCertificate {
    provider: Arc<CryptoProvider>,
}

impl AnyServerCertificate {
    /// A verifier checking handshake signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Arc<Self> {
        Arc::new(AnyServerCertificate { provider })
    }
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    crate::handshake_signatures_by_provider!();
}

#[cfg(test)]
mod tests;
