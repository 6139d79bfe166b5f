//! The wait after a failed sync round ([`wait_to_retry`]) and what decides
//! its kind ([`probing`]).
//!
//! Two failures look alike (both are `Unavailable`) and need opposite
//! answers:
//! - *no server could be reached* (connection refused, connect timeout,
//!   nothing resolved): nothing is loaded by asking again, so a cheap TCP
//!   probe runs every [`probe_interval`] (at most 1 s, jittered) and the
//!   round is retried as soon as one finds a server listening. A server
//!   back from a 30 s outage is noticed within about a second, not after
//!   the rest of a 30 s backoff;
//! - *a server answered and failed* (`Unavailable`, `ResourceExhausted`,
//!   anything from a live server) or every server failed the TLS
//!   handshake: the full,
//!   growing [`backoff`](crate::manager::timing::backoff) applies, so an
//!   overloaded server is not hammered.
//!
//! The connect outcome comes from the [`ServerPool`](crate::client::ServerPool)
//! ([`Reach`]), which saw the attempt; the status alone cannot tell.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Code, Status};

use crate::client::Reach;
use crate::manager::timing::probe_interval;

/// How a wait after a failed round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The whole backoff passed.
    BackoffElapsed,
    /// A probe found a server listening: retry now.
    ServerBack,
}

/// Whether the wait after a round that failed with `status` should probe
/// for the servers' return: only when the last connect found none of them
/// listening.
pub(crate) fn probing(status: &Status, reach: Reach) -> bool {
    reach == Reach::Unreachable
        && matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        )
}

/// Waits `backoff`. When `probing`, calls `probe` after every
/// [`probe_interval`] (jittered by `jitter()`, in [0, 0.5]) and returns
/// as soon as one says a server is listening.
pub(crate) async fn wait_to_retry<P, F>(
    backoff: Duration,
    probing: bool,
    mut probe: P,
    mut jitter: impl FnMut() -> f64,
) -> Waited
where
    P: FnMut() -> F,
    F: Future<Output = bool>,
{
    let deadline = Instant::now() + backoff;
    if !probing {
        tokio::time::sleep_until(deadline).await;
        return Waited::BackoffElapsed;
    }
    let mut n = 0u32;
    loop {
        let next = Instant::now() + probe_interval(n, jitter());
        if next >= deadline {
            tokio::time::sleep_until(deadline).await;
            return Waited::BackoffElapsed;
        }
        tokio::time::sleep_until(next).await;
        if probe().await {
            return Waited::ServerBack;
        }
        n = n.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::manager::timing::{backoff, MAX_BACKOFF, MAX_PROBE_INTERVAL};

    /// A fake server: listening from `back_at` (time since the test
    /// started) on; counts the probes.
    fn server(
        back_at: Option<Duration>,
    ) -> (
        impl FnMut() -> std::future::Ready<bool> + Clone,
        Arc<AtomicU32>,
    ) {
        let start = Instant::now();
        let probes = Arc::new(AtomicU32::new(0));
        let counter = probes.clone();
        let probe = move || {
            counter.fetch_add(1, Ordering::Relaxed);
            std::future::ready(back_at.is_some_and(|at| start.elapsed() >= at))
        };
        (probe, probes)
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_back_mid_backoff_is_noticed_within_the_probe_cap() {
        // 31 s of outage: the backoff has reached its 30 s cap.
        let (probe, _) = server(Some(Duration::from_secs(31)));
        let start = Instant::now();
        let mut waits = 0u32;
        let mut failures = 0u32;
        loop {
            let wait = backoff(failures, 0.0);
            match wait_to_retry(wait, true, probe.clone(), || 0.0).await {
                Waited::ServerBack => break,
                Waited::BackoffElapsed => failures += 1,
            }
            waits += 1;
            assert!(waits < 10, "the server's return was never noticed");
        }
        let noticed = start.elapsed();
        assert!(noticed >= Duration::from_secs(31), "{noticed:?}");
        assert!(
            noticed <= Duration::from_secs(31) + MAX_PROBE_INTERVAL,
            "{noticed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn probes_are_spaced_and_the_backoff_still_ends_the_wait() {
        let (probe, probes) = server(None);
        let start = Instant::now();
        let waited = wait_to_retry(MAX_BACKOFF, true, probe, || 0.0).await;
        assert_eq!(waited, Waited::BackoffElapsed);
        assert_eq!(start.elapsed(), MAX_BACKOFF);
        // At 0.25 s and 0.75 s, then one a second (1.75 s ... 29.75 s).
        assert_eq!(probes.load(Ordering::Relaxed), 31);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_spreads_probes_but_never_past_the_cap() {
        let (probe, probes) = server(None);
        let waited = wait_to_retry(Duration::from_secs(10), true, probe, || 0.5).await;
        assert_eq!(waited, Waited::BackoffElapsed);
        // At 0.125 s and 0.375 s, then every half second (0.875 s ...
        // 9.875 s): the most jitter halves every pause.
        assert_eq!(probes.load(Ordering::Relaxed), 21);
    }

    #[tokio::test(start_paused = true)]
    async fn a_live_server_that_failed_gets_the_whole_backoff_unprobed() {
        let (probe, probes) = server(Some(Duration::ZERO));
        let start = Instant::now();
        let waited = wait_to_retry(Duration::from_secs(16), false, probe, || 0.0).await;
        assert_eq!(waited, Waited::BackoffElapsed);
        assert_eq!(start.elapsed(), Duration::from_secs(16));
        assert_eq!(probes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn only_an_unreachable_server_is_probed() {
        let refused = Status::unavailable("tcp connect error: Connection refused");
        assert!(probing(&refused, Reach::Unreachable));
        assert!(probing(&Status::deadline_exceeded("t"), Reach::Unreachable));
        // The same code from a server that was reached: it answered.
        assert!(!probing(&refused, Reach::Connected));
        assert!(!probing(&refused, Reach::Unknown));
        // TCP worked, TLS did not: someone is up.
        assert!(!probing(&refused, Reach::HandshakeFailed));
        // An overloaded or refusing server never is probed.
        for status in [
            Status::resource_exhausted("overloaded"),
            Status::permission_denied("banned"),
            Status::internal("bug"),
        ] {
            assert!(!probing(&status, Reach::Unreachable), "{status:?}");
            assert!(!probing(&status, Reach::Connected), "{status:?}");
        }
    }
}
