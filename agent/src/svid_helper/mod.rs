//! `spinel-agent svid-helper`: SVIDs as files, for applications that do
//! not speak the Workload API (nginx, PostgreSQL, Envoy, Java apps).
//!
//! It reads a spiffe-helper `helper.conf` ([`HelperConfig`]), so an
//! existing spiffe-helper deployment switches by changing the command. It
//! holds a `FetchX509SVID` stream open on the agent and, on every change
//! of its SVID or bundle, writes into `cert_dir`, each file atomically:
//! the chain (`svid_file_name`, default `svid.pem`), the PKCS#8 key
//! (`svid_key_file_name`, `svid_key.pem`, mode 0600), the CA bundle
//! (`svid_bundle_file_name`, `bundle.pem`), the JWT-SVIDs of `jwt_svids`
//! and the JWT bundle; then it tells the application (`reload`). JWT-SVID
//! files are refreshed at half their lifetime. If the agent goes away the
//! helper keeps the files it wrote and reconnects with capped backoff.
//!
//! `cert_dir` must be a directory no other user can change
//! ([`spinel_spiffe::trusted_dir`]); the agent socket must belong to the
//! invoking user or root (as for the `api` commands: both dial it through
//! [`crate::workload_client`]).
//!
//! With `daemon_mode = false` (or `-daemonMode=false`) it writes once and
//! exits, like `spinel-agent api fetch x509 -write`, for init containers.

mod config;
mod files;
mod reload;

use std::time::Duration;

use anyhow::{bail, Context as _};
use spinel_proto::workload::{
    JwtBundlesRequest, JwtsvidRequest, X509svidRequest, X509svidResponse,
};
use spinel_spiffe::Clock;
use tokio::time::Instant;

pub use config::{ConfigError, HelperConfig, JwtSvidFile};
pub use files::x509_contents;

use crate::workload_client::{self as client, Client};

/// How long one Workload API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnection backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often a JWT-SVID is refreshed when its lifetime cannot be read.
const JWT_FALLBACK_REFRESH: Duration = Duration::from_secs(60);

/// Runs the helper until SIGINT/SIGTERM (daemon mode) or after one write.
pub async fn run(config: HelperConfig) -> anyhow::Result<()> {
    if !config.cert_dir.is_dir() {
        bail!(
            "cert_dir {} does not exist or is not a directory",
            config.cert_dir.display()
        );
    }
    // Every write would refuse it; say so before connecting.
    spinel_spiffe::keyfile::check_dir(&config.cert_dir).context("cert_dir")?;
    if !config.daemon_mode {
        let mut client = client::connect(&config.agent_address, CALL_TIMEOUT).await?;
        let response = first_x509(&mut client).await?;
        write_all(&config, &mut client, &response).await?;
        return Ok(());
    }
    let mut helper = Helper {
        config,
        reload: reload::Reloader::default(),
        last_x509: None,
        last_id: None,
        jwt_refresh_at: None,
        updates: 0,
    };
    let result = tokio::select! {
        r = helper.serve() => r,
        () = shutdown_signal() => Ok(()),
    };
    helper.reload.stop().await;
    result
}

async fn first_x509(client: &mut Client) -> anyhow::Result<X509svidResponse> {
    let mut stream = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .map_err(|s| client::status_error("fetching X509-SVIDs", &s))?
        .into_inner();
    stream
        .message()
        .await
        .map_err(|s| client::status_error("fetching X509-SVIDs", &s))?
        .context("the Workload API closed the stream without an answer")
}

/// Writes every file for `response` (X.509, then JWT); returns the unix
/// second by which the JWT-SVIDs should be fetched again.
async fn write_all(
    config: &HelperConfig,
    client: &mut Client,
    response: &X509svidResponse,
) -> anyhow::Result<Option<i64>> {
    let svid = files::choose(config, response)?;
    files::write_x509(config, svid, response)?;
    tracing::info!(spiffe_id = %svid.spiffe_id, dir = %config.cert_dir.display(), "wrote X509-SVID files");
    write_jwts(config, client, &svid.spiffe_id).await
}

async fn write_jwts(
    config: &HelperConfig,
    client: &mut Client,
    spiffe_id: &str,
) -> anyhow::Result<Option<i64>> {
    let mut refresh_at: Option<i64> = None;
    for jwt in &config.jwt_svids {
        let mut audience = vec![jwt.jwt_audience.clone()];
        audience.extend(jwt.jwt_extra_audiences.iter().cloned());
        let response = client
            .fetch_jwtsvid(JwtsvidRequest {
                audience,
                spiffe_id: spiffe_id.to_owned(),
            })
            .await
            .map_err(|s| client::status_error("fetching a JWT-SVID", &s))?
            .into_inner();
        let token = response
            .svids
            .first()
            .context("the Workload API returned no JWT-SVID")?;
        files::write_jwt(config, &jwt.jwt_svid_file_name, &token.svid)?;
        let half_life = half_life_of(&token.svid);
        refresh_at = Some(refresh_at.map_or(half_life, |r| r.min(half_life)));
    }
    if let Some(name) = &config.jwt_bundle_file_name {
        let td = spinel_spiffe::SpiffeId::new(spiffe_id)
            .map(|id| id.trust_domain().id_string())
            .map_err(|e| anyhow::anyhow!("the SVID's SPIFFE ID {spiffe_id:?}: {e}"))?;
        let mut stream = client
            .fetch_jwt_bundles(JwtBundlesRequest {})
            .await
            .map_err(|s| client::status_error("fetching JWT bundles", &s))?
            .into_inner();
        let bundles = stream
            .message()
            .await
            .map_err(|s| client::status_error("fetching JWT bundles", &s))?
            .context("the Workload API closed the JWT bundle stream")?;
        let jwks = bundles
            .bundles
            .get(&td)
            .with_context(|| format!("the agent sent no JWT bundle for {td}"))?;
        files::write_jwt_bundle(config, name, jwks)?;
    }
    Ok(refresh_at)
}

/// The unix second at which half of `token`'s lifetime has passed (from
/// its `iat`/`exp` claims, read without verification: it came from the
/// agent over the local socket).
fn half_life_of(token: &str) -> i64 {
    let now = Clock::system().unix_seconds();
    let fallback = now + JWT_FALLBACK_REFRESH.as_secs() as i64;
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let Some(claims) = claims else {
        return fallback;
    };
    match (claims["iat"].as_i64(), claims["exp"].as_i64()) {
        (Some(iat), Some(exp)) if exp > iat => iat + (exp - iat) / 2,
        (None, Some(exp)) if exp > now => now + (exp - now) / 2,
        _ => fallback,
    }
}

/// The daemon's state.
struct Helper {
    config: HelperConfig,
    reload: reload::Reloader,
    /// The SVID bytes last written, to skip updates that change nothing
    /// for this helper (the agent resends on any change of the caller's
    /// state).
    last_x509: Option<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    /// The SPIFFE ID of the SVID last written.
    last_id: Option<String>,
    /// When the JWT-SVIDs must be fetched again (unix seconds).
    jwt_refresh_at: Option<i64>,
    /// Updates written so far.
    updates: u64,
}

impl Helper {
    /// Keeps the files fresh, reconnecting whenever the agent goes away.
    async fn serve(&mut self) -> anyhow::Result<()> {
        let mut backoff = BACKOFF_MIN;
        loop {
            let before = self.updates;
            match self.session().await {
                Ok(()) => tracing::warn!("the Workload API stream ended; reconnecting"),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "Workload API session failed")
                }
            }
            if self.updates > before {
                // That session got somewhere: count failures anew.
                backoff = BACKOFF_MIN;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection: every X.509 update, and the JWT refreshes between.
    async fn session(&mut self) -> anyhow::Result<()> {
        let mut client = client::connect(&self.config.agent_address, CALL_TIMEOUT).await?;
        let mut stream = client
            .fetch_x509svid(X509svidRequest {})
            .await
            .map_err(|s| client::status_error("fetching X509-SVIDs", &s))?
            .into_inner();
        loop {
            let jwt_due = self.jwt_refresh_at.map(|at| {
                let wait = (at - Clock::system().unix_seconds()).max(0) as u64;
                Instant::now() + Duration::from_secs(wait)
            });
            tokio::select! {
                message = stream.message() => {
                    let response = message
                        .map_err(|s| client::status_error("X509-SVID stream", &s))?;
                    let Some(response) = response else { return Ok(()) };
                    self.on_x509(&mut client, &response).await?;
                }
                () = sleep_until_opt(jwt_due) => {
                    if let Some(id) = self.last_id.clone() {
                        self.jwt_refresh_at = write_jwts(&self.config, &mut client, &id).await?;
                        tracing::info!(spiffe_id = %id, "refreshed JWT-SVID files");
                    }
                }
            }
        }
    }

    async fn on_x509(
        &mut self,
        client: &mut Client,
        response: &X509svidResponse,
    ) -> anyhow::Result<()> {
        let svid = files::choose(&self.config, response)?;
        let mut federated: Vec<_> = response.federated_bundles.iter().collect();
        federated.sort();
        let federated: Vec<u8> = federated
            .into_iter()
            .flat_map(|(k, v)| k.bytes().chain(v.iter().copied()))
            .collect();
        let written = (svid.x509_svid.clone(), svid.bundle.clone(), federated);
        if self.last_x509.as_ref() == Some(&written) {
            return Ok(());
        }
        self.jwt_refresh_at = write_all(&self.config, client, response).await?;
        self.last_x509 = Some(written);
        self.last_id = Some(svid.spiffe_id.clone());
        self.updates += 1;
        if let Err(e) = self.reload.after_update(&self.config).await {
            // The files are fresh; the application will pick them up on
            // the next reload that works.
            tracing::warn!(error = %format!("{e:#}"), "could not tell the application to reload");
        }
        Ok(())
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
