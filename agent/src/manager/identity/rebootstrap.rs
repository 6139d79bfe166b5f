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

use super::attest::{attest, bootstrap_roots};
use crate::client::ServerPool;
use crate::config::AgentConfig;
use crate::manager::error::{ManagerError, Next};
use crate::manager::persist::store::Store;
use crate::manager::state::{AgentSvid, Manager};
use crate::manager::timing::backoff;

/// `trust_bundle_path` as the logs name it.
fn bootstrap_file(config: &AgentConfig) -> String {
    config.trust_bundle_path.as_ref().map_or_else(
        || "agent.trust_bundle_path".into(),
        |p| p.display().to_string(),
    )
}

/// What the operator reads when the server is not trusted.
fn advice(config: &AgentConfig, store: &Store) -> String {
    let bundle = bootstrap_file(config);
    let stored = store.bundle_path().display();
    format!(
        "the server's certificate does not chain to the agent's trust bundle {stored} (the server's CA changed while the \
         agent was away, or something else answers at the server's address). To recover: put the server's current \
         bundle (`spinel-server bundle show -format pem`) in {bundle}, then either delete {stored} and restart the agent \
         (a join_token agent with a new join token), or set agent.rebootstrap_mode = \"auto\" to bootstrap \
         again from it by itself after agent.rebootstrap_delay (now {:?})",
        config.rebootstrap_delay,
    )
}

/// What to do about a server untrusted for `waited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Rebootstrap is not opted in: say what the operator must do.
    Advise,
    /// Keep trying with the stored bundle for this long.
    Wait(Duration),
    /// The delay has passed: bootstrap again.
    Rebootstrap,
}

fn step(config: &AgentConfig, waited: Duration) -> Step {
    if !config.rebootstrap_mode.allows() {
        return Step::Advise;
    }
    match config.rebootstrap_delay.checked_sub(waited) {
        Some(left) if !left.is_zero() => Step::Wait(left),
        _ => Step::Rebootstrap,
    }
}

/// Attests from `trust_bundle_path`, as on a first start. Returns the SVID,
/// whether it is reattestable, and the bootstrap roots (already saved as
/// the agent's bundle).
async fn attest_from_bootstrap(
    config: &AgentConfig,
    pool: &Arc<ServerPool>,
    store: &Store,
    trust: &Arc<TrustWatch>,
) -> Result<(AgentSvid, bool, Vec<Vec<u8>>), ManagerError> {
    let roots = bootstrap_roots(config)?;
    trust.reset();
    match attest(config, pool, &roots, store, trust).await {
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
            bootstrap_file(config)
        ))),
        Err(e) => Err(e),
    }
}

/// First attestation at start failed with `error`. If that was because the
/// server is not trusted and rebootstrap is opted in, keeps trying with the
/// stored bundle for `rebootstrap_delay`, then bootstraps again.
pub(crate) async fn at_start(
    config: &AgentConfig,
    pool: &Arc<ServerPool>,
    store: &Store,
    trust: &Arc<TrustWatch>,
    roots: &[Vec<u8>],
    error: ManagerError,
) -> Result<(AgentSvid, bool, Vec<Vec<u8>>), ManagerError> {
    let mut attempt = 0u32;
    loop {
        let Some(waited) = trust.untrusted_for() else {
            return Err(error);
        };
        match step(config, waited) {
            Step::Advise => return Err(ManagerError::Untrusted(advice(config, store))),
            Step::Rebootstrap => return attest_from_bootstrap(config, pool, store, trust).await,
            Step::Wait(left) => {
                tracing::warn!(
                    rebootstrap_in = ?left,
                    "the server's certificate does not chain to the stored trust bundle; retrying, and rebootstrapping from trust_bundle_path once rebootstrap_delay has passed"
                );
                tokio::time::sleep(backoff(attempt, rand::random::<f64>() * 0.2).min(left)).await;
                attempt = attempt.saturating_add(1);
                match attest(config, pool, roots, store, trust).await {
                    Ok((svid, reattestable)) => return Ok((svid, reattestable, roots.to_vec())),
                    Err(e) if trust.untrusted_since().is_none() => return Err(e),
                    Err(_) => {}
                }
            }
        }
    }
}

/// A sync failed while the server is untrusted: wait out the delay, then
/// rebootstrap (when opted in).
pub(crate) async fn untrusted(m: &Arc<Manager>) -> Next {
    let config = &m.config;
    let Some(waited) = m.trust.untrusted_for() else {
        return Next::Retry;
    };
    match step(config, waited) {
        Step::Advise => {
            tracing::error!(untrusted_for = ?waited, "{}", advice(config, &m.store));
            Next::Retry
        }
        Step::Wait(left) => {
            tracing::warn!(
                untrusted_for = ?waited,
                rebootstrap_in = ?left,
                "the server's certificate does not chain to the agent's trust bundle; rebootstrapping from trust_bundle_path unless it is trusted again"
            );
            Next::Retry
        }
        Step::Rebootstrap => match m.rebootstrap().await {
            Ok(()) => Next::Resync,
            Err(e) => {
                tracing::error!(error = %e, "rebootstrap failed; will retry");
                Next::Retry
            }
        },
    }
}

impl Manager {
    /// Attests again from `trust_bundle_path` and installs the new bundle
    /// and SVID; JWT-SVIDs from the old server keys are dropped.
    async fn rebootstrap(&self) -> Result<(), ManagerError> {
        let (svid, reattestable, roots) =
            attest_from_bootstrap(&self.config, &self.pool, &self.store, &self.trust).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RebootstrapMode;

    fn config(mode: RebootstrapMode, delay: u64) -> AgentConfig {
        let file = spinel_config::ConfigFile::parse(
            std::path::Path::new("agent.conf"),
            "agent {\n trust_domain = \"example.org\"\n server_address = \"127.0.0.1\"\n data_dir = \"/tmp/x\"\n trust_bundle_path = \"/tmp/b.pem\"\n}\nplugins {\n KeyManager \"memory\" {\n plugin_data {}\n }\n NodeAttestor \"join_token\" {\n plugin_data {}\n }\n}\n",
        )
        .unwrap();
        let mut c = AgentConfig::from_file(&file, &Default::default()).unwrap();
        c.rebootstrap_mode = mode;
        c.rebootstrap_delay = Duration::from_secs(delay);
        c
    }

    #[tokio::test(start_paused = true)]
    async fn the_delay_counts_from_the_first_untrusted_handshake() {
        let clock = spinel_spiffe::Clock::system();
        let trust = TrustWatch::new(clock);
        let auto = config(RebootstrapMode::Auto, 600);
        assert_eq!(trust.untrusted_for(), None);
        trust.saw_untrusted();
        let waited = trust.untrusted_for().unwrap();
        assert_eq!(step(&auto, waited), Step::Wait(Duration::from_secs(600)));
        tokio::time::advance(Duration::from_secs(599)).await;
        trust.saw_untrusted();
        let waited = trust.untrusted_for().unwrap();
        assert_eq!(step(&auto, waited), Step::Wait(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            step(&auto, trust.untrusted_for().unwrap()),
            Step::Rebootstrap
        );
        // One trusted handshake in between starts the count again.
        trust.reset();
        tokio::time::advance(Duration::from_secs(900)).await;
        trust.saw_untrusted();
        assert_eq!(
            step(&auto, trust.untrusted_for().unwrap()),
            Step::Wait(Duration::from_secs(600))
        );
        let never = config(RebootstrapMode::Never, 0);
        assert_eq!(step(&never, Duration::from_secs(3600)), Step::Advise);
    }
}
