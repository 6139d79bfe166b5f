//! The agent's stored state at start, when it is in doubt.
//!
//! [`or_rebootstrap`], [`usable_stored_svid`], [`restore_cache`]: a stored
//! file that does not parse stops the agent with an error naming the file,
//! unless `rebootstrap_mode` is `auto` or `always` (then the file is
//! discarded with a warning and the agent attests from the bootstrap
//! bundle). An expired agent SVID is replaced by attesting again when the
//! agent can (a reattestable attestor, or a join token in the config);
//! otherwise the error says what the operator must do. Workload SVIDs saved
//! by the previous run are served at once if still valid.

use std::time::SystemTime;

use crate::cache::{Cache, Snapshot};
use crate::config::{AgentConfig, RebootstrapMode};
use crate::manager::certs::validity;
use crate::manager::error::ManagerError;
use crate::manager::persist::store::{Store, StoreError, StoredSvid};
use crate::manager::persist::workload_cache::CacheFile;
use crate::manager::state::AgentSvid;
use crate::manager::sync::authorities::issued_by_any;

/// Keeps a loaded value, or, when the file is unusable and rebootstrap is
/// opted in, discards it with a warning naming the file.
pub(crate) fn or_rebootstrap<T>(
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

fn unusable(store: &Store, path: Option<&std::path::Path>, reason: &str) -> StoreError {
    StoreError {
        path: path.unwrap_or(store.svid_path()).to_owned(),
        reason: reason.to_owned(),
    }
}

/// Checks a stored agent SVID: its leaf parses, its key parses and matches
/// it, and it has not expired. `None`: attest again.
pub(crate) fn usable_stored_svid(
    config: &AgentConfig,
    store: &Store,
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
pub(crate) fn fallback_svid(
    config: &AgentConfig,
    store: &Store,
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
pub(crate) fn restore_cache(
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
