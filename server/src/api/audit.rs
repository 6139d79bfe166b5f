//! The API's audit log: one tower layer around every service, on both
//! listeners.
//!
//! With `audit_log_enabled = true` every call produces one `tracing` event
//! at info with `type = "audit"` (one JSON line under `log_format =
//! "json"`), written when the response is complete:
//!
//! | field | value |
//! | --- | --- |
//! | `method` | full gRPC path |
//! | `caller_type` | `local` (admin socket), `spiffe` (mTLS client), `anonymous` |
//! | `caller_id` | the client certificate's SPIFFE ID (agent or admin), if any |
//! | `caller_addr` | the TCP peer address, if any |
//! | `caller_uid` | the local peer's uid, if known |
//! | `status` | `success` or `error` |
//! | `status_code` | the gRPC status code (0 = OK) |
//! | `entity_ids` | what the call names or creates, noted by the handler with [`note_entity`], comma-separated |
//!
//! `entity_ids` by service (noted once the input is validated, whether the
//! call then succeeds or not):
//!
//! | calls | entities |
//! | --- | --- |
//! | `Entry` create, update, delete, get | entry IDs |
//! | `Agent` get, ban, delete | the agent's SPIFFE ID |
//! | `CreateJoinToken` | the agent ID the token is for (`agent_id`), if any; never the token |
//! | `AttestAgent` | the resulting agent ID (a join token is spent by then) |
//! | `RenewAgent` | the caller's agent ID |
//! | `BatchNewX509SVID`, `NewJWTSVID` | the entry IDs asked for |
//! | `MintX509SVID`, `MintJWTSVID` | the SPIFFE ID minted |
//! | `LocalAuthority` prepare, activate, taint, revoke | the authority ID (upstream: subject key ID) |
//! | `TrustDomain` create, update, delete, get, refresh | trust domain names |
//! | `Bundle` get, append (own); federated get, create, update, set, delete | trust domain names |
//!
//! Only those: no request or response bodies, so no token, key or CSR can
//! reach the log. Whether the caller was *authorized* as what its
//! certificate claims shows in `status_code` (7 = refused).
//!
//! Waking agents after a mutating call is not this layer's job: that is
//! [`crate::notify::NotifyLayer`], beside it.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tonic::body::Body as TonicBody;
use tower::{Layer, Service};

use super::transport::PeerInfo;

tokio::task_local! {
    static ENTITIES: Arc<Mutex<Entities>>;
}

/// The entities one call noted: in the order first noted, each once. The
/// set makes noting constant time, so a batch of n entries costs O(n).
#[derive(Debug, Default)]
struct Entities {
    order: Vec<String>,
    seen: HashSet<String>,
}

impl Entities {
    fn note(&mut self, id: &str) {
        if !self.seen.contains(id) {
            self.seen.insert(id.to_owned());
            self.order.push(id.to_owned());
        }
    }

    fn joined(&self) -> String {
        self.order.join(",")
    }
}

/// Notes `id` as an entity the current call names or creates, for its
/// audit line (once, however often it is noted). Outside an audited call it
/// does nothing. Never pass a secret: a join token is noted only once spent
/// (inside the agent ID it became).
pub fn note_entity(id: &str) {
    let _ = ENTITIES.try_with(|ids| {
        if let Ok(mut ids) = ids.lock() {
            ids.note(id);
        }
    });
}

/// Runs `future` (typically spawned on its own task) as part of the
/// current call, so that its [`note_entity`] calls reach this call's audit
/// line. Outside an audited call it runs `future` as is.
pub fn in_this_call<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let ids = ENTITIES.try_with(Arc::clone).ok();
    async move {
        match ids {
            Some(ids) => ENTITIES.scope(ids, future).await,
            None => future.await,
        }
    }
}

/// The layer: wrap the router with it on both listeners.
#[derive(Debug, Clone)]
pub struct AuditLayer {
    enabled: bool,
}

impl AuditLayer {
    /// A layer that audits when `enabled` (and passes calls through
    /// untouched otherwise).
    pub fn new(enabled: bool) -> Self {
        AuditLayer { enabled }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audited<S>;

    fn layer(&self, inner: S) -> Audited<S> {
        Audited {
            inner,
            enabled: self.enabled,
        }
    }
}

/// A service wrapped by [`AuditLayer`].
#[derive(Debug, Clone)]
pub struct Audited<S> {
    inner: S,
    enabled: bool,
}

#[derive(Debug)]
struct Record {
    method: String,
    caller_type: &'static str,
    caller_id: Option<String>,
    caller_addr: Option<String>,
    caller_uid: Option<u32>,
    entities: Arc<Mutex<Entities>>,
    code: Option<i32>,
}

impl Record {
    fn emit(&self, code: i32) {
        let entity_ids = self
            .entities
            .lock()
            .map(|ids| ids.joined())
            .unwrap_or_default();
        tracing::info!(
            target: "spinel::audit",
            r#type = "audit",
            method = %self.method,
            caller_type = self.caller_type,
            caller_id = self.caller_id.as_deref(),
            caller_addr = self.caller_addr.as_deref(),
            caller_uid = self.caller_uid,
            status = if code == 0 { "success" } else { "error" },
            status_code = code,
            entity_ids = %entity_ids,
            "API call"
        );
    }
}

fn describe_caller(record: &mut Record, peer: Option<&PeerInfo>) {
    match peer {
        Some(PeerInfo::Local { uid }) => {
            record.caller_type = "local";
            record.caller_uid = *uid;
        }
        Some(PeerInfo::Tcp { remote, chain }) => {
            record.caller_addr = remote.map(|a| a.to_string());
            record.caller_id = chain
                .as_ref()
                .and_then(|c| c.first())
                .and_then(|leaf| spiffe_id_of(leaf));
            record.caller_type = if record.caller_id.is_some() {
                "spiffe"
            } else {
                "anonymous"
            };
        }
        None => record.caller_type = "anonymous",
    }
}

fn spiffe_id_of(leaf: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_owned()),
        _ => None,
    })
}

impl<S, B> Service<http::Request<B>> for Audited<S>
where
    S: Service<http::Request<B>, Response = http::Response<TonicBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<TonicBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone is ready-less; keep the one that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = request.uri().path().to_owned();
        let mut record = Record {
            method,
            caller_type: "anonymous",
            caller_id: None,
            caller_addr: None,
            caller_uid: None,
            entities: Arc::default(),
            code: None,
        };
        let enabled = self.enabled;
        if enabled {
            describe_caller(&mut record, request.extensions().get::<PeerInfo>());
        }
        let future = ENTITIES.scope(record.entities.clone(), inner.call(request));
        Box::pin(async move {
            let response = future.await?;
            if !enabled {
                return Ok(response);
            }
            record.code = spinel_telemetry::rpc::header_code(response.headers());
            let (parts, body) = response.into_parts();
            let body = AuditBody {
                inner: body,
                record: Some(record),
            };
            Ok(http::Response::from_parts(parts, TonicBody::new(body)))
        })
    }
}

/// A response body that writes the audit line once the final status is
/// known: from the trailers, or the head (trailers-only errors), or, for a
/// stream cut short, `CANCELLED` (1).
struct AuditBody {
    inner: TonicBody,
    record: Option<Record>,
}

impl AuditBody {
    fn finish(&mut self, code: Option<i32>) {
        if let Some(record) = self.record.take() {
            record.emit(code.or(record.code).unwrap_or(0));
        }
    }
}

impl Drop for AuditBody {
    fn drop(&mut self) {
        let code = self.record.as_ref().and_then(|r| r.code).or(Some(1));
        self.finish(code);
    }
}

impl Body for AuditBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = spinel_telemetry::rpc::header_code(trailers);
                    self.finish(code);
                }
            }
            Poll::Ready(None) => {
                let code = self.record.as_ref().and_then(|r| r.code);
                self.finish(code);
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_keep_first_noted_order_and_appear_once() {
        let mut ids = Entities::default();
        for id in ["b", "a", "b", "c", "a"] {
            ids.note(id);
        }
        assert_eq!(ids.joined(), "b,a,c");
    }

    #[tokio::test]
    async fn notes_reach_the_call_they_belong_to_and_nothing_else() {
        note_entity("outside");
        let ids: Arc<Mutex<Entities>> = Arc::default();
        ENTITIES
            .scope(Arc::clone(&ids), async {
                note_entity("x");
                tokio::spawn(in_this_call(async { note_entity("y") }))
                    .await
                    .unwrap();
                note_entity("x");
            })
            .await;
        assert_eq!(ids.lock().unwrap().joined(), "x,y");
    }
}
