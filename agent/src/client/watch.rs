//! Spinel's change push (`spinel.server.v1.Watch/WatchChanges`), on the
//! agent side.
//!
//! [`watch_changes`] holds one stream open and wakes the sync loop on every
//! message. When the stream is down it reconnects after a pause; the sync
//! loop keeps polling meanwhile, so a server without the service (SPIRE,
//! or an older Spinel) only costs propagation speed. A stream the server
//! ends by refusing the agent (a ban or an eviction, see
//! `spinel_proto::refusal`) wakes the sync loop at once.

use std::sync::Arc;
use std::time::Duration;

use spinel_proto::refusal::AgentRefusal;
use spinel_proto::spinel::server::v1::watch_client::WatchClient;
use spinel_proto::spinel::server::v1::WatchChangesRequest;
use tokio::sync::Notify;
use tonic::transport::Channel;
use tonic::Code;

/// Pause before reopening a broken stream.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Pause before trying again a server that does not offer the service.
pub const UNSUPPORTED_DELAY: Duration = Duration::from_secs(60);
/// Pause before reopening a stream the server ended by refusing the agent
/// (banned, evicted, stale SVID): the sync loop, woken at once, handles
/// the refusal and re-attests or stops.
pub const REFUSED_DELAY: Duration = Duration::from_secs(10);

/// Whether `status` refuses this agent; if so the sync loop is woken so it
/// reacts now rather than at its next poll.
fn refused(status: &tonic::Status, wake: &Notify) -> bool {
    let Some(reason) = AgentRefusal::from_status(status) else {
        return false;
    };
    tracing::info!(
        reason = reason.as_str(),
        "the server refused this agent on the change stream"
    );
    wake.notify_one();
    true
}

/// Watches the server's change marks forever, calling `wake.notify_one()`
/// when they move. `channel` is asked for anew on every reconnect, so a
/// renewed agent SVID is picked up.
pub async fn watch_changes(channel: impl Fn() -> Channel, wake: Arc<Notify>) {
    // The marks last seen: a message wakes the sync loop only when they
    // moved, so a (re)connect or a duplicate costs no extra sync. The very
    // first message only records them (the agent synced at start; the
    // fallback poll covers the gap).
    let mut last: Option<(u64, u64, u64)> = None;
    let mut announced = false;
    loop {
        let delay = match WatchClient::new(channel())
            .watch_changes(WatchChangesRequest {})
            .await
        {
            Ok(response) => {
                if !announced {
                    tracing::info!("watching the server for changes");
                    announced = true;
                }
                let mut stream = response.into_inner();
                let mut delay = RECONNECT_DELAY;
                loop {
                    match stream.message().await {
                        Ok(Some(changes)) => {
                            let marks = (
                                changes.entries_revision,
                                changes.bundle_sequence,
                                changes.generation,
                            );
                            if last.is_some_and(|l| l != marks) {
                                tracing::trace!(
                                    entries_revision = marks.0,
                                    bundle_sequence = marks.1,
                                    generation = marks.2,
                                    "the server reported a change"
                                );
                                wake.notify_one();
                            }
                            last = Some(marks);
                        }
                        Ok(None) => break,
                        Err(status) if refused(&status, &wake) => {
                            delay = REFUSED_DELAY;
                            break;
                        }
                        Err(status) => {
                            tracing::debug!(code = ?status.code(), error = %status.message(), "the change stream broke; polling until it is back");
                            break;
                        }
                    }
                }
                delay
            }
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!("the server does not push changes; polling only");
                UNSUPPORTED_DELAY
            }
            Err(status) if refused(&status, &wake) => REFUSED_DELAY,
            Err(status) => {
                tracing::debug!(code = ?status.code(), error = %status.message(), "cannot open the change stream");
                RECONNECT_DELAY
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// The running watch task; dropping it stops the task.
#[derive(Debug)]
pub struct WatchGuard(tokio::task::JoinHandle<()>);

impl WatchGuard {
    /// Spawns [`watch_changes`].
    pub fn spawn(channel: impl Fn() -> Channel + Send + 'static, wake: Arc<Notify>) -> Self {
        WatchGuard(tokio::spawn(watch_changes(channel, wake)))
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleeps until `interval` passes or `wake` is notified, whichever comes
/// first. A notification that arrived meanwhile returns at once.
pub async fn wait_for_change(wake: &Notify, interval: Duration) {
    tokio::select! {
        () = wake.notified() => {}
        () = tokio::time::sleep(interval) => {}
    }
}
