//! Spinel's change push (`spinel.server.v1.Watch/WatchChanges`), on the
//! agent side.
//!
//! [`watch_changes`] holds one stream open and wakes the sync loop on every
//! message. When the stream is down it reconnects after a pause, longer
//! after every open that fails (up to [`MAX_RECONNECT_DELAY`]: a server
//! that refuses is not asked every second), cut short when the sync loop
//! says the server is back (`reconnect`); the sync loop keeps polling
//! meanwhile, so a server without the service (SPIRE, or an older Spinel)
//! only costs propagation speed. A stream the server
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
/// The longest pause between attempts to open the stream while they fail.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);
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

/// The pause after `failed` opens in a row failed: [`RECONNECT_DELAY`]
/// doubling up to [`MAX_RECONNECT_DELAY`].
pub fn reopen_delay(failed: u32) -> Duration {
    RECONNECT_DELAY
        .saturating_mul(1u32 << failed.min(8))
        .min(MAX_RECONNECT_DELAY)
}

/// Watches the server's change marks forever, calling `wake.notify_one()`
/// when they move. `channel` is asked for anew on every reconnect, so a
/// renewed agent SVID (or the server the pool moved to) is picked up; a
/// `reconnect` notification ends the pause before reopening at once.
pub async fn watch_changes(
    channel: impl Fn() -> Channel,
    wake: Arc<Notify>,
    reconnect: Arc<Notify>,
) {
    // The marks last seen: a message wakes the sync loop only when they
    // moved, so a (re)connect or a duplicate costs no extra sync. The very
    // first message only records them (the agent synced at start; the
    // fallback poll covers the gap).
    let mut last: Option<(u64, u64, u64)> = None;
    let mut announced = false;
    let mut failed_opens = 0u32;
    loop {
        let delay = match WatchClient::new(channel())
            .watch_changes(WatchChangesRequest {})
            .await
        {
            Ok(response) => {
                failed_opens = 0;
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
                let delay = reopen_delay(failed_opens);
                failed_opens = failed_opens.saturating_add(1);
                tracing::debug!(code = ?status.code(), error = %status.message(), retry_in = ?delay, "cannot open the change stream");
                delay
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = reconnect.notified() => {}
        }
    }
}

/// The running watch task; dropping it stops the task.
#[derive(Debug)]
pub struct WatchGuard(tokio::task::JoinHandle<()>);

impl WatchGuard {
    /// Spawns [`watch_changes`].
    pub fn spawn(
        channel: impl Fn() -> Channel + Send + 'static,
        wake: Arc<Notify>,
        reconnect: Arc<Notify>,
    ) -> Self {
        WatchGuard(tokio::spawn(watch_changes(channel, wake, reconnect)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_opens_back_off_to_the_cap() {
        assert_eq!(reopen_delay(0), RECONNECT_DELAY);
        assert_eq!(reopen_delay(1), Duration::from_secs(2));
        assert_eq!(reopen_delay(4), Duration::from_secs(16));
        assert_eq!(reopen_delay(5), MAX_RECONNECT_DELAY);
        assert_eq!(reopen_delay(u32::MAX), MAX_RECONNECT_DELAY);
    }
}
