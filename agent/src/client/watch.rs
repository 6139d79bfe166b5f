//! Spinel's change push (`spinel.server.v1.Watch/WatchChanges`), on the
//! agent side.
//!
//! [`watch_changes`] holds one stream open and wakes the sync loop on every
//! message. When the stream is down it reconnects after a pause; the sync
//! loop keeps polling meanwhile, so a server without the service (SPIRE,
//! or an older Spinel) only costs propagation speed.

use std::sync::Arc;
use std::time::Duration;

use spinel_proto::spinel::server::v1::watch_client::WatchClient;
use spinel_proto::spinel::server::v1::WatchChangesRequest;
use tokio::sync::Notify;
use tonic::transport::Channel;
use tonic::Code;

/// Pause before reopening a broken stream.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Pause before trying again a server that does not offer the service.
pub const UNSUPPORTED_DELAY: Duration = Duration::from_secs(60);

/// Watches the server's change marks forever, calling `wake.notify_one()`
/// on each message. `channel` is asked for anew on every reconnect, so a
/// renewed agent SVID is picked up.
pub async fn watch_changes(channel: impl Fn() -> Channel, wake: Arc<Notify>) {
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
                loop {
                    match stream.message().await {
                        Ok(Some(changes)) => {
                            tracing::trace!(
                                entries_revision = changes.entries_revision,
                                bundle_sequence = changes.bundle_sequence,
                                generation = changes.generation,
                                "the server reported a change"
                            );
                            wake.notify_one();
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(code = ?status.code(), error = %status.message(), "the change stream broke; polling until it is back");
                            break;
                        }
                    }
                }
                RECONNECT_DELAY
            }
            Err(status) if status.code() == Code::Unimplemented => {
                tracing::info!("the server does not push changes; polling only");
                UNSUPPORTED_DELAY
            }
            Err(status) => {
                tracing::debug!(code = ?status.code(), error = %status.message(), "cannot open the change stream");
                RECONNECT_DELAY
            }
        };
        tokio::time::sleep(delay).await;
    }
}
