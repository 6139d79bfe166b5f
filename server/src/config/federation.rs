//! The `federation { ... }` and `oidc_discovery { ... }` blocks of
//! `server { ... }`, in SPIRE's shape for federation:
//!
//! ```hcl
//! server {
//!     jwt_issuer = "https://oidc.example.org"
//!     federation {
//!         bundle_endpoint {
//!             address = "0.0.0.0"
//!             port = 8443
//!             refresh_hint = "5m"
//!             profile "https_spiffe" {}
//!             # or: profile "https_web" { serving_cert_file {
//!             #         cert_file_path = "..." key_file_path = "..." } }
//!         }
//!         federates_with "other.org" {
//!             bundle_endpoint_url = "https://other.example:8443"
//!             bundle_endpoint_profile "https_spiffe" {
//!                 endpoint_spiffe_id = "spiffe://other.org/spire/server"
//!             }
//!             # or: bundle_endpoint_profile "https_web" {}
//!         }
//!         # Spinel: extra roots (PEM) trusted for https_web endpoints.
//!         web_pki_roots_file = "/etc/spinel/extra-roots.pem"
//!     }
//!     oidc_discovery {
//!         address = "0.0.0.0"
//!         port = 8443
//!         domains = ["oidc.example.org"]
//!         serving_cert_file { cert_file_path = "..." key_file_path = "..." }
//!         # or: insecure_http = true   (behind a TLS-terminating proxy)
//!     }
//! }
//! ```
//!
//! Every rule (one profile, an `https` URL, a valid trust domain and ID)
//! is checked while decoding, so errors carry `file:line` and the key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use spinel_config::de;
use spinel_spiffe::{id, SpiffeId, TrustDomain};

/// Default bundle endpoint `address`.
pub const DEFAULT_BUNDLE_ENDPOINT_ADDRESS: &str = "0.0.0.0";
/// Default bundle endpoint `port` (SPIRE's).
pub const DEFAULT_BUNDLE_ENDPOINT_PORT: u16 = 8443;
/// Default `refresh_hint` published in the bundle (SPIRE's, 5 minutes).
pub const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(300);

/// The checked `federation` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FederationConfig {
    /// The bundle endpoint this server serves, if any.
    pub bundle_endpoint: Option<BundleEndpointConfig>,
    /// Trust domains whose bundles this server fetches, by trust domain.
    pub federates_with: Vec<FederatesWith>,
    /// Extra PEM roots trusted, besides the Web PKI, for `https_web` endpoints.
    pub web_pki_roots_file: Option<PathBuf>,
}

/// `federation.bundle_endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEndpointConfig {
    /// Listening address.
    pub address: String,
    /// Listening port (0: any free port, logged).
    pub port: u16,
    /// `spiffe_refresh_hint` published with the bundle.
    pub refresh_hint: Duration,
    /// How the endpoint authenticates itself.
    pub profile: EndpointProfile,
}

/// The profile the bundle endpoint serves with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProfile {
    /// An X509-SVID for `spiffe://<td>/spire/server` from this server's CA.
    HttpsSpiffe,
    /// A Web PKI certificate from files.
    HttpsWeb(ServingCertFile),
}

/// `serving_cert_file { cert_file_path, key_file_path }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingCertFile {
    /// PEM certificate chain, leaf first.
    pub cert_file_path: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key_file_path: PathBuf,
    /// How often the files are re-read (SPIRE's key; default 1m).
    #[serde(default, deserialize_with = "de::option_go_duration")]
    pub file_sync_interval: Option<Duration>,
}

/// One `federates_with "<td>"` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatesWith {
    /// The foreign trust domain.
    pub trust_domain: TrustDomain,
    /// Its bundle endpoint URL (`https://...`).
    pub bundle_endpoint_url: String,
    /// How its endpoint is authenticated.
    pub profile: RemoteProfile,
}

/// How a foreign bundle endpoint is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteProfile {
    /// Web PKI: the certificate chains to a public root (or an extra root)
    /// and names the URL's host.
    HttpsWeb,
    /// The endpoint presents an X509-SVID for `endpoint_spiffe_id` that
    /// chains to the last known bundle of the trust domain.
    HttpsSpiffe {
        /// The SPIFFE ID the endpoint must present.
        endpoint_spiffe_id: SpiffeId,
    },
}

/// The checked `oidc_discovery` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcDiscoveryConfig {
    /// Listening address.
    pub address: String,
    /// Listening port (0: any free port, logged).
    pub port: u16,
    /// Host names served (the `Host` header must be one); empty: any, which
    /// needs `server.jwt_issuer` or [`Self::insecure_allow_any_host`].
    pub domains: Vec<String>,
    /// `insecure_allow_any_host = true`: with no `domains` and no
    /// `jwt_issuer`, serve any `Host` and publish it as the issuer.
    pub insecure_allow_any_host: bool,
    /// TLS from files, or `None` for plain HTTP (`insecure_http = true`).
    pub serving_cert_file: Option<ServingCertFile>,
}

/// `federation { ... }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSection {
    /// The bundle endpoint served by this server.
    #[serde(default)]
    pub bundle_endpoint: Option<BundleEndpointSection>,
    /// Foreign trust domains, by name.
    #[serde(default)]
    pub federates_with: BTreeMap<TrustDomainLabel, FederatesWithSection>,
    /// Spinel: extra PEM roots for `https_web` endpoints.
    #[serde(default)]
    pub web_pki_roots_file: Option<PathBuf>,
}

/// A trust domain name used as a block label, checked as it is decoded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TrustDomainLabel(pub TrustDomain);

impl<'de> Deserialize<'de> for TrustDomainLabel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        id::parse_trust_domain(&text)
            .map(TrustDomainLabel)
            .map_err(serde::de::Error::custom)
    }
}

/// `bundle_endpoint { ... }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEndpointSection {
    /// Listening address (default `0.0.0.0`).
    #[serde(default)]
    pub address: Option<String>,
    /// Listening port (default 8443).
    #[serde(default, deserialize_with = "de::option_number_or_string")]
    pub port: Option<u16>,
    /// Published refresh hint (default 5m).
    #[serde(default, deserialize_with = "de::option_go_duration")]
    pub refresh_hint: Option<Duration>,
    /// `profile "https_spiffe" {}` or `profile "https_web" {...}` (default https_spiffe).
    #[serde(default)]
    pub profile: Option<EndpointProfileSection>,
    /// SPIRE's older spelling of ACME; refused.
    #[serde(default)]
    pub acme: Option<IgnoredAny>,
}

/// The labeled `profile` blocks; exactly one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, try_from = "ProfileLabels")]
pub struct EndpointProfileSection(pub EndpointProfile);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileLabels {
    #[serde(default)]
    https_spiffe: Option<Empty>,
    #[serde(default)]
    https_web: Option<HttpsWebSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpsWebSection {
    #[serde(default)]
    serving_cert_file: Option<ServingCertFile>,
    #[serde(default)]
    acme: Option<IgnoredAny>,
}

impl TryFrom<ProfileLabels> for EndpointProfileSection {
    type Error = String;

    fn try_from(p: ProfileLabels) -> Result<Self, String> {
        match (p.https_spiffe, p.https_web) {
            (Some(_), None) => Ok(EndpointProfileSection(EndpointProfile::HttpsSpiffe)),
            (None, Some(web)) => {
                if web.acme.is_some() {
                    return Err("acme is not supported; use serving_cert_file".into());
                }
                web.serving_cert_file
                    .map(|f| EndpointProfileSection(EndpointProfile::HttpsWeb(f)))
                    .ok_or_else(|| "https_web needs a serving_cert_file block".into())
            }
            (None, None) => Err("a profile is required: https_spiffe or https_web".into()),
            (Some(_), Some(_)) => Err("only one profile may be given".into()),
        }
    }
}

/// One `federates_with "<td>" { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatesWithSection {
    /// `https://host[:port][/path]`.
    #[serde(deserialize_with = "https_url")]
    pub bundle_endpoint_url: String,
    /// `bundle_endpoint_profile "https_web" {}` or `"https_spiffe" { endpoint_spiffe_id }`.
    pub bundle_endpoint_profile: RemoteProfileSection,
}

/// The labeled `bundle_endpoint_profile` blocks; exactly one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RemoteProfileLabels")]
pub struct RemoteProfileSection(pub RemoteProfile);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteProfileLabels {
    #[serde(default)]
    https_web: Option<Empty>,
    #[serde(default)]
    https_spiffe: Option<HttpsSpiffeSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpsSpiffeSection {
    #[serde(deserialize_with = "spiffe_id")]
    endpoint_spiffe_id: SpiffeId,
}

impl TryFrom<RemoteProfileLabels> for RemoteProfileSection {
    type Error = String;

    fn try_from(p: RemoteProfileLabels) -> Result<Self, String> {
        match (p.https_web, p.https_spiffe) {
            (Some(_), None) => Ok(RemoteProfileSection(RemoteProfile::HttpsWeb)),
            (None, Some(s)) => Ok(RemoteProfileSection(RemoteProfile::HttpsSpiffe {
                endpoint_spiffe_id: s.endpoint_spiffe_id,
            })),
            (None, None) => Err("a profile is required: https_web or https_spiffe".into()),
            (Some(_), Some(_)) => Err("only one profile may be given".into()),
        }
    }
}

/// `oidc_discovery { ... }`, checked as it is decoded.
#[derive(Debug, Deserialize)]
#[serde(try_from = "OidcDiscoveryRaw")]
pub struct OidcDiscoverySection(pub OidcDiscoveryConfig);

/// `oidc_discovery { ... }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcDiscoveryRaw {
    /// Listening address (default `0.0.0.0`).
    #[serde(default)]
    pub address: Option<String>,
    /// Listening port (required; 0 picks a free port).
    #[serde(deserialize_with = "de::number_or_string")]
    pub port: u16,
    /// Accepted `Host` names; empty accepts any.
    #[serde(default)]
    pub domains: Vec<String>,
    /// TLS certificate and key files.
    #[serde(default)]
    pub serving_cert_file: Option<ServingCertFile>,
    /// Serve plain HTTP (for a TLS-terminating proxy in front, or tests).
    #[serde(default, deserialize_with = "de::bool_or_string")]
    pub insecure_http: bool,
    /// Without `domains` and `jwt_issuer`: take the issuer from the `Host`
    /// header anyway (development only).
    #[serde(default, deserialize_with = "de::bool_or_string")]
    pub insecure_allow_any_host: bool,
}

fn https_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    check_https_url(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

/// Checks that `text` is an absolute `https://` URL with a host.
pub fn check_https_url(text: &str) -> Result<(), String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{text:?} must be an https:// URL"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(())
}

fn spiffe_id<'de, D: Deserializer<'de>>(d: D) -> Result<SpiffeId, D::Error> {
    let text = String::deserialize(d)?;
    id::parse_id(&text).map_err(serde::de::Error::custom)
}

/// Resolves the written `federation` block.
pub fn resolve_federation(
    section: FederationSection,
    own: &TrustDomain,
) -> Result<FederationConfig, String> {
    if section
        .bundle_endpoint
        .as_ref()
        .is_some_and(|b| b.acme.is_some())
    {
        return Err("federation.bundle_endpoint.acme is not supported; use profile \"https_web\" { serving_cert_file { ... } }".into());
    }
    let bundle_endpoint = section.bundle_endpoint.map(|b| BundleEndpointConfig {
        address: b
            .address
            .unwrap_or_else(|| DEFAULT_BUNDLE_ENDPOINT_ADDRESS.to_owned()),
        port: b.port.unwrap_or(DEFAULT_BUNDLE_ENDPOINT_PORT),
        refresh_hint: b.refresh_hint.unwrap_or(DEFAULT_REFRESH_HINT),
        profile: b
            .profile
            .map(|p| p.0)
            .unwrap_or(EndpointProfile::HttpsSpiffe),
    });
    let mut federates_with = Vec::new();
    for (TrustDomainLabel(trust_domain), f) in section.federates_with {
        if &trust_domain == own {
            return Err(format!(
                "federates_with \"{trust_domain}\": the server's own trust domain cannot be federated with"
            ));
        }
        federates_with.push(FederatesWith {
            trust_domain,
            bundle_endpoint_url: f.bundle_endpoint_url,
            profile: f.bundle_endpoint_profile.0,
        });
    }
    Ok(FederationConfig {
        bundle_endpoint,
        federates_with,
        web_pki_roots_file: section.web_pki_roots_file,
    })
}

impl TryFrom<OidcDiscoveryRaw> for OidcDiscoverySection {
    type Error = String;

    fn try_from(raw: OidcDiscoveryRaw) -> Result<Self, String> {
        match (&raw.serving_cert_file, raw.insecure_http) {
            (Some(_), true) => {
                return Err("serving_cert_file and insecure_http = true exclude each other".into())
            }
            (None, false) => {
                return Err("set serving_cert_file { ... } or insecure_http = true".into())
            }
            _ => {}
        }
        Ok(OidcDiscoverySection(OidcDiscoveryConfig {
            address: raw
                .address
                .unwrap_or_else(|| DEFAULT_BUNDLE_ENDPOINT_ADDRESS.to_owned()),
            port: raw.port,
            domains: raw.domains,
            insecure_allow_any_host: raw.insecure_allow_any_host,
            serving_cert_file: raw.serving_cert_file,
        }))
    }
}
