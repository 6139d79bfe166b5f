//! One kubelet request for many attestations.
//!
//! [`SharedPods`] sits in front of a [`PodSource`]: concurrent callers share
//! the one in-flight `GET /pods`, a successful list is reused for
//! `fresh_for` (the poll interval), and request starts are at least
//! `fresh_for` apart. Each list has a version; a caller that did not find
//! its pod asks for a list newer than the one it searched
//! ([`SharedPods::newer_than`]), which waits for the next request.
//!
//! Only the reduced [`PodList`] is kept, never the response body, so memory
//! stays bounded by one parsed list however many workloads attest at once.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use super::pods::PodList;
use super::K8sError;

/// Where pod lists come from: the kubelet, or a fake in tests.
#[async_trait]
pub trait PodSource: Send + Sync + Debug + 'static {
    /// Lists the node's pods.
    async fn fetch(&self) -> Result<PodList, K8sError>;
}

/// A pod list and its version (1 for the first fetched, then increasing).
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every fetch.
    pub version: u64,
    /// The pods.
    pub pods: PodList,
}

type Flight = Shared<BoxFuture<'static, Result<Arc<Snapshot>, K8sError>>>;

/// Single-flight, briefly cached access to a [`PodSource`].
#[derive(Debug, Clone)]
pub struct SharedPods {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: Arc<dyn PodSource>,
    fresh_for: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last successful list and when its request started.
    cached: Option<(Instant, Arc<Snapshot>)>,
    /// The request under way.
    in_flight: Option<Flight>,
    /// Version of the last request started.
    last_version: u64,
    /// When the last request started (or is due to start).
    last_start: Option<Instant>,
}

impl Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("cached_version", &self.cached.as_ref().map(|c| c.1.version))
            .field("in_flight", &self.in_flight.is_some())
            .field("last_version", &self.last_version)
            .finish()
    }
}

impl SharedPods {
    /// Shares `source`, reusing a list for `fresh_for`.
    pub fn new(source: Arc<dyn PodSource>, fresh_for: Duration) -> Self {
        SharedPods {
            inner: Arc::new(Inner {
                source,
                fresh_for,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// A pod list whose version is above `seen` (0: any): the cached one
    /// if fresh, else the result of the in-flight or a new request.
    pub async fn newer_than(&self, seen: u64) -> Result<Arc<Snapshot>, K8sError> {
        let flight = {
            let mut state = self.inner.lock();
            if let Some((started, snap)) = &state.cached {
                if snap.version > seen && Instant::now() < *started + self.inner.fresh_for {
                    return Ok(Arc::clone(snap));
                }
            }
            match &state.in_flight {
                // Versions are given at start: an in-flight request is
                // newer than any list a caller has seen.
                Some(flight) => flight.clone(),
                None => Inner::start(&self.inner, &mut state),
            }
        };
        flight.await
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a request (delayed to keep starts `fresh_for` apart).
    fn start(this: &Arc<Inner>, state: &mut State) -> Flight {
        let now = Instant::now();
        let at = state
            .last_start
            .map(|last| (last + this.fresh_for).max(now))
            .unwrap_or(now);
        state.last_start = Some(at);
        state.last_version += 1;
        let version = state.last_version;
        let inner = Arc::clone(this);
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let result = inner
                .source
                .fetch()
                .await
                .map(|pods| Arc::new(Snapshot { version, pods }));
            let mut state = inner.lock();
            state.in_flight = None;
            if let Ok(snap) = &result {
                state.cached = Some((at, Arc::clone(snap)));
            }
            result
        });
        let flight = async move {
            task.await.unwrap_or_else(|e| {
                Err(K8sError::Internal(format!(
                    "kubelet fetch task failed: {e}"
                )))
            })
        }
        .boxed()
        .shared();
        state.in_flight = Some(flight.clone());
        flight
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts fetches; each answers after `delay`.
    #[derive(Debug)]
    struct Counting {
        fetches: AtomicUsize,
        delay: Duration,
    }

    #[async_trait]
    impl PodSource for Counting {
        async fn fetch(&self) -> Result<PodList, K8sError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            Ok(PodList::default())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let source = Arc::new(Counting {
            fetches: AtomicUsize::new(0),
            delay: Duration::from_millis(50),
        });
        let shared = SharedPods::new(source.clone(), Duration::from_millis(500));
        let all = futures::future::join_all((0..100).map(|_| shared.newer_than(0))).await;
        assert!(all.iter().all(|r| r.as_ref().unwrap().version == 1));
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        // Still fresh: served from the cache.
        assert_eq!(shared.newer_than(0).await.unwrap().version, 1);
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        // A newer list is a new request, started a poll interval after the last.
        let before = Instant::now();
        assert_eq!(shared.newer_than(1).await.unwrap().version, 2);
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        assert!(Instant::now() - before >= Duration::from_millis(400));
        // Stale: refetched.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(shared.newer_than(0).await.unwrap().version, 3);
    }

    #[derive(Debug)]
    struct Failing(AtomicUsize);

    #[async_trait]
    impl PodSource for Failing {
        async fn fetch(&self) -> Result<PodList, K8sError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err(K8sError::Internal("kubelet down".into()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_shared_not_cached() {
        let source = Arc::new(Failing(AtomicUsize::new(0)));
        let shared = SharedPods::new(source.clone(), Duration::from_millis(500));
        let all = futures::future::join_all((0..10).map(|_| shared.newer_than(0))).await;
        assert!(all.iter().all(Result::is_err));
        assert_eq!(source.0.load(Ordering::SeqCst), 1);
        assert!(shared.newer_than(0).await.is_err());
        assert_eq!(source.0.load(Ordering::SeqCst), 2);
    }
}
