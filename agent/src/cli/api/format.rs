//! Output helpers of the `api` commands: Go's time spelling (SPIRE's CLI
//! prints Go values) and protobuf values as JSON. Certificates are parsed
//! by `workload_client::parse_certs`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Number, Value};

use crate::workload_client::Cert;

/// Formats Unix seconds as Go prints a `time.Time` in UTC:
/// `2006-01-02 15:04:05 +0000 UTC`.
pub(crate) fn go_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Both are in range by construction (1..=12 and 1..=31).
    (y, m as u32, d as u32)
}

/// NotBefore and NotAfter of a certificate, as Go prints them.
pub(crate) fn validity(cert: &Cert<'_>) -> (String, String) {
    let v = cert.parsed.validity();
    (
        go_time(v.not_before.timestamp()),
        go_time(v.not_after.timestamp()),
    )
}

/// Bytes as protobuf JSON encodes them (standard base64).
pub(crate) fn bytes_json(b: &[u8]) -> Value {
    Value::String(STANDARD.encode(b))
}

/// A `google.protobuf.Struct` as a JSON object.
pub(crate) fn struct_json(s: &prost_types::Struct) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect::<Map<_, _>>(),
    )
}

fn value_json(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => number_json(*n),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_json).collect()),
        Some(Kind::StructValue(s)) => struct_json(s),
    }
}

/// Integral numbers print without a fraction, as Go's JSON does.
fn number_json(n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() < EXACT {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_times() {
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_time(1_700_000_000), "2023-11-14 22:13:20 +0000 UTC");
        assert_eq!(go_time(951_782_400), "2000-02-29 00:00:00 +0000 UTC");
        assert_eq!(go_time(-1), "1969-12-31 23:59:59 +0000 UTC");
    }

    #[test]
    fn integral_numbers() {
        assert_eq!(number_json(1.7e9).to_string(), "1700000000");
        assert_eq!(number_json(0.5).to_string(), "0.5");
    }
}
