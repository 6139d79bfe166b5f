//! The one clock seam.
//!
//! [`Clock`] reports wall-clock time derived from tokio's monotonic clock: it
//! records the wall time once, at creation, and adds the tokio time elapsed
//! since. In production that is the system clock; under
//! `tokio::time::pause()` wall time stands still and moves only when the test
//! advances tokio's clock, so certificate lifetimes, rotation deadlines and
//! expiry all follow paused time, and `tokio::time::sleep_until` deadlines
//! computed from a [`Clock`] agree with it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A source of wall-clock time that follows tokio's clock.
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Base>,
}

#[derive(Debug)]
struct Base {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    /// A clock starting at the current system time.
    #[allow(clippy::disallowed_methods)] // the one place that reads the system clock
    pub fn system() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A clock that reads `wall` now and advances with tokio's clock; for
    /// tests that need a known starting time.
    pub fn starting_at(wall: SystemTime) -> Self {
        Clock {
            inner: Arc::new(Base {
                wall,
                mono: Instant::now(),
            }),
        }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> SystemTime {
        self.inner.wall + self.inner.mono.elapsed()
    }

    /// The current time in whole seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        to_unix_seconds(self.now())
    }

    /// The tokio instant at which wall time `at` is reached (now, if past).
    pub fn instant_at(&self, at: SystemTime) -> Instant {
        let now_wall = self.now();
        let now = Instant::now();
        match at.duration_since(now_wall) {
            Ok(ahead) => now + ahead,
            Err(_) => now,
        }
    }

    /// Time left until `at`, zero when it has passed.
    pub fn until(&self, at: SystemTime) -> Duration {
        at.duration_since(self.now()).unwrap_or(Duration::ZERO)
    }
}

/// Seconds since the Unix epoch (negative before it).
pub fn to_unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The time `secs` seconds after the Unix epoch (clamped at the epoch).
pub fn from_unix_seconds(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = Clock::starting_at(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(clock.now(), start + Duration::from_secs(3600));
        assert_eq!(clock.unix_seconds(), 1_003_600);
        let deadline = start + Duration::from_secs(7200);
        assert_eq!(clock.until(deadline), Duration::from_secs(3600));
        let at = clock.instant_at(deadline);
        tokio::time::sleep_until(at).await;
        assert_eq!(clock.now(), deadline);
        assert_eq!(clock.until(start), Duration::ZERO);
    }

    #[test]
    fn unix_seconds_round_trip() {
        assert_eq!(to_unix_seconds(from_unix_seconds(42)), 42);
        assert_eq!(from_unix_seconds(-5), UNIX_EPOCH);
    }
}
