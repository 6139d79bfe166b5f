//! The update loop behind the streaming methods.
//!
//! A [`Feed`] computes what one caller should have from one snapshot. The
//! first message is computed before the call is answered, so a refusal is
//! the call's status; then a task waits for cache changes (and for the
//! earliest SVID expiry the feed asks to be woken at), attests the caller
//! again, and sends the new message only when it differs from the last one
//! sent. A refusal ends the stream with that status; so does the API
//! stopping (`Unavailable`), so that graceful shutdown is not held up by
//! endless streams.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::Status;

use crate::attestor::workload::Caller;
use crate::cache::Snapshot;

use super::state::Shared;

/// What a feed has to say about one snapshot.
#[derive(Debug)]
pub(crate) struct Step<T> {
    /// The message for the caller; `None` when there is nothing valid to
    /// send (the last message stands). Shared: a stream keeps the one it
    /// last sent, and many streams may hold the same one.
    pub message: Option<Arc<T>>,
    /// When to look again even if the cache does not change.
    pub wake_at: Option<SystemTime>,
}

/// One kind of stream.
#[async_trait]
pub(crate) trait Feed: Send + Sync + 'static {
    /// The message type streamed.
    type Message: PartialEq + Clone + Send + Sync + 'static;

    /// What `caller` gets from `snapshot`, or the status ending the stream.
    async fn step(
        &self,
        shared: &Shared,
        caller: &Caller,
        snapshot: Arc<Snapshot>,
    ) -> Result<Step<Self::Message>, Status>;
}

/// The messages of one Workload API stream, as handed to tonic. They wait
/// in the channel shared; each is copied out for tonic only when tonic
/// takes it to encode it.
#[derive(Debug)]
pub struct Updates<T> {
    rx: mpsc::Receiver<Result<Arc<T>, Status>>,
}

impl<T: Clone> Stream for Updates<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|item| item.map(Arc::unwrap_or_clone)))
    }
}

/// Computes the first message and starts the loop sending the next ones.
pub(crate) async fn open<F: Feed>(
    shared: Arc<Shared>,
    caller: Caller,
    feed: F,
) -> Result<Updates<F::Message>, Status> {
    let mut changes = shared.cache.subscribe();
    let snapshot = changes.borrow_and_update().clone();
    let first = feed.step(&shared, &caller, snapshot).await?;
    let Some(message) = first.message else {
        return Err(Status::unavailable(
            "no valid SVID is available yet; retry shortly",
        ));
    };
    let (tx, rx) = mpsc::channel(1);
    // The channel is new and has room for one message.
    if tx.try_send(Ok(message.clone())).is_err() {
        return Err(Status::internal("stream channel unavailable"));
    }
    tokio::spawn(follow(
        shared,
        caller,
        feed,
        changes,
        tx,
        message,
        first.wake_at,
    ));
    Ok(Updates { rx })
}

async fn follow<F: Feed>(
    shared: Arc<Shared>,
    caller: Caller,
    feed: F,
    mut changes: watch::Receiver<Arc<Snapshot>>,
    tx: mpsc::Sender<Result<Arc<F::Message>, Status>>,
    mut last: Arc<F::Message>,
    mut wake_at: Option<SystemTime>,
) {
    let mut stop = shared.stop_signal();
    loop {
        let wake = wake_at.map(|at| shared.clock.instant_at(at));
        tokio::select! {
            _ = tx.closed() => return,
            _ = stopped(&mut stop) => {
                let _ = tx.send(Err(Status::unavailable("the agent is shutting down"))).await;
                return;
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    let _ = tx.send(Err(Status::unavailable("the agent cache is gone"))).await;
                    return;
                }
            }
            _ = sleep_until(wake) => {}
        }
        let snapshot = changes.borrow_and_update().clone();
        match feed.step(&shared, &caller, snapshot).await {
            Ok(step) => {
                wake_at = step.wake_at;
                // Shared responses of an unchanged set are the same `Arc`;
                // contents are compared only when they are not.
                let changed = |m: &Arc<F::Message>| !Arc::ptr_eq(m, &last) && **m != *last;
                if let Some(message) = step.message.filter(changed) {
                    if tx.send(Ok(message.clone())).await.is_err() {
                        return;
                    }
                    last = message;
                }
            }
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        }
    }
}

/// Completes once the API is stopping (or its stop switch is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
