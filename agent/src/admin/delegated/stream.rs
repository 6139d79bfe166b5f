//! The update loop behind the three subscriptions.
//!
//! The first message is computed before the call is answered (a refusal
//! is the call's status) and sent at once. Then a task waits for cache
//! changes (and for the earliest SVID expiry the [`Feed`] asks to be woken
//! at); on each, the delegate's authorization is checked again (SPIRE's
//! rule) and so is the workload's process when it was named by pid, and
//! the feed's next message is sent when it differs from the last one. A
//! failed check ends the stream with its status; so does the agent
//! stopping (`Unavailable`), so that shutdown is not held up.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::cache::Snapshot;

use super::state::{Delegate, State, Workload};

/// What a feed has to say about one snapshot.
#[derive(Debug)]
pub(crate) struct Next<M> {
    /// The message to send; `None` when it would be the same as the last.
    pub message: Option<M>,
    /// When to look again even if the cache does not change.
    pub wake_at: Option<SystemTime>,
}

/// One kind of subscription; it keeps what it last sent.
pub(crate) trait Feed: Send + 'static {
    /// The message streamed.
    type Message: Send + 'static;

    /// The message for `snapshot`, if it changed.
    fn next(&mut self, state: &State, snapshot: &Snapshot) -> Result<Next<Self::Message>, Status>;
}

/// The messages of one stream, as handed to tonic.
pub(crate) type Updates<M> = ReceiverStream<Result<M, Status>>;

/// Computes and queues the first message and starts the loop that sends
/// the next ones.
pub(crate) fn open<F: Feed>(
    state: Arc<State>,
    method: &'static str,
    delegate: Delegate,
    workload: Option<Workload>,
    mut feed: F,
) -> Result<Updates<F::Message>, Status> {
    let mut changes = state.api.cache().subscribe();
    let snapshot = changes.borrow_and_update().clone();
    let first = feed.next(&state, &snapshot)?;
    let (tx, rx) = mpsc::channel(1);
    if let Some(message) = first.message {
        // The channel is new and has room for one message.
        tx.try_send(Ok(message))
            .map_err(|_| Status::internal("stream channel unavailable"))?;
    }
    let follow = Follow {
        state,
        method,
        delegate,
        workload,
        changes,
        tx,
    };
    tokio::spawn(follow.run(feed, first.wake_at));
    Ok(ReceiverStream::new(rx))
}

struct Follow<M> {
    state: Arc<State>,
    method: &'static str,
    delegate: Delegate,
    workload: Option<Workload>,
    changes: watch::Receiver<Arc<Snapshot>>,
    tx: mpsc::Sender<Result<M, Status>>,
}

impl<M: Send + 'static> Follow<M> {
    async fn run<F: Feed<Message = M>>(mut self, mut feed: F, mut wake_at: Option<SystemTime>) {
        let mut stop = self.state.api.stop_signal();
        loop {
            let wake = wake_at.map(|at| self.state.api.clock().instant_at(at));
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = stopped(&mut stop) => {
                    let _ = self.tx.send(Err(Status::unavailable("the agent is shutting down"))).await;
                    return;
                }
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        let _ = self.tx.send(Err(Status::unavailable("the agent cache is gone"))).await;
                        return;
                    }
                }
                _ = sleep_until(wake) => {}
            }
            let snapshot = self.changes.borrow_and_update().clone();
            let next = self
                .state
                .recheck(&self.delegate, &snapshot, self.method)
                .and_then(|()| self.workload.as_ref().map_or(Ok(()), Workload::check_alive))
                .and_then(|()| feed.next(&self.state, &snapshot));
            match next {
                Ok(next) => {
                    wake_at = next.wake_at;
                    if let Some(message) = next.message {
                        if self.tx.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(status) => {
                    let _ = self.tx.send(Err(status)).await;
                    return;
                }
            }
        }
    }
}

/// Completes once the API is stopping (or its stop switch is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await.map(|_| ());
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
