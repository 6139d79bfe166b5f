//! When things happen: the sync interval, SVID renewal at half-life, the
//! backoff after failures and the reconnect probes while the servers are
//! down. Pure functions of their inputs (the jitter is passed in), so tests
//! pin them exactly.

use std::time::{Duration, SystemTime};

/// How often the agent syncs with the server.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait between retries when the server fails.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The first pause between reconnect probes while no server can be reached.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// The longest pause between reconnect probes: a server that comes back is
/// noticed within this (plus one TCP connect).
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How far servers backdate an SVID's NotBefore for clock skew (Spinel and
/// SPIRE: 10 s). Renewal counts the lifetime from the real issue time.
pub const ISSUE_BACKDATE: Duration = Duration::from_secs(10);

/// When an SVID valid from `not_before` to `not_after` should be renewed:
/// at half its lifetime, jittered by up to ±10% of it.
///
/// The lifetime is counted from when the SVID was issued: `not_before` plus
/// the server's backdate ([`ISSUE_BACKDATE`], at most half the validity).
/// Counted from the backdated `not_before`, an SVID living less than twice
/// the backdate would be due the moment it arrives and be re-signed on
/// every sync; for the usual TTLs the difference is seconds.
pub fn renewal_due_at(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let validity = not_after.duration_since(not_before).unwrap_or_default();
    let issued = not_before + ISSUE_BACKDATE.min(validity / 2);
    let life = not_after.duration_since(issued).unwrap_or_default();
    let jitter = jitter.clamp(-0.1, 0.1);
    let offset = life.as_secs_f64() * (0.5 + jitter);
    issued + Duration::from_secs_f64(offset.max(0.0))
}

/// The wait before retry number `attempt` (0-based): doubling from 1 s,
/// capped at [`MAX_BACKOFF`], with up to 20% jitter removed.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = Duration::from_secs(1u64 << attempt.min(5)).min(MAX_BACKOFF);
    base.mul_f64(1.0 - jitter.clamp(0.0, 0.2))
}

/// The pause before reconnect probe number `probe` (0-based): doubling
/// from [`PROBE_INTERVAL`], capped at [`MAX_PROBE_INTERVAL`], with up to
/// half removed by `jitter` so that agents waiting for the same server do
/// not all knock at once.
pub fn probe_interval(probe: u32, jitter: f64) -> Duration {
    let base = PROBE_INTERVAL
        .saturating_mul(1u32 << probe.min(8))
        .min(MAX_PROBE_INTERVAL);
    base.mul_f64(1.0 - jitter.clamp(0.0, 0.5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn renewal_at_half_life_with_bounded_jitter() {
        // Issued at 1010 with NotBefore backdated 10 s: 100 s of life left.
        let nb = UNIX_EPOCH + Duration::from_secs(1000);
        let issued = nb + ISSUE_BACKDATE;
        let na = issued + Duration::from_secs(100);
        assert_eq!(
            renewal_due_at(nb, na, 0.0),
            issued + Duration::from_secs(50)
        );
        assert_eq!(
            renewal_due_at(nb, na, 0.5),
            issued + Duration::from_secs(60)
        );
        assert_eq!(
            renewal_due_at(nb, na, -0.5),
            issued + Duration::from_secs(40)
        );
    }

    #[test]
    fn short_svids_are_not_due_on_arrival() {
        // An 8 s SVID backdated 10 s (validity 18 s: the backdate counted is
        // capped at 9 s) is due 3.5 s after its issue at 1010, not at once.
        let nb = UNIX_EPOCH + Duration::from_secs(1000);
        let na = nb + ISSUE_BACKDATE + Duration::from_secs(8);
        assert_eq!(
            renewal_due_at(nb, na, 0.0),
            nb + Duration::from_millis(13_500)
        );
        // Not backdated and shorter than the backdate: still half of it.
        let na = nb + Duration::from_secs(4);
        assert_eq!(renewal_due_at(nb, na, 0.0), nb + Duration::from_secs(3));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(30, 0.0), MAX_BACKOFF);
        assert!(backoff(2, 0.2) >= Duration::from_millis(3200));
    }

    #[test]
    fn probes_double_to_a_one_second_cap_with_jitter() {
        assert_eq!(probe_interval(0, 0.0), PROBE_INTERVAL);
        assert_eq!(probe_interval(1, 0.0), Duration::from_millis(500));
        assert_eq!(probe_interval(2, 0.0), MAX_PROBE_INTERVAL);
        assert_eq!(probe_interval(u32::MAX, 0.0), MAX_PROBE_INTERVAL);
        assert_eq!(probe_interval(9, 0.5), Duration::from_millis(500));
        assert_eq!(probe_interval(9, 7.0), Duration::from_millis(500));
        assert_eq!(probe_interval(9, -1.0), MAX_PROBE_INTERVAL);
    }
}
