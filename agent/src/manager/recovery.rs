//! What the agent does when its state or its standing is in doubt.
//!
//! At start ([`or_rebootstrap`], [`usable_stored_svid`], [`restore_cache`]):
//! a stored file that does not parse stops the agent with an error naming
//! the file, unless `rebootstrap_mode` is `auto` or `always` (then the file
//! is discarded with a warning and the agent attests from the bootstrap
//! bundle). An expired agent SVID is replaced by attesting again when the
//! agent can (a reattestable attestor, or a join token in the config);
//! otherwise the error says what the operator must do. Workload SVIDs saved
//! by the previous run are served at once if still valid.
//!
//! While running ([`after_failure`]), a failed sync is classified:
//! - *banned*: the stored SVID and the workload cache are wiped, no identity
//!   is served any more, syncing stops, health turns NOT_SERVING and the
//!   agent exits (as SPIRE's does; see `run.rs`);
//! - *evicted*, *superseded or expired SVID*: a reattestable agent
//!   (`k8s_psat`) attests again by itself; a join-token agent attests with
//!   the configured token if `rebootstrap_mode` allows, or else logs that it
//!   needs a new token (evicted: it wipes its state, stops syncing and
//!   exits like a banned agent);
//! - a server whose certificate the agent's bundle does not trust: see
//!   `rebootstrap.rs` (`rebootstrap_delay`);
//! - anything else is an outage: cached SVIDs keep being served until they
//!   expire, and the sync loop backs off.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use tonic::{Code, Status};

use super::authorities::issued_by_any;
use super::persist::CacheFile;
use super::store::{StoreError, StoredSvid};
use super::{validity, AgentSvid, Manager, ManagerError};
use crate::cache::{Cache, Snapshot};
use crate::config::{AgentConfig, RebootstrapMode};

/// Keeps a loaded value, or, when the file is unusable and rebootstrap is
/// opted in, discards it with a warning naming the file.
pub(super) fn or_rebootstrap<T>(
    mode: RebootstrapMode,
    loaded: Result<Option<T>, StoreError>,
) -> Result<Option<T>, ManagerError> {
    match loaded {
        Ok(v) => Ok(v),
        Err(e) if mode.allows() => {
            tracing::warn!(file = %e.path.display(), reason = %e.reason, rebootstrap_mode = ?mode, "stored agent state is unusable: discarding it and bootstrapping again");
            let _ = std::fs::remove_file(&e.path);
            Ok(None)
        }
        Err(e) => Err(ManagerError::Store(StoreError {
            path: e.path,
            reason: format!(
                "{} (refusing to start: fix or remove the file, or set agent.rebootstrap_mode = \"auto\" to attest again)",
                e.reason
            ),
        })),
    }
}

fn unusable(store: &super::Store, path: Option<&std::path::Path>, reason: &str) -> StoreError {
    StoreError {
        path: path.unwrap_or(store.svid_path()).to_owned(),
        reason: reason.to_owned(),
    }
}

/// Checks a stored agent SVID: its leaf parses, its key parses and matches
/// it, and it has not expired. `None`: attest again.
pub(super) fn usable_stored_svid(
    config: &AgentConfig,
    store: &super::Store,
    s: StoredSvid,
    roots: &[Vec<u8>],
    now: SystemTime,
) -> Result<Option<AgentSvid>, ManagerError> {
    let mode = config.rebootstrap_mode;
    let leaf = s.chain.first().and_then(|c| {
        let (_, cert) = x509_parser::parse_x509_certificate(c).ok()?;
        Some(cert.public_key().subject_public_key.data.to_vec())
    });
    let Some(spki) = leaf else {
        return or_rebootstrap(
            mode,
            Err(unusable(store, None, "the leaf certificate does not parse")),
        );
    };
    let key_ok =
        rcgen::KeyPair::try_from(s.key.as_slice()).map(|k| k.public_key_raw() == spki.as_slice());
    match key_ok {
        Ok(true) => {}
        Ok(false) => {
            return or_rebootstrap(
                mode,
                Err(unusable(
                    store,
                    store.key_path(),
                    "the key does not match the agent SVID",
                )),
            );
        }
        Err(_) => {
            return or_rebootstrap(
                mode,
                Err(unusable(
                    store,
                    store.key_path(),
                    "not a PKCS#8 private key (truncated or corrupt?)",
                )),
            );
        }
    }
    let Some((not_before, not_after)) = s.chain.first().and_then(|c| validity(c)) else {
        return or_rebootstrap(
            mode,
            Err(unusable(
                store,
                None,
                "the leaf certificate has no readable validity",
            )),
        );
    };
    let can_attest = config.node_attestor.reattests() || config.join_token.is_some();
    if !roots.is_empty() && !issued_by_any(&s.chain, roots) {
        // Presented, the server would refuse it in the handshake, and the
        // agent would retry forever: say so now.
        if can_attest {
            tracing::warn!(file = %store.svid_path().display(), bundle = %store.bundle_path().display(), "the stored agent SVID was not issued by a CA of the trust bundle: attesting again");
            return Ok(None);
        }
        return Err(ManagerError::NoIdentity(format!(
            "the agent SVID in {} was not issued by any CA of the trust bundle {} (the server's CA changed): \
             generate a new join token with `spinel-server token generate -spiffeID <agent ID>` and start the agent with -joinToken <token>",
            store.svid_path().display(),
            store.bundle_path().display(),
        )));
    }
    if not_after > now {
        return Ok(Some(AgentSvid {
            chain: s.chain,
            key: s.key,
            not_before,
            not_after,
        }));
    }
    if can_attest {
        tracing::warn!(file = %store.svid_path().display(), expired = ?not_after, "the stored agent SVID has expired: attesting again");
        return Ok(None);
    }
    Err(ManagerError::NoIdentity(format!(
        "the agent SVID in {} expired at {} (the server was unreachable for longer than its lifetime): \
         generate a new join token with `spinel-server token generate -spiffeID <agent ID>` and start the agent with -joinToken <token> \
         (or set agent.join_token; with agent.rebootstrap_mode = \"auto\" the agent also discards unusable state by itself)",
        store.svid_path().display(),
        humantime_secs(not_after)
    )))
}

/// The stored agent SVID of a reattestable agent that cannot attest now
/// (server unreachable), if it is still usable.
pub(super) fn fallback_svid(
    config: &AgentConfig,
    store: &super::Store,
    roots: &[Vec<u8>],
    now: SystemTime,
) -> Option<AgentSvid> {
    let stored = store.load_svid().ok()??;
    usable_stored_svid(config, store, stored, roots, now).ok()?
}

fn humantime_secs(t: SystemTime) -> String {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => format!("unix time {}", d.as_secs()),
        Err(_) => "an unknown time".into(),
    }
}

/// Publishes the workload cache saved by the previous run, if any.
pub(super) fn restore_cache(
    mode: RebootstrapMode,
    file: &CacheFile,
    cache: &Cache,
    now: SystemTime,
) -> Result<(), ManagerError> {
    let Some(loaded) = or_rebootstrap(mode, file.load(now))? else {
        return Ok(());
    };
    tracing::info!(
        file = %file.path().display(),
        identities = loaded.identities.len(),
        expired_dropped = loaded.expired,
        "serving the workload SVIDs stored by the previous run until the server is reached"
    );
    cache.publish(|_| Snapshot {
        bundle: loaded.bundle,
        federated: loaded.federated,
        identities: loaded.identities,
        generation: 0,
        ready: true,
    });
    Ok(())
}

/// Saves the workload cache when it changed since the last save.
pub(super) fn persist(m: &Manager) {
    let Some(file) = &m.cache_file else {
        return;
    };
    let snapshot = m.cache().snapshot();
    if !snapshot.ready || m.persisted.load(Ordering::Relaxed) == snapshot.generation {
        return;
    }
    match file.save(&snapshot) {
        Ok(()) => m.persisted.store(snapshot.generation, Ordering::Relaxed),
        Err(e) => tracing::warn!(error = %e, "cannot save the workload cache"),
    }
}

/// Why the server refused this agent, from its `PermissionDenied` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Banned,
    Evicted,
    StaleSvid,
}

fn refusal(status: &Status) -> Option<Refusal> {
    if status.code() != Code::PermissionDenied {
        return None;
    }
    // A Spinel server names the reason in the `spinel-agent-refusal`
    // metadata, a SPIRE server in the status details
    // (`PermissionDeniedDetails`; its message is then often only
    // "authorization denied for method ..."): trust those first.
    if let Some(reason) = spinel_proto::refusal::AgentRefusal::from_status(status) {
        use spinel_proto::refusal::AgentRefusal;
        return Some(match reason {
            AgentRefusal::Banned => Refusal::Banned,
            AgentRefusal::Evicted => Refusal::Evicted,
            AgentRefusal::Superseded | AgentRefusal::Expired => Refusal::StaleSvid,
        });
    }
    // Without either (a server older than both), the message text is all
    // there is: SPIRE's wording.
    let msg = status.message();
    if msg.contains("is banned") {
        Some(Refusal::Banned)
    } else if msg.contains("is not attested") {
        Some(Refusal::Evicted)
    } else if msg.contains("superseded") || msg.contains("expired") {
        Some(Refusal::StaleSvid)
    } else {
        None
    }
}

/// `refusal()`: the metadata first, the message text without it.
#[cfg(test)]
mod refusal_tests {
    use spinel_proto::refusal::AgentRefusal;
    use tonic::{Code, Status};

    use super::{refusal, Refusal};

    #[test]
    fn metadata_wins_over_the_text() {
        // A message that reads as "banned", metadata saying evicted.
        let status = AgentRefusal::Evicted.status("agent \"x\" is banned");
        assert_eq!(refusal(&status), Some(Refusal::Evicted));
        for (reason, expected) in [
            (AgentRefusal::Banned, Refusal::Banned),
            (AgentRefusal::Superseded, Refusal::StaleSvid),
            (AgentRefusal::Expired, Refusal::StaleSvid),
        ] {
            assert_eq!(refusal(&reason.status("refused")), Some(expected));
        }
    }

    #[test]
    fn a_spire_server_names_the_reason_in_the_details() {
        // What SPIRE 1.13's authorization layer sends a banned agent.
        let message =
            "authorization denied for method /spire.api.server.entry.v1.Entry/SyncAuthorizedEntries";
        let details = AgentRefusal::Banned.details(message);
        let status = Status::with_details(Code::PermissionDenied, message, details.into());
        assert_eq!(refusal(&status), Some(Refusal::Banned));
        assert_eq!(refusal(&Status::new(Code::PermissionDenied, message)), None);
    }

    #[test]
    fn without_metadata_the_text_decides() {
        let text = |m: &str| refusal(&Status::new(Code::PermissionDenied, m));
        assert_eq!(text("agent \"x\" is banned"), Some(Refusal::Banned));
        assert_eq!(text("agent \"x\" is not attested"), Some(Refusal::Evicted));
        assert_eq!(
            text("agent \"x\" SVID is expired"),
            Some(Refusal::StaleSvid)
        );
        assert_eq!(text("authorization denied for method /m"), None);
        assert_eq!(refusal(&Status::unavailable("agent is banned")), None);
    }
}

/// What the sync loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Back off and sync again.
    Retry,
    /// The agent has a new identity: sync again at once.
    Resync,
    /// Stop syncing for good: the server refuses this agent.
    Stop(super::Refused),
}

/// Drops every identity and the stored agent state.
fn wipe(m: &Manager) {
    m.store.forget_svid();
    if let Some(file) = &m.cache_file {
        file.remove();
    }
    if let Ok(mut jwts) = m.jwt_cache.lock() {
        jwts.clear();
    }
    m.cache().publish(|s| Snapshot {
        bundle: s.bundle.clone(),
        federated: s.federated.clone(),
        identities: Default::default(),
        generation: 0,
        // Not ready: the health service says NOT_SERVING, so `healthcheck`
        // and liveness probes see the refused agent as unhealthy.
        ready: false,
    });
}

/// Reacts to a failed sync round.
pub(super) async fn after_failure(m: &Arc<Manager>, status: &Status) -> Next {
    if m.trust.untrusted_since().is_some() {
        return super::rebootstrap::untrusted(m).await;
    }
    let now = m.clock().now();
    let lapsed = m.agent_svid().not_after <= now;
    let refusal = refusal(status);
    if refusal == Some(Refusal::Banned) {
        wipe(m);
        tracing::error!(
            error = %status.message(),
            "the server says this agent is banned: its SVID and workload SVIDs were wiped and it serves no identity. \
             To readmit the node, delete the agent on the server (`spinel-server agent delete -spiffeID <agent ID>`) and attest it again"
        );
        return Next::Stop(super::Refused::Banned);
    }
    if refusal.is_none() && !lapsed {
        return Next::Retry;
    }
    let why = match refusal {
        Some(Refusal::Evicted) => "the server no longer knows this agent (evicted)",
        Some(_) => "the server refused the agent SVID (superseded or expired)",
        None => "the agent SVID has expired",
    };
    let config = &m.config;
    let may_attest = m.reattestable()
        || config.node_attestor.reattests()
        || (config.join_token.is_some() && config.rebootstrap_mode == RebootstrapMode::Always)
        || (config.join_token.is_some() && lapsed && config.rebootstrap_mode.allows());
    if may_attest {
        tracing::warn!(
            reason = why,
            node_attestor = config.node_attestor.name(),
            "attesting again"
        );
        match m.reattest().await {
            Ok(()) => return Next::Resync,
            Err(e) => {
                tracing::warn!(error = %e, "attesting again failed; will retry");
            }
        }
        if config.node_attestor.reattests() {
            return Next::Retry;
        }
    }
    tracing::error!(
        reason = why,
        "this join-token agent needs a new join token: generate one with `spinel-server token generate -spiffeID <agent ID>` \
         and restart the agent with -joinToken <token> (or set agent.join_token with agent.rebootstrap_mode = \"always\" to attest with it by itself)"
    );
    if refusal == Some(Refusal::Evicted) {
        wipe(m);
        return Next::Stop(super::Refused::Evicted);
    }
    Next::Retry
}
