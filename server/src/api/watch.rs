//! `spinel.server.v1.Watch/WatchChanges`: Spinel's push of change marks to
//! its agents (not part of SPIRE's API; SPIRE agents keep polling).
//!
//! Agents only. The stream sends the current [`Marks`] at once and again
//! whenever they move; it reads from the one `watch` channel of
//! [`crate::notify::Changes`], so a slow agent holds at most one pending
//! value. The stream ends when the agent goes away or the server stops.
//!
//! The stream also ends when the agent loses its standing: every time the
//! marks move (a ban or an eviction is an admin write, so it pokes them),
//! the caller is checked again with [`ApiState::authorize_peer`], the same
//! check as at the start, before the marks are sent. A refusal (banned,
//! evicted or deleted, superseded or expired SVID) ends the stream with
//! that `PermissionDenied`, `spinel-agent-refusal` metadata included. The
//! cost is one datastore read per mark change per stream. A datastore
//! failure during that check does not end the stream: the marks are sent,
//! and the sync they trigger is authorized on its own.

use std::pin::Pin;
use std::sync::Arc;

use futures::{stream, Stream, StreamExt};
use spinel_proto::spinel::server::v1::watch_server::Watch;
use spinel_proto::spinel::server::v1::{Changes, WatchChangesRequest};
use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};

use super::auth::{method, Caller};
use super::transport::PeerInfo;
use super::ApiState;
use crate::notify::Marks;

/// The Watch service.
#[derive(Debug, Clone)]
pub struct WatchService {
    state: Arc<ApiState>,
}

impl WatchService {
    /// The service over `state`.
    pub fn new(state: Arc<ApiState>) -> Self {
        WatchService { state }
    }
}

fn to_proto(m: Marks) -> Changes {
    Changes {
        entries_revision: m.entries_revision,
        bundle_sequence: m.bundle_sequence,
        generation: m.generation,
    }
}

/// One open stream: the marks it follows and the caller it re-checks.
struct Watcher {
    state: Arc<ApiState>,
    peer: Option<PeerInfo>,
    marks: watch::Receiver<Marks>,
    /// The caller was checked for the first value already (`authorize`).
    checked: bool,
    /// A refusal was sent: nothing follows.
    ended: bool,
}

impl Watcher {
    /// The next message: the marks once they move (the current ones
    /// first), or the refusal that ends the stream; `None` at the end.
    async fn next(mut self) -> Option<(Result<Changes, Status>, Self)> {
        if self.ended {
            return None;
        }
        // Fails only when the hub is gone (the server stops).
        self.marks.changed().await.ok()?;
        let marks = *self.marks.borrow_and_update();
        if std::mem::take(&mut self.checked) {
            return Some((Ok(to_proto(marks)), self));
        }
        match self
            .state
            .authorize_peer(self.peer.as_ref(), method::WATCH_CHANGES)
            .await
        {
            Ok(_) => Some((Ok(to_proto(marks)), self)),
            Err(e) if e.code == Code::PermissionDenied => {
                tracing::info!(reason = ?e.refusal, "the watching agent lost its standing: ending its change stream");
                self.ended = true;
                Some((Err(Status::from(e)), self))
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot check the watching agent again; sending the marks anyway");
                Some((Ok(to_proto(marks)), self))
            }
        }
    }
}

type ChangesStream = Pin<Box<dyn Stream<Item = Result<Changes, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchChangesStream = ChangesStream;

    async fn watch_changes(
        &self,
        request: Request<WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let caller = self
            .state
            .authorize(request.extensions(), method::WATCH_CHANGES)
            .await?;
        if let Caller::Agent { id, .. } = &caller {
            tracing::debug!(agent_id = %id, "agent is watching for changes");
        }
        // The subscription yields the current value first, then every
        // change. The stream ends when the server stops.
        let watcher = Watcher {
            state: self.state.clone(),
            peer: request.extensions().get::<PeerInfo>().cloned(),
            marks: self.state.changes.subscribe(),
            checked: true,
            ended: false,
        };
        let stream = stream::unfold(watcher, Watcher::next).take_until(self.state.changes.closed());
        Ok(Response::new(Box::pin(stream)))
    }
}
