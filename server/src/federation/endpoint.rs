//! The bundle endpoint: `GET /` (any path, as in SPIRE) answers the current SPIFFE bundle of this
//! server's trust domain as stored in the datastore (the CA's authorities
//! plus any appended with `AppendBundle`), with its `spiffe_sequence` and
//! the configured `spiffe_refresh_hint`, over HTTPS, to anyone.
//!
//! With `https_spiffe` the endpoint presents an X509-SVID for
//! `spiffe://<td>/spire/server` from this server's CA, renewed at half its
//! lifetime and on every bundle change (CA rotation). With `https_web` it
//! presents the configured certificate files, re-read every
//! `file_sync_interval` (default 1 minute).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use spinel_spiffe::bundle::JwtAuthority;
#[cfg(test)]
use spinel_spiffe::TrustDomain;
use spinel_spiffe::{Clock, TrustBundle};
use spinel_transport::tcp::{TcpAdmission, HTTP_CONNECTION_LIFETIME, HTTP_LIMITS};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::FederationError;
use crate::ca::Ca;
use crate::config::{BundleEndpointConfig, EndpointProfile};
use crate::datastore::DataStore;
use crate::tls::{self, load_cert_files, ServerCertResolver};

/// A bound bundle endpoint, ready to serve.
#[derive(Debug)]
pub struct BundleEndpoint {
    listener: TcpListener,
    resolver: Arc<ServerCertResolver>,
    config: BundleEndpointConfig,
    provider: Arc<CryptoProvider>,
}

impl BundleEndpoint {
    /// Binds the endpoint and prepares its first certificate.
    pub async fn bind(config: BundleEndpointConfig, ca: &Ca) -> Result<Self, FederationError> {
        let provider = tls::provider();
        let key = match &config.profile {
            EndpointProfile::HttpsSpiffe => {
                tls::issue_server_key(ca, &["localhost".to_owned()], &provider)
                    .map_err(|e| FederationError::Tls(e.to_string()))?
                    .0
            }
            EndpointProfile::HttpsWeb(files) => load_cert_files(files, &provider)?,
        };
        let address = format!("{}:{}", config.address, config.port);
        let listener = TcpListener::bind((config.address.as_str(), config.port))
            .await
            .map_err(|e| FederationError::Listen {
                address: address.clone(),
                reason: e.to_string(),
            })?;
        Ok(BundleEndpoint {
            listener,
            resolver: Arc::new(ServerCertResolver::new(key)),
            config,
            provider,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` turns true, keeping the certificate current.
    pub async fn serve(
        self,
        ca: Arc<Ca>,
        datastore: Arc<dyn DataStore>,
        clock: Clock,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tls_config =
            match rustls::ServerConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()
            {
                Ok(b) => b
                    .with_no_client_auth()
                    .with_cert_resolver(self.resolver.clone()),
                Err(e) => {
                    tracing::error!(error = %e, "bundle endpoint TLS setup failed");
                    return;
                }
            };
        tls_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
        // The certificate keeper and the connections live inside this
        // future, so that nothing holding the CA or the datastore outlives
        // the endpoint once it is stopped or dropped.
        let keeper = keep_certificate(
            self.config.profile.clone(),
            ca.clone(),
            clock,
            self.resolver.clone(),
            self.provider.clone(),
        );
        tokio::pin!(keeper);
        let mut keeping = true;
        let mut connections = tokio::task::JoinSet::new();
        let refresh_hint = i64::try_from(self.config.refresh_hint.as_secs()).unwrap_or(i64::MAX);
        let mut admission = TcpAdmission::new(self.listener, HTTP_LIMITS, "bundle endpoint");
        loop {
            while connections.try_join_next().is_some() {}
            let accepted = tokio::select! {
                accepted = admission.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => break,
                () = &mut keeper, if keeping => {
                    keeping = false;
                    continue;
                }
            };
            let Ok((stream, remote, permit)) = accepted else {
                break;
            };
            let acceptor = acceptor.clone();
            let (ca, datastore) = (ca.clone(), datastore.clone());
            connections.spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(
                    HTTP_LIMITS.first_request_timeout,
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(remote = %remote, error = %e, "bundle endpoint TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let service = service_fn(move |req| {
                    let (ca, datastore) = (ca.clone(), datastore.clone());
                    async move {
                        let bundle = current_bundle(&ca, datastore.as_ref()).await;
                        answer(req, bundle, refresh_hint).await
                    }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(tls), service);
                let _ = tokio::time::timeout(HTTP_CONNECTION_LIFETIME, conn).await;
            });
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// The trust domain's bundle as stored, or the CA's when none is stored
/// (or the datastore fails).
async fn current_bundle(ca: &Ca, datastore: &dyn DataStore) -> TrustBundle {
    let td = ca.trust_domain();
    match datastore.get_bundle(td.as_str()).await {
        Ok(Some(stored)) => {
            let mut bundle = TrustBundle::new(td.clone());
            bundle.x509_authorities = stored.x509_authorities;
            bundle.jwt_authorities = stored
                .jwt_authorities
                .into_iter()
                .map(|k| JwtAuthority {
                    key_id: k.key_id,
                    public_key: k.public_key,
                    expires_at: k.expires_at,
                })
                .collect();
            bundle.sequence = stored.sequence_number;
            bundle
        }
        Ok(None) => ca.bundle(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the stored bundle; serving the CA's");
            ca.bundle()
        }
    }
}

/// The bundle document served: `bundle` with `refresh_hint` seconds.
pub fn bundle_document(mut bundle: TrustBundle, refresh_hint: i64) -> Result<String, String> {
    bundle.refresh_hint = refresh_hint;
    bundle.to_json().map_err(|e| e.to_string())
}

async fn answer(
    req: Request<Incoming>,
    bundle: TrustBundle,
    refresh_hint: i64,
) -> Result<Response<String>, Infallible> {
    let (status, body) = if req.method() != Method::GET {
        (StatusCode::METHOD_NOT_ALLOWED, String::new())
    } else {
        // Any path, as SPIRE's endpoint does: relationships may name a URL
        // with a path.
        match bundle_document(bundle, refresh_hint) {
            Ok(json) => (StatusCode::OK, json),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the bundle");
                (StatusCode::INTERNAL_SERVER_ERROR, String::new())
            }
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Keeps the served certificate current until aborted.
async fn keep_certificate(
    profile: EndpointProfile,
    ca: Arc<Ca>,
    clock: Clock,
    resolver: Arc<ServerCertResolver>,
    provider: Arc<CryptoProvider>,
) {
    match profile {
        EndpointProfile::HttpsWeb(files) => {
            tls::reload_cert_files(files, resolver, provider, "bundle endpoint").await
        }
        EndpointProfile::HttpsSpiffe => {
            let mut bundles = ca.watch_bundle();
            bundles.mark_unchanged();
            let names = ["localhost".to_owned()];
            let mut renew_at = clock.now() + ca.default_x509_svid_ttl() / 2;
            loop {
                tokio::select! {
                    changed = bundles.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep_until(clock.instant_at(renew_at)) => {}
                }
                match tls::issue_server_key(&ca, &names, &provider) {
                    Ok((key, not_after)) => {
                        resolver.set(key);
                        let now = clock.now();
                        renew_at = now + not_after.duration_since(now).unwrap_or_default() / 2;
                        tracing::debug!("bundle endpoint certificate renewed");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot renew the bundle endpoint certificate; retrying in 10 s");
                        renew_at = clock.now() + Duration::from_secs(10);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_carries_sequence_and_refresh_hint() {
        let mut bundle = TrustBundle::new(TrustDomain::new("example.org").unwrap());
        bundle.sequence = 7;
        let doc: serde_json::Value =
            serde_json::from_str(&bundle_document(bundle, 300).unwrap()).unwrap();
        assert_eq!(doc["spiffe_sequence"], 7);
        assert_eq!(doc["spiffe_refresh_hint"], 300);
        assert!(doc["keys"].as_array().unwrap().is_empty());
    }
}
