//! Tests of the notify layer, with the real method table and a fake inner
//! service.

use std::convert::Infallible;
use std::time::Duration;

use tower::{service_fn, ServiceExt};

use super::*;
use crate::api::method;

/// What the fake inner service does with a call.
#[derive(Clone, Copy)]
enum Outcome {
    /// Answers `grpc-status: 0`.
    Ok,
    /// Answers with a gRPC error status (a refused call).
    GrpcError,
    /// Fails without an answer.
    Fail,
}

/// Calls `path` through the layer over an inner service behaving as
/// `outcome`; returns whether `changes` was poked.
async fn poked(path: &str, outcome: Outcome) -> bool {
    let changes = Arc::new(Changes::new());
    let inner = service_fn(move |_: http::Request<()>| async move {
        let status = match outcome {
            Outcome::Ok => "0",
            Outcome::GrpcError => "7",
            Outcome::Fail => return Err("connection lost"),
        };
        Ok::<_, &'static str>(
            http::Response::builder()
                .header("grpc-status", status)
                .body(())
                .unwrap_or_default(),
        )
    });
    let service = NotifyLayer::new(changes.clone(), crate::api::mutates).layer(inner);
    let request = http::Request::builder()
        .uri(format!("http://localhost{path}"))
        .body(())
        .unwrap_or_default();
    let _ = service.oneshot(request).await;
    // A poke stores a permit: `notified` returns at once if there was one.
    tokio::time::timeout(Duration::from_millis(50), changes.poked.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn wakes_on_a_mutating_success() {
    assert!(poked(method::BATCH_CREATE_ENTRY, Outcome::Ok).await);
    assert!(poked(method::BAN_AGENT, Outcome::Ok).await);
    assert!(poked(method::TAINT_X509_AUTHORITY, Outcome::Ok).await);
}

#[tokio::test]
async fn does_not_wake_on_a_read() {
    assert!(!poked(method::LIST_ENTRIES, Outcome::Ok).await);
    assert!(!poked(method::BATCH_NEW_X509_SVID, Outcome::Ok).await);
    assert!(!poked(method::WATCH_CHANGES, Outcome::Ok).await);
    assert!(!poked("/spire.api.server.entry.v1.Entry/NoSuchMethod", Outcome::Ok).await);
}

#[tokio::test]
async fn does_not_wake_on_a_failure() {
    assert!(!poked(method::BATCH_CREATE_ENTRY, Outcome::Fail).await);
}

/// As the audit layer did before: an answered call pokes whatever its
/// gRPC status.
#[tokio::test]
async fn wakes_on_a_mutating_call_answered_with_an_error_status() {
    assert!(poked(method::BAN_AGENT, Outcome::GrpcError).await);
}

#[tokio::test]
async fn the_layer_passes_the_answer_through() {
    let inner = service_fn(|_: http::Request<()>| async {
        Ok::<_, Infallible>(http::Response::new("answer"))
    });
    let service = NotifyLayer::new(Arc::new(Changes::new()), |_| true).layer(inner);
    let response = service
        .oneshot(http::Request::new(()))
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(*response.body(), "answer");
}
