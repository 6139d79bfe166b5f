//! `spinel.server.v1.Watch/WatchChanges`: Spinel's push of change marks to
//! its agents (not part of SPIRE's API; SPIRE agents keep polling).
//!
//! Agents only. The stream sends the current [`Marks`] at once and again
//! whenever they move; it reads from the one `watch` channel of
//! [`crate::notify::Changes`], so a slow agent holds at most one pending
//! value. The stream ends when the agent goes away or the server stops.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use spinel_proto::spinel::server::v1::watch_server::Watch;
use spinel_proto::spinel::server::v1::{Changes, WatchChangesRequest};
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use super::auth::{method, Caller};
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
        // WatchStream yields the current value first, then every change.
        // It ends when the server stops.
        let stream = WatchStream::new(self.state.changes.subscribe())
            .map(|m| Ok(to_proto(m)))
            .take_until(self.state.changes.closed());
        Ok(Response::new(Box::pin(stream)))
    }
}
