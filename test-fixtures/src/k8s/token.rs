//! Projected service account tokens and the TokenReview that checks them.
//!
//! The fake API server signs tokens ES256 with its own issuer key, with the
//! claims a real cluster puts in a pod-bound projected token, remembers
//! them, and reviews them the way the service account authenticator does:
//! unknown, expired or revoked tokens and audience mismatches come back as
//! `authenticated: false` with the upstream wording in `status.error`.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus, UserInfo};
use k8s_openapi::api::core::v1::Pod;
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::objects::random_uid;

/// What a projected service account token is issued for; give it to
/// [`FakeApiServer::add_service_account_token`](super::FakeApiServer::add_service_account_token).
#[derive(Debug, Clone)]
pub struct ServiceAccountToken {
    /// Namespace of the pod and its service account.
    pub namespace: String,
    /// Service account name.
    pub service_account: String,
    /// Service account UID (`user.uid` in the review); random by default.
    pub service_account_uid: String,
    /// Name of the pod the token is bound to.
    pub pod_name: String,
    /// UID of the pod the token is bound to.
    pub pod_uid: String,
    /// Node the pod runs on (`kubernetes.io.node` claim and the
    /// `node-name`/`node-uid` extra of recent clusters), when known.
    pub node: Option<(String, String)>,
    /// The token's `aud` claim; `["spire-server"]` by default.
    pub audiences: Vec<String>,
    /// Issue the token already expired (`exp` a minute ago).
    pub expired: bool,
    /// Lifetime in seconds (`expirationSeconds`); 3600 by default.
    pub expiration_seconds: i64,
}

impl ServiceAccountToken {
    /// A token for `namespace/service_account` bound to pod
    /// `pod_name`/`pod_uid`, audience `spire-server`, valid for an hour.
    pub fn new(
        namespace: impl Into<String>,
        service_account: impl Into<String>,
        pod_name: impl Into<String>,
        pod_uid: impl Into<String>,
    ) -> Self {
        ServiceAccountToken {
            namespace: namespace.into(),
            service_account: service_account.into(),
            service_account_uid: random_uid(),
            pod_name: pod_name.into(),
            pod_uid: pod_uid.into(),
            node: None,
            audiences: vec!["spire-server".to_owned()],
            expired: false,
            expiration_seconds: 3600,
        }
    }

    /// A token for `pod`: its namespace, service account, name, UID and
    /// node name (node UID left empty until [`Self::node`] sets it).
    pub fn for_pod(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        let mut token = Self::new(
            pod.metadata.namespace.clone().unwrap_or_default(),
            spec.and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".to_owned()),
            pod.metadata.name.clone().unwrap_or_default(),
            pod.metadata.uid.clone().unwrap_or_default(),
        );
        token.node = spec
            .and_then(|s| s.node_name.clone())
            .map(|name| (name, String::new()));
        token
    }

    /// Sets the `aud` claim.
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Binds the token to node `name` with UID `uid`.
    pub fn node(mut self, name: impl Into<String>, uid: impl Into<String>) -> Self {
        self.node = Some((name.into(), uid.into()));
        self
    }

    /// Makes the token expired from the start.
    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }

    /// The `system:serviceaccount:<ns>:<sa>` user name.
    pub fn username(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// A token the fake issued, as it remembers it.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub spec: ServiceAccountToken,
    pub jti: String,
    pub exp: i64,
    pub revoked: bool,
}

/// The fake's service account token issuer key (ES256).
#[derive(Debug)]
pub(crate) struct TokenIssuer {
    key: EcdsaKeyPair,
    kid: String,
    issuer: String,
}

impl TokenIssuer {
    /// A fresh key for issuer URL `issuer`.
    pub fn new(issuer: &str) -> Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow!("generating the issuer key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow!("loading the issuer key"))?;
        let kid = URL_SAFE_NO_PAD.encode(digest(&SHA256, key.public_key().as_ref()));
        Ok(TokenIssuer {
            key,
            kid,
            issuer: issuer.to_owned(),
        })
    }

    /// Signs a token for `spec` at time `now`; returns it and what to
    /// remember about it.
    pub fn issue(&self, spec: &ServiceAccountToken, now: i64) -> Result<(String, Issued)> {
        let (iat, exp) = if spec.expired {
            (now - spec.expiration_seconds - 60, now - 60)
        } else {
            (now, now + spec.expiration_seconds)
        };
        let jti = random_uid();
        let mut k8s = json!({
            "namespace": spec.namespace,
            "pod": { "name": spec.pod_name, "uid": spec.pod_uid },
            "serviceaccount": { "name": spec.service_account, "uid": spec.service_account_uid },
        });
        if let Some((name, uid)) = &spec.node {
            k8s["node"] = json!({ "name": name, "uid": uid });
        }
        let claims = json!({
            "aud": spec.audiences,
            "exp": exp,
            "iat": iat,
            "iss": self.issuer,
            "jti": jti,
            "kubernetes.io": k8s,
            "nbf": iat,
            "sub": spec.username(),
        });
        let header = json!({ "alg": "ES256", "kid": self.kid });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| anyhow!("signing the token"))
            .context("service account token")?;
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        let issued = Issued {
            spec: spec.clone(),
            jti,
            exp,
            revoked: false,
        };
        Ok((token, issued))
    }

    /// The issuer's public key as a JWKS (what `/openid/v1/jwks` serves).
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
        let coords = point.get(1..).unwrap_or_default();
        let (x, y) = coords.split_at(coords.len() / 2);
        json!({ "keys": [{
            "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

fn rejected(error: String) -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: Some(false),
        error: Some(format!("[invalid bearer token, {error}]")),
        user: Some(UserInfo::default()),
        audiences: None,
    }
}

/// Reviews `token` as the service account authenticator does. `target`
/// is `spec.audiences`, or the API server's own audiences when that is
/// empty; `now` is Unix seconds.
pub(crate) fn review(
    issued: Option<&Issued>,
    token: &str,
    target: &[String],
    now: i64,
) -> TokenReviewStatus {
    let Some(issued) = issued else {
        let why = if token.split('.').count() == 3 {
            "square/go-jose: error in cryptographic primitive"
        } else {
            "square/go-jose: compact JWS format must have three parts"
        };
        return rejected(why.to_owned());
    };
    let spec = &issued.spec;
    let matched: Vec<String> = target
        .iter()
        .filter(|a| spec.audiences.contains(a))
        .cloned()
        .collect();
    if matched.is_empty() {
        return rejected(format!(
            "token audiences {} is invalid for the target audiences {}",
            go_quoted(&spec.audiences),
            go_quoted(target)
        ));
    }
    if issued.exp <= now {
        return rejected("service account token has expired".to_owned());
    }
    if issued.revoked {
        return rejected("service account token has been invalidated".to_owned());
    }
    let mut extra = BTreeMap::from([
        (
            "authentication.kubernetes.io/credential-id".to_owned(),
            vec![format!("JTI={}", issued.jti)],
        ),
        (
            "authentication.kubernetes.io/pod-name".to_owned(),
            vec![spec.pod_name.clone()],
        ),
        (
            "authentication.kubernetes.io/pod-uid".to_owned(),
            vec![spec.pod_uid.clone()],
        ),
    ]);
    if let Some((name, uid)) = &spec.node {
        extra.insert(
            "authentication.kubernetes.io/node-name".to_owned(),
            vec![name.clone()],
        );
        if !uid.is_empty() {
            extra.insert(
                "authentication.kubernetes.io/node-uid".to_owned(),
                vec![uid.clone()],
            );
        }
    }
    TokenReviewStatus {
        authenticated: Some(true),
        error: None,
        audiences: Some(matched),
        user: Some(UserInfo {
            username: Some(spec.username()),
            uid: Some(spec.service_account_uid.clone()),
            groups: Some(vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{}", spec.namespace),
                "system:authenticated".to_owned(),
            ]),
            extra: Some(extra),
        }),
    }
}

/// The response object: the request with `status` filled in, as the API
/// server echoes it.
pub(crate) fn respond(mut request: TokenReview, status: TokenReviewStatus) -> TokenReview {
    request.status = Some(status);
    request
}
