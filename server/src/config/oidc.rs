//! The check `oidc_discovery` needs beyond its own block: where its
//! issuer comes from. Discovery must never publish a `Host` header that no
//! configured domain vouched for, so `domains` or `server.jwt_issuer` is
//! required unless `insecure_allow_any_host = true`; the error names the
//! key and the line of `oidc_discovery` (or of `jwt_issuer`).

use spinel_config::hcl::{ConfigError, ConfigFile};

use super::{ConfigLoadError, OidcDiscoveryConfig};

/// OIDC discovery must not take its issuer from the request: with no
/// `domains` to check the `Host` header against, `jwt_issuer` must be set
/// (and is then also the base of `jwks_uri`), unless the operator opted in
/// with `insecure_allow_any_host = true`. A set `jwt_issuer` must be an
/// absolute http(s) URL, since discovery publishes it.
pub(super) fn check_issuer(
    file: &ConfigFile,
    oidc: &OidcDiscoveryConfig,
    jwt_issuer: Option<&str>,
) -> Result<(), ConfigLoadError> {
    let at = |path: &[&str], key_path: &str, message: String| {
        let display = file.path().display().to_string();
        match file.line_of(path) {
            Some(line) => ConfigLoadError::File(ConfigError::Structure {
                path: file.path().to_owned(),
                line,
                key_path: key_path.to_owned(),
                message,
            }),
            None => ConfigLoadError::Invalid {
                path: display,
                key: "server.oidc_discovery",
                message: format!("`{key_path}`: {message}"),
            },
        }
    };
    match jwt_issuer.filter(|i| !i.is_empty()) {
        Some(issuer) => {
            let uri: Option<http::Uri> = issuer.parse().ok();
            let absolute = uri.as_ref().is_some_and(|u| {
                matches!(u.scheme_str(), Some("https" | "http"))
                    && u.host().is_some_and(|h| !h.is_empty())
            });
            if !absolute {
                return Err(at(
                    &["server", "jwt_issuer"],
                    "server.jwt_issuer",
                    format!(
                        "{issuer:?} is not an absolute https:// (or http://) URL with a host; \
                         OIDC discovery publishes it as the issuer"
                    ),
                ));
            }
        }
        None if oidc.domains.is_empty() && !oidc.insecure_allow_any_host => {
            return Err(at(
                &["server", "oidc_discovery"],
                "server.oidc_discovery.domains",
                "set domains (the host names served) or server.jwt_issuer: without either, \
                 the discovery document would take its issuer and jwks_uri from the request's \
                 Host header; to serve any Host that way anyway (development only), set \
                 insecure_allow_any_host = true"
                    .to_owned(),
            ));
        }
        None => {}
    }
    Ok(())
}
