//! OIDC discovery for JWT-SVIDs, built into the server
//! (`server.oidc_discovery { ... }`), so that any OpenID Connect consumer
//! (Vault/OpenBao JWT auth, cloud workload identity federation, a JWT
//! library) can verify JWT-SVIDs from the issuer URL alone.
//!
//! - `GET /.well-known/openid-configuration`: `issuer` (`server.jwt_issuer`,
//!   or `<scheme>://<Host>` when unset), `jwks_uri` (`<scheme>://<Host>/keys`
//!   when `domains` vouch for the Host, else `<jwt_issuer>/keys`),
//!   `authorization_endpoint` `""`, `response_types_supported` `["id_token"]`,
//!   `subject_types_supported` `["public"]`,
//!   `id_token_signing_alg_values_supported` `["RS256", "ES256", "ES384"]`.
//! - `GET /keys`: a JWKS of the trust domain's JWT authorities, each with
//!   `kid`, `use: "sig"` and `alg`, read from the CA's current bundle, so a
//!   rotated key is published as soon as the CA publishes it.
//!
//! When `domains` is set, a request whose `Host` (without port) is not one
//! of them is answered 404. Without `domains` the `Host` header is the
//! caller's to choose, so nothing published comes from it: the
//! configuration requires `jwt_issuer` then, unless
//! `insecure_allow_any_host = true` asks for the old, reflecting behaviour
//! (a warning is logged at start). TLS comes from `serving_cert_file` (re-read
//! every minute), or plain HTTP with `insecure_http = true` for a
//! TLS-terminating proxy in front.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use spinel_spiffe::bundle::spki_to_jwk;
use spinel_spiffe::TrustBundle;
use spinel_transport::tcp::{TcpAdmission, HTTP_CONNECTION_LIFETIME, HTTP_LIMITS};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::ca::Ca;
use crate::config::OidcDiscoveryConfig;
use crate::federation::FederationError;
use crate::tls::{self, load_cert_files, ServerCertResolver};

/// Signing algorithms advertised (SPIRE's provider's list).
pub const SIGNING_ALGS: &[&str] = &["RS256", "ES256", "ES384"];

/// What the handlers need.
#[derive(Debug, Clone)]
struct Site {
    issuer: Option<String>,
    domains: Arc<Vec<String>>,
    scheme: &'static str,
    bundles: watch::Receiver<TrustBundle>,
}

/// A bound OIDC discovery listener.
#[derive(Debug)]
pub struct OidcDiscovery {
    listener: TcpListener,
    config: OidcDiscoveryConfig,
    resolver: Option<Arc<ServerCertResolver>>,
}

impl OidcDiscovery {
    /// Binds the listener and loads the certificate, if any.
    pub async fn bind(config: OidcDiscoveryConfig) -> Result<Self, FederationError> {
        let resolver = match &config.serving_cert_file {
            Some(files) => Some(Arc::new(ServerCertResolver::new(load_cert_files(
                files,
                &tls::provider(),
            )?))),
            None => None,
        };
        let address = format!("{}:{}", config.address, config.port);
        let listener = TcpListener::bind((config.address.as_str(), config.port))
            .await
            .map_err(|e| FederationError::Listen {
                address,
                reason: e.to_string(),
            })?;
        Ok(OidcDiscovery {
            listener,
            config,
            resolver,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` turns true.
    pub async fn serve(
        self,
        ca: Arc<Ca>,
        issuer: Option<String>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let provider = tls::provider();
        let acceptor = match &self.resolver {
            Some(resolver) => {
                let mut cfg = match rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                {
                    Ok(b) => b.with_no_client_auth().with_cert_resolver(resolver.clone()),
                    Err(e) => {
                        tracing::error!(error = %e, "OIDC discovery TLS setup failed");
                        return;
                    }
                };
                cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
            }
            None => None,
        };
        let reload = match (&self.resolver, &self.config.serving_cert_file) {
            (Some(resolver), Some(files)) => {
                let (resolver, files) = (resolver.clone(), files.clone());
                Some(tokio::spawn(tls::reload_cert_files(
                    files,
                    resolver,
                    provider,
                    "OIDC discovery",
                )))
            }
            _ => None,
        };
        if self.config.domains.is_empty() && issuer.is_none() {
            tracing::warn!(
                "OIDC discovery publishes the request's Host header as issuer and jwks_uri \
                 (insecure_allow_any_host = true, no domains, no jwt_issuer): \
                 any caller chooses them; development only"
            );
        }
        let site = Site {
            issuer,
            domains: Arc::new(self.config.domains.clone()),
            scheme: if acceptor.is_some() { "https" } else { "http" },
            bundles: ca.watch_bundle(),
        };
        let mut admission = TcpAdmission::new(self.listener, HTTP_LIMITS, "OIDC discovery");
        loop {
            let accepted = tokio::select! {
                accepted = admission.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let Ok((stream, _, permit)) = accepted else {
                break;
            };
            let (site, acceptor) = (site.clone(), acceptor.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(Ok(tls)) = tokio::time::timeout(
                            HTTP_LIMITS.first_request_timeout,
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            serve_connection(tls, site).await;
                        }
                    }
                    None => serve_connection(stream, site).await,
                }
            });
        }
        if let Some(task) = reload {
            task.abort();
        }
    }
}

async fn serve_connection<S>(stream: S, site: Site)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let site = site.clone();
        async move { Ok::<_, Infallible>(answer(&req, &site)) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(HTTP_CONNECTION_LIFETIME, conn).await;
}

/// The request's host (with port, as sent) and host name without port.
fn request_host(req: &Request<Incoming>) -> Option<(String, String)> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))?;
    let name = host
        .parse::<http::uri::Authority>()
        .ok()
        .map(|a| a.host().to_owned())
        .unwrap_or_else(|| host.clone());
    Some((host, name))
}

fn answer(req: &Request<Incoming>, site: &Site) -> Response<String> {
    if req.method() != Method::GET {
        return respond(StatusCode::METHOD_NOT_ALLOWED, String::new());
    }
    let Some((host, name)) = request_host(req) else {
        return respond(StatusCode::BAD_REQUEST, String::new());
    };
    if !site.domains.is_empty() && !site.domains.iter().any(|d| d.eq_ignore_ascii_case(&name)) {
        return respond(StatusCode::NOT_FOUND, String::new());
    }
    match req.uri().path() {
        "/.well-known/openid-configuration" => {
            let (issuer, keys_base) = urls(site, &host);
            let doc = discovery_document(&issuer, &keys_base);
            respond(StatusCode::OK, doc.to_string())
        }
        "/keys" => {
            let bundle = site.bundles.borrow().clone();
            respond(StatusCode::OK, jwks(&bundle).to_string())
        }
        _ => respond(StatusCode::NOT_FOUND, String::new()),
    }
}

/// The issuer and the base of `jwks_uri` for a request to `host` (as
/// sent, already checked against `domains` when there are any). The Host
/// is used only when `domains` vouch for it, or when no issuer is
/// configured (which the configuration allows only with
/// `insecure_allow_any_host`).
fn urls(site: &Site, host: &str) -> (String, String) {
    let from_host = format!("{}://{host}", site.scheme);
    match &site.issuer {
        Some(issuer) if site.domains.is_empty() => (issuer.clone(), issuer.clone()),
        Some(issuer) => (issuer.clone(), from_host),
        None => (from_host.clone(), from_host),
    }
}

fn respond(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The discovery document for `issuer`, whose keys are at `<base>/keys`.
pub fn discovery_document(issuer: &str, base: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/keys", base.trim_end_matches('/')),
        "authorization_endpoint": "",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": SIGNING_ALGS,
    })
}

/// The JWKS of `bundle`'s JWT authorities, with `kid`, `use: sig`, `alg`.
/// A key the codec cannot express is left out (and logged).
pub fn jwks(bundle: &TrustBundle) -> Value {
    let keys: Vec<Value> = bundle
        .jwt_authorities
        .iter()
        .filter_map(|a| match spki_to_jwk(&a.public_key) {
            Ok(mut jwk) => {
                let alg = jwk_alg(&jwk);
                jwk.insert("kid".into(), json!(a.key_id));
                jwk.insert("use".into(), json!("sig"));
                if let Some(alg) = alg {
                    jwk.insert("alg".into(), json!(alg));
                }
                Some(Value::Object(jwk))
            }
            Err(e) => {
                tracing::warn!(kid = %a.key_id, error = %e, "JWT authority left out of the JWKS");
                None
            }
        })
        .collect();
    json!({ "keys": keys })
}

/// The JWS algorithm the server signs with for a key of this shape.
fn jwk_alg(jwk: &serde_json::Map<String, Value>) -> Option<&'static str> {
    match (
        jwk.get("kty").and_then(Value::as_str),
        jwk.get("crv").and_then(Value::as_str),
    ) {
        (Some("RSA"), _) => Some("RS256"),
        (Some("EC"), Some("P-256")) => Some("ES256"),
        (Some("EC"), Some("P-384")) => Some("ES384"),
        (Some("EC"), Some("P-521")) => Some("ES512"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(issuer: Option<&str>, domains: &[&str]) -> Site {
        let (_, bundles) = watch::channel(TrustBundle::new(
            spinel_spiffe::TrustDomain::new("example.org").unwrap(),
        ));
        Site {
            issuer: issuer.map(str::to_owned),
            domains: Arc::new(domains.iter().map(|d| (*d).to_owned()).collect()),
            scheme: "https",
            bundles,
        }
    }

    #[test]
    fn a_host_no_domain_vouches_for_is_never_published() {
        let issuer = "https://oidc.example.org";
        // No domains: any Host reaches us, so neither URL may come from it.
        let (iss, keys) = urls(&site(Some(issuer), &[]), "evil.example:8443");
        assert_eq!((iss.as_str(), keys.as_str()), (issuer, issuer));
        // Domains checked the Host: keys where the caller found us.
        let (iss, keys) = urls(
            &site(Some(issuer), &["oidc.internal"]),
            "oidc.internal:8443",
        );
        assert_eq!(iss, issuer);
        assert_eq!(keys, "https://oidc.internal:8443");
        let (iss, keys) = urls(&site(None, &["oidc.internal"]), "oidc.internal");
        assert_eq!(
            (iss.as_str(), keys.as_str()),
            ("https://oidc.internal", "https://oidc.internal")
        );
    }

    #[test]
    fn discovery_document_has_the_oidc_fields() {
        let doc = discovery_document("https://oidc.example.org", "https://oidc.example.org/");
        assert_eq!(doc["issuer"], "https://oidc.example.org");
        assert_eq!(doc["jwks_uri"], "https://oidc.example.org/keys");
        assert_eq!(doc["authorization_endpoint"], "");
        assert_eq!(doc["response_types_supported"], json!(["id_token"]));
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["RS256", "ES256", "ES384"])
        );
    }
}
