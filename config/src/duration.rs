//! Go's duration syntax, as SPIRE uses it for TTLs and intervals.
//!
//! [`parse_go_duration`] reads what Go's `time.ParseDuration` reads
//! (`"300ms"`, `"1.5h"`, `"2h45m"`, `"90s"`), with the same rounding and
//! limits, but rejects negative durations since a [`Duration`] cannot hold
//! them. [`format_go_duration`] writes what Go's `Duration.String` writes
//! (`"1h0m0s"`, `"5m0s"`, `"1.5s"`, `"300ms"`).

use std::time::Duration;

/// Nanoseconds in each unit Go knows, longest spellings first.
const UNITS: &[(&str, u64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // U+00B5 micro sign
    ("\u{3bc}s", 1_000), // U+03BC Greek small letter mu
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The largest duration Go can represent, in nanoseconds (`1<<63 - 1`).
const MAX_NANOS: u64 = i64::MAX as u64;

/// Errors of [`parse_go_duration`]; the messages follow Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is not a duration at all (empty, stray characters...).
    #[error("invalid duration {input:?}; expected a number and a unit, such as \"90s\", \"5m\" or \"1h30m\"")]
    Invalid {
        /// The text given.
        input: String,
    },
    /// A number has no unit after it (`"30"`).
    #[error("missing unit in duration {input:?}; valid units are ns, us, ms, s, m, h")]
    MissingUnit {
        /// The text given.
        input: String,
    },
    /// A unit is not one Go knows (`"1d"`).
    #[error("unknown unit {unit:?} in duration {input:?}; valid units are ns, us, ms, s, m, h")]
    UnknownUnit {
        /// The text given.
        input: String,
        /// The unknown unit.
        unit: String,
    },
    /// The duration is negative (`"-1h"`).
    #[error("negative duration {input:?} is not allowed")]
    Negative {
        /// The text given.
        input: String,
    },
    /// The duration is longer than Go can represent (about 292 years).
    #[error("duration {input:?} is too long")]
    Overflow {
        /// The text given.
        input: String,
    },
}

/// Parses a Go duration string such as `"1h30m"` or `"1.5s"`.
///
/// ```
/// use std::time::Duration;
/// use spinel_config::duration::parse_go_duration;
///
/// assert_eq!(parse_go_duration("2h45m").unwrap(), Duration::from_secs(9900));
/// assert_eq!(parse_go_duration("300ms").unwrap(), Duration::from_millis(300));
/// assert!(parse_go_duration("-1h").is_err());
/// ```
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: input.to_owned(),
    };
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    let (negative, mut s) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s.starts_with('.') || s.starts_with(|c: char| c.is_ascii_digit())) {
            return Err(invalid());
        }
        let (whole, rest) = leading_int(s).ok_or_else(invalid)?;
        let has_whole = rest.len() != s.len();
        s = rest;
        let (mut fraction, mut scale, mut has_fraction) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let (f, sc, after) = leading_fraction(rest);
            (fraction, scale, has_fraction) = (f, sc, after.len() != rest.len());
            s = after;
        }
        if !has_whole && !has_fraction {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
            });
        }
        let Some(&(_, nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            });
        };
        if whole > (1 << 63) / nanos {
            return Err(overflow());
        }
        let mut value = whole * nanos;
        if fraction > 0 {
            // Go computes the fractional part in floating point, and so do we
            // so that `1.1s` rounds exactly as in SPIRE.
            let extra = (fraction as f64 * (nanos as f64 / scale)) as u64;
            value = value
                .checked_add(extra)
                .filter(|v| *v <= 1 << 63)
                .ok_or_else(overflow)?;
        }
        total = total
            .checked_add(value)
            .filter(|v| *v <= 1 << 63)
            .ok_or_else(overflow)?;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative {
            input: input.to_owned(),
        });
    }
    if total > MAX_NANOS {
        return Err(overflow());
    }
    Ok(Duration::from_nanos(total))
}

/// Go's `leadingInt`: the decimal number at the start of `s` and the rest;
/// `None` when it exceeds `1<<63`.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut value: u64 = 0;
    for b in s[..digits].bytes() {
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if value > 1 << 63 {
            return None;
        }
    }
    Some((value, &s[digits..]))
}

/// Go's `leadingFraction`: the digits at the start of `s` as a numerator,
/// the matching power of ten, and the rest. Digits beyond what fits are
/// ignored, as in Go.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (mut value, mut scale, mut overflowed) = (0u64, 1f64, false);
    for b in s[..digits].bytes() {
        if overflowed {
            continue;
        }
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
        {
            Some(v) if v <= 1 << 63 => {
                value = v;
                scale *= 10.0;
            }
            _ => overflowed = true,
        }
    }
    (value, scale, &s[digits..])
}

/// Formats `d` as Go's `Duration.String` does.
///
/// ```
/// use std::time::Duration;
/// use spinel_config::duration::format_go_duration;
///
/// assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
/// assert_eq!(format_go_duration(Duration::from_secs(300)), "5m0s");
/// assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
/// assert_eq!(format_go_duration(Duration::ZERO), "0s");
/// ```
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}\u{b5}s", fraction(nanos, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fraction(nanos, 6));
    }
    let seconds = fraction(nanos % 60_000_000_000, 9);
    let minutes = nanos / 60_000_000_000;
    if minutes == 0 {
        return format!("{seconds}s");
    }
    let hours = minutes / 60;
    if hours == 0 {
        return format!("{minutes}m{seconds}s");
    }
    format!("{hours}h{}m{seconds}s", minutes % 60)
}

/// `value / 10^precision` in decimal, without trailing zeros.
fn fraction(value: u128, precision: u32) -> String {
    let scale = 10u128.pow(precision);
    let (whole, part) = (value / scale, value % scale);
    if part == 0 {
        return whole.to_string();
    }
    let digits = format!("{part:0width$}", width = precision as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Duration {
        parse_go_duration(s).unwrap()
    }

    #[test]
    fn parses_go_examples() {
        assert_eq!(parse("0"), Duration::ZERO);
        assert_eq!(parse("-0"), Duration::ZERO);
        assert_eq!(parse("+5s"), Duration::from_secs(5));
        assert_eq!(parse("300ms"), Duration::from_millis(300));
        assert_eq!(parse("1.5h"), Duration::from_secs(5400));
        assert_eq!(parse("2h45m"), Duration::from_secs(9900));
        assert_eq!(parse("1h30m"), Duration::from_secs(5400));
        assert_eq!(parse("90s"), Duration::from_secs(90));
        assert_eq!(parse("24h"), Duration::from_secs(86_400));
        assert_eq!(parse("1.s"), Duration::from_secs(1));
        assert_eq!(parse(".5s"), Duration::from_millis(500));
        assert_eq!(parse("10us"), Duration::from_micros(10));
        assert_eq!(parse("10\u{b5}s"), Duration::from_micros(10));
        assert_eq!(parse("10\u{3bc}s"), Duration::from_micros(10));
        assert_eq!(parse("7ns"), Duration::from_nanos(7));
        assert_eq!(
            parse("1h1m1s1ms1us1ns"),
            Duration::from_nanos(3_661_001_001_001)
        );
        assert_eq!(
            parse("0.3333333333333333333h"),
            Duration::from_nanos(1_200_000_000_000)
        );
        assert_eq!(
            parse("9223372036854775807ns"),
            Duration::from_nanos(MAX_NANOS)
        );
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "", "-", "+", ".", "s", "1", "1.5", "1h 2m", "h1", "1x", "1d", "1e9s", " 1s",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(matches!(
            parse_go_duration("30"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert_eq!(
            parse_go_duration("3d"),
            Err(DurationError::UnknownUnit {
                input: "3d".into(),
                unit: "d".into()
            })
        );
        assert!(matches!(
            parse_go_duration("9223372036854775808ns"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_go_duration("3000000h"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn rejects_negative_durations() {
        assert_eq!(
            parse_go_duration("-1h"),
            Err(DurationError::Negative {
                input: "-1h".into()
            })
        );
        assert_eq!(
            parse_go_duration("-1h").unwrap_err().to_string(),
            "negative duration \"-1h\" is not allowed"
        );
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1_100), "1.1\u{b5}s"),
            (Duration::from_micros(2_200), "2.2ms"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3_600), "1h0m0s"),
            (Duration::from_secs(9_900), "2h45m0s"),
            (Duration::from_nanos(3_661_001_001_001), "1h1m1.001001001s"),
            (Duration::from_nanos(MAX_NANOS), "2562047h47m16.854775807s"),
        ];
        for (d, want) in cases {
            assert_eq!(format_go_duration(*d), *want);
        }
    }

    #[test]
    fn format_then_parse_round_trips() {
        for secs in [1, 59, 60, 61, 3_599, 3_600, 86_400, 123_456] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format_go_duration(d)), d);
        }
    }
}
