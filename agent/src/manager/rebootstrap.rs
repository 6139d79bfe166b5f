//! A server the agent's bundle no longer trusts: `rebootstrap_mode` and
//! `rebootstrap_delay` (SPIRE's keys).
//!
//! The bundle in `data_dir` is the last one the server sent. If the
//! server's CA changed while the agent was away (it was reinstalled, or an
//! outage outlasted every CA the agent knew), the server's certificate no
//! longer chains to it: every handshake fails, which looks like an outage
//! but never ends. The TLS verifier reports such handshakes to a
//! [`TrustWatch`]; then:
//!
//! - `never` (the default): the agent keeps serving what is still valid and
//!   logs what the operator must do (refresh `trust_bundle_path` and delete
//!   `bundle.der`, or opt in);
//! - `auto` / `always`: once the server has been untrusted for
//!   `rebootstrap_delay` without one trusted handshake in between (a man in
//!   the middle must hold on that long, and a passing one changes nothing),
//!   the agent reads `trust_bundle_path` again and attests with it, as on
//!   its first start. That file must hold the server's current CA: the
//!   operator (or the Kubernetes ConfigMap publishing it) refreshes it.
//!
//! At start without a usable agent SVID ([`at_start`]) the same wait
//! happens before the first attestation; while running ([`untrusted`]) it
//! happens between sync attempts while cached SVIDs keep being served.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use spinel_spiffe::tls::TrustWatch;
use spinel_spiffe::Clock;

use super::bootstrap::{attest, bootstrap_roots};
use super::recovery::Next;
use super::{backoff, AgentSvid, Manager, ManagerError, Store};
use crate::config::AgentConfig;

/// What the operator reads when the server is not trusted.
fn advice(config: &AgentConfig, store: &Store) -> String {
    let bundle = config.trust_bundle_path.as_ref().map_or_else(
        || "agent.trust_bundle_path".into(),
        |p| p.display().to_string(),
    );
    format!(
        "the server's certificate does not chain to the agent's trust bundle {} (the server's CA changed while the \
         agent was away, or something else answers at the server's address). To recover: put the server's current \
         bundle (`spinel-server bundle show -format pem`) in {bundle}, then either delete {} and {} and restart the \
         agent (a join_token agent with a new join token), or set agent.rebootstrap_mode = \"auto\" to bootstrap \
         again from it by itself after agent.rebootstrap_delay (now {:?})",
        store.bundle_path().display(),
        store.bundle_path().display(),
        store.svid_path().display(),
        config.rebootstrap_delay,
    )
}

/// How long the server has been untrusted, if it is.
fn untrusted_for(trust: &TrustWatch, clock: &Clock) -> Option<Duration> {
    let since = trust.untrusted_since()?;
    let now = u64::try_from(clock.unix_seconds()).unwrap_or_default();
    Some(Duration::from_secs(now.saturating_sub(since)))
}

/// Attests from `trust_bundle_path`, as on a first start. Returns the SVID,
/// whether it is reattestable, and the bootstrap roots (already saved as
/// the agent's bundle).
async fn attest_from_bootstrap(
    config: &AgentConfig,
    store: &Store,
    trust: &Arc<TrustWatch>,
) -> Result<(AgentSvid, bool, Vec<Vec<u8>>), ManagerError> {
    let roots = bootstrap_roots(config)?;
    trust.reset();
    match attest(config, &roots, store, trust).await {
        Ok((svid, reattestable)) => {
            store.save_bundle(&roots)?;
            tracing::warn!(
                trust_bundle_path = ?config.trust_bundle_path,
                node_attestor = config.node_attestor.name(),
                "rebootstrapped: attested again from the bootstrap bundle, which replaces the stored one"
            );
            Ok((svid, reattestable, roots))
        }
        Err(_) if trust.untrusted_since().is_some() => Err(ManagerError::Untrusted(format!(
            "cannot rebootstrap: the server's certificate does not chain to {} either; put the server's current \
             bundle there (`spinel-server bundle show -format pem`)",
            config
                .trust_bundle_path
                .as_ref()
                .map_or_else(|| "trust_bundle_path".into(), |p| p.display().to_string())
        ))),
        Err(e) => Err(e),
    }
}

/// First attestation at start failed with `error`. If that was because the
/// server is not trusted and rebootstrap is opted in, keeps trying with the
/// stored bundle for `rebootstrap_delay`, then bootstraps again.
pub(super) async fn at_start(
    config: &AgentConfig,
    store: &Store,
    trust: &Arc<TrustWatch>,
    clock: &Clock,
    roots: &[Vec<u8>],
    error: ManagerError,
) -> Result<(AgentSvid, bool, Vec<Vec<u8>>), ManagerError> {
    if untrusted_for(trust, clock).is_none() {
        return Err(error);
    }
    if !config.rebootstrap_mode.allows() {
        return Err(ManagerError::Untrusted(advice(config, store)));
    }
    let mut attempt = 0u32;
    loop {
        let waited = untrusted_for(trust, clock).unwrap_or_default();
        let Some(left) = config.rebootstrap_delay.checked_sub(waited) else {
            break;
        };
        if left.is_zero() {
            break;
        }
        tracing::warn!(
            rebootstrap_in = ?left,
            "the server's certificate does not chain to the stored trust bundle; retrying, and rebootstrapping from trust_bundle_path once rebootstrap_delay has passed"
        );
        tokio::time::sleep(backoff(attempt, rand::random::<f64>() * 0.2).min(left)).await;
        attempt = attempt.saturating_add(1);
        match attest(config, roots, store, trust).await {
            Ok((svid, reattestable)) => return Ok((svid, reattestable, roots.to_vec())),
            Err(e) if trust.untrusted_since().is_none() => return Err(e),
            Err(_) => {}
        }
    }
    attest_from_bootstrap(config, store, trust).await
}

/// A sync failed while the server is untrusted: wait out the delay, then
/// rebootstrap (when opted in).
pub(super) async fn untrusted(m: &Arc<Manager>) -> Next {
    let config = &m.config;
    let Some(waited) = untrusted_for(&m.trust, m.clock()) else {
        return Next::Retry;
    };
    if !config.rebootstrap_mode.allows() {
        tracing::error!(untrusted_for = ?waited, "{}", advice(config, &m.store));
        return Next::Retry;
    }
    if let Some(left) = config.rebootstrap_delay.checked_sub(waited) {
        if !left.is_zero() {
            tracing::warn!(
                untrusted_for = ?waited,
                rebootstrap_in = ?left,
                "the server's certificate does not chain to the agent's trust bundle; rebootstrapping from trust_bundle_path unless it is trusted again"
            );
            return Next::Retry;
        }
    }
    match m.rebootstrap().await {
        Ok(()) => Next::Resync,
        Err(e) => {
            tracing::error!(error = %e, "rebootstrap failed; will retry");
            Next::Retry
        }
    }
}

impl Manager {
    /// Attests again from `trust_bundle_path` and installs the new bundle
    /// and SVID; JWT-SVIDs from the old server keys are dropped.
    async fn rebootstrap(&self) -> Result<(), ManagerError> {
        let (svid, reattestable, roots) =
            attest_from_bootstrap(&self.config, &self.store, &self.trust).await?;
        if let Ok(mut r) = self.roots.write() {
            *r = roots;
        }
        self.reattestable.store(reattestable, Ordering::Relaxed);
        if let Ok(mut jwts) = self.jwt_cache.lock() {
            jwts.clear();
        }
        self.set_agent_svid(svid)
    }
}
