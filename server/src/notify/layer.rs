//! The tower layer that wakes agents after a mutating API call.
//!
//! Wraps the API router on both listeners (beside the audit layer, on its
//! own). Which calls mutate is the method table's `mutates` column
//! ([`crate::api::mutates`]), passed in as a function so this component
//! does not depend on the API's internals. The poke comes once the inner
//! service has produced the response head: a unary handler has finished
//! by then. Every answered call pokes, also one answered with a gRPC error
//! status, as the audit layer did before this layer existed (a spurious
//! poke costs agents one sync; a missed one, a poll interval); a call the
//! inner service fails (no answer) does not.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Layer, Service};

use super::Changes;

/// Whether a method (a full gRPC path) mutates state.
pub type Mutates = fn(&str) -> bool;

/// The layer: pokes [`Changes`] after every call to a method `mutates`
/// names.
#[derive(Debug, Clone)]
pub struct NotifyLayer {
    changes: Arc<Changes>,
    mutates: Mutates,
}

impl NotifyLayer {
    /// A layer poking `changes` after calls to the methods `mutates` names.
    pub fn new(changes: Arc<Changes>, mutates: Mutates) -> Self {
        NotifyLayer { changes, mutates }
    }
}

impl<S> Layer<S> for NotifyLayer {
    type Service = Notifying<S>;

    fn layer(&self, inner: S) -> Notifying<S> {
        Notifying {
            inner,
            changes: self.changes.clone(),
            mutates: self.mutates,
        }
    }
}

/// A service wrapped by [`NotifyLayer`].
#[derive(Debug, Clone)]
pub struct Notifying<S> {
    inner: S,
    changes: Arc<Changes>,
    mutates: Mutates,
}

impl<S, B> Service<http::Request<B>> for Notifying<S>
where
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone is ready-less; keep the one that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let poke = (self.mutates)(request.uri().path()).then(|| self.changes.clone());
        let future = inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            if let Some(changes) = poke {
                changes.poke();
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests;
