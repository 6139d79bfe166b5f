//! The sync loop: a round every [`SYNC_INTERVAL`], at once when the
//! server's change stream says something changed, backing off (capped,
//! jittered) after failures while cached SVIDs keep being served; while
//! no server can be reached, probing for its return (`retry.rs`).
//!
//! After a good round the workload cache is saved
//! ([`Manager::save_cache`]); after a failed one, expired SVIDs are dropped
//! and `identity/recovery.rs` decides whether to retry, re-sync at once
//! with a new identity, or stop for good.

use std::sync::Arc;

use super::retry::{probing, wait_to_retry, Waited};
use super::round::sync_once;
use crate::cache::Snapshot;
use crate::client::{wait_for_change, WatchGuard};
use crate::manager::error::{Next, Refused};
use crate::manager::identity::recovery::after_failure;
use crate::manager::state::Manager;
use crate::manager::timing::{backoff, SYNC_INTERVAL};

impl Manager {
    /// Runs sync and rotation until the task is dropped, or until the
    /// server refuses this agent for good (the agent then exits).
    pub async fn run(self: Arc<Self>) -> Refused {
        run(self).await
    }

    /// One sync round now (used at start so the first workload finds SVIDs).
    pub async fn sync_once(self: &Arc<Self>) -> Result<(), tonic::Status> {
        timed_round(self).await
    }
}

/// One round, counted and timed for the metrics.
async fn timed_round(m: &Arc<Manager>) -> Result<(), tonic::Status> {
    let started = tokio::time::Instant::now();
    let result = sync_once(m).await;
    crate::metrics::sync_round(started.elapsed(), result.is_ok());
    result
}

/// Syncs until the server refuses this agent for good; returns why.
pub(crate) async fn run(m: Arc<Manager>) -> Refused {
    let wake = Arc::new(tokio::sync::Notify::new());
    let reconnect = Arc::new(tokio::sync::Notify::new());
    let _watch = spawn_change_watch(&m, wake.clone(), reconnect.clone());
    let mut failures = 0u32;
    let mut failed_last = false;
    loop {
        match timed_round(&m).await {
            Ok(()) => {
                if failed_last {
                    tracing::info!("sync with the server recovered");
                    // The change stream follows at once rather than after
                    // its own (possibly long) pause.
                    reconnect.notify_one();
                }
                failed_last = false;
                failures = 0;
                m.save_cache();
                wait_for_change(&wake, SYNC_INTERVAL).await;
            }
            Err(status) => {
                failed_last = true;
                drop_expired(&m);
                match after_failure(&m, &status).await {
                    Next::Stop(why) => return why,
                    Next::Resync => {
                        failures = 0;
                        continue;
                    }
                    Next::Retry => {}
                }
                let wait = backoff(failures, rand::random::<f64>() * 0.2);
                let probe = probing(&status, m.pool.reach());
                if probe {
                    tracing::warn!(code = ?status.code(), error = %status.message(), retry_in = ?wait, "cannot reach the server; serving cached SVIDs and probing for its return");
                } else {
                    tracing::warn!(code = ?status.code(), error = %status.message(), retry_in = ?wait, "sync with the server failed; serving cached SVIDs");
                }
                failures = failures.saturating_add(1);
                let pool = m.pool.clone();
                let waited = wait_to_retry(
                    wait,
                    probe,
                    || {
                        let pool = pool.clone();
                        async move { pool.probe().await }
                    },
                    || rand::random::<f64>() * 0.5,
                )
                .await;
                if waited == Waited::ServerBack {
                    // The outage is over; a failure from here on starts
                    // its own backoff.
                    tracing::info!("a server is listening again; syncing now");
                    failures = 0;
                }
            }
        }
    }
}

/// Starts the task holding the server's change stream open; each message
/// wakes the sync loop through `wake`; `reconnect` has it reopen at once.
fn spawn_change_watch(
    m: &Arc<Manager>,
    wake: Arc<tokio::sync::Notify>,
    reconnect: Arc<tokio::sync::Notify>,
) -> WatchGuard {
    let weak = Arc::downgrade(m);
    let fallback = m.channel();
    WatchGuard::spawn(
        move || {
            weak.upgrade()
                .map_or_else(|| fallback.clone(), |m| m.channel())
        },
        wake,
        reconnect,
    )
}

/// Removes identities whose SVID has expired, so none is ever served.
fn drop_expired(m: &Manager) {
    let now = m.clock().now();
    let snapshot = m.cache().snapshot();
    if snapshot
        .identities
        .values()
        .any(|i| i.svid.not_after <= now)
    {
        m.cache().publish(|s| Snapshot {
            bundle: s.bundle.clone(),
            federated: s.federated.clone(),
            identities: s
                .identities
                .iter()
                .filter(|(_, i)| i.svid.not_after > now)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            generation: 0,
            ready: true,
        });
    }
}
