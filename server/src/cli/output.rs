//! Output shared by the admin subcommands: protobuf JSON in the shape
//! SPIRE's `-output json` prints, and the small text helpers of SPIRE's
//! pretty layouts.
//!
//! SPIRE's JSON is `protojson` with proto field names and unpopulated
//! fields emitted, with `null`s dropped, re-encoded compactly with sorted
//! keys and Go's HTML escaping, one document and a newline. 64-bit integers
//! are strings, bytes are standard base64, enums are names.

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

use super::admin_client::AdminClientError;

/// `msg` (whose protobuf full name is `full_name`, e.g.
/// `spire.api.types.Entry`) as one line of SPIRE-style JSON, without the
/// trailing newline.
pub fn proto_json<M: prost::Message>(msg: &M, full_name: &str) -> Result<String, AdminClientError> {
    let value = proto_json_value(msg, full_name)?;
    let mut out = Vec::new();
    write_sorted(&value, &mut out)?;
    let out = String::from_utf8(out).map_err(|e| AdminClientError::Output(e.to_string()))?;
    Ok(go_html_escape(out))
}

/// `msg` as a JSON value (proto field names, unpopulated scalars included,
/// absent messages as `null`, which [`write_sorted`] leaves out).
fn proto_json_value<M: prost::Message>(
    msg: &M,
    full_name: &str,
) -> Result<Value, AdminClientError> {
    let output = |reason: String| AdminClientError::Output(reason);
    static POOL: std::sync::OnceLock<Result<DescriptorPool, String>> = std::sync::OnceLock::new();
    let pool = POOL
        .get_or_init(|| {
            DescriptorPool::decode(spinel_proto::FILE_DESCRIPTOR_SET)
                .map_err(|e| format!("protobuf descriptors: {e}"))
        })
        .as_ref()
        .map_err(|e| output(e.clone()))?;
    let desc = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| output(format!("unknown protobuf message {full_name}")))?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .map_err(|e| output(format!("{full_name}: {e}")))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    let value = dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| output(format!("{full_name}: {e}")))?;
    Ok(value)
}

/// Prints `msg` as SPIRE's `-output json` does.
pub fn print_proto_json<M: prost::Message>(
    msg: &M,
    full_name: &str,
) -> Result<(), AdminClientError> {
    println!("{}", proto_json(msg, full_name)?);
    Ok(())
}

/// Writes a whole listing, `{"<field>":[<items>],"next_page_token":""}`,
/// exactly as [`print_proto_json`] prints the list response holding
/// `items`, but converting one item at a time: converting the whole
/// response at once held several copies of it (about 10 KB per entry, a
/// gigabyte for `entry show` of 100,000 entries). `field` must sort
/// before `next_page_token`, as keys are written in byte order.
///
/// `entry show` now writes its entries without the dynamic message
/// (`cli/entry/json.rs`); this is the reference its tests compare with.
#[cfg(test)]
pub fn write_listing_json<M: prost::Message>(
    out: &mut impl std::io::Write,
    field: &str,
    items: &[M],
    item_full_name: &str,
) -> Result<(), AdminClientError> {
    debug_assert!(field < "next_page_token");
    let io = |e: std::io::Error| AdminClientError::Output(e.to_string());
    write!(out, "{{\"{field}\":[").map_err(io)?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.write_all(b",").map_err(io)?;
        }
        out.write_all(proto_json(item, item_full_name)?.as_bytes())
            .map_err(io)?;
    }
    writeln!(out, "],\"next_page_token\":\"\"}}").map_err(io)?;
    out.flush().map_err(io)
}

/// Compact JSON with object keys in byte order, as Go's encoder writes
/// maps, leaving out `null`s (in objects and arrays). Written straight into
/// `out`: `entry show` of 100,000 entries writes millions of keys.
fn write_sorted(value: &Value, out: &mut Vec<u8>) -> Result<(), AdminClientError> {
    match value {
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> =
                map.iter().filter(|(_, v)| !v.is_null()).collect();
            // Already in order unless serde_json keeps insertion order.
            if !fields.is_sorted_by(|a, b| a.0 <= b.0) {
                fields.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push(b'{');
            for (i, (key, v)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                scalar(key, out)?;
                out.push(b':');
                write_sorted(v, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().filter(|v| !v.is_null()).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(item, out)?;
            }
            out.push(b']');
        }
        other => scalar(other, out)?,
    }
    Ok(())
}

fn scalar<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), AdminClientError> {
    serde_json::to_writer(out, value).map_err(|e| AdminClientError::Output(e.to_string()))
}

/// Go's `json.Encoder` escapes `<`, `>`, `&`, U+2028 and U+2029; in JSON
/// text they can only occur inside strings, so a plain replacement is exact.
pub(crate) fn go_html_escape(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// `prefix` followed by `singular` when `n` is 1, else `plural` (SPIRE's
/// "Found 1 entry" / "Found 2 entries").
pub fn pluralize(prefix: &str, singular: &str, plural: &str, n: usize) -> String {
    format!("{prefix}{}", if n == 1 { singular } else { plural })
}

/// Unix seconds as Go prints a UTC `time.Time`: `2024-05-01 12:00:00 +0000 UTC`.
pub fn go_utc_time(unix_seconds: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix_seconds) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{unix_seconds} (unix seconds)"),
    }
}

/// A string quoted as Go's `%q` does for printable text.
pub fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use spinel_proto::spire::api::server::entry::v1::{
        batch_create_entry_response, BatchCreateEntryResponse,
    };
    use spinel_proto::spire::api::types::{Entry, Selector, Spiffeid, Status};

    #[test]
    fn json_matches_spire_shape() {
        let resp = BatchCreateEntryResponse {
            results: vec![batch_create_entry_response::Result {
                status: Some(Status {
                    code: 0,
                    message: "OK".into(),
                }),
                entry: Some(Entry {
                    id: "e1".into(),
                    spiffe_id: Some(Spiffeid {
                        trust_domain: "example.org".into(),
                        path: "/a<b".into(),
                    }),
                    selectors: vec![Selector {
                        r#type: "unix".into(),
                        value: "uid:1000".into(),
                    }],
                    jwt_svid_ttl: 60,
                    ..Default::default()
                }),
            }],
        };
        let json = proto_json(&resp, "spire.api.server.entry.v1.BatchCreateEntryResponse").unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"results":[{"entry":{"admin":false,"created_at":"0","dns_names":[],"#,
                r#""downstream":false,"expires_at":"0","federates_with":[],"hint":"","id":"e1","#,
                r#""jwt_svid_ttl":60,"revision_number":"0","selectors":[{"type":"unix","value":"uid:1000"}],"#,
                r#""spiffe_id":{"path":"/a\u003cb","trust_domain":"example.org"},"store_svid":false,"#,
                r#""x509_svid_ttl":0},"status":{"code":0,"message":"OK"}}]}"#
            )
        );
    }

    #[test]
    fn unknown_message_name_is_an_error() {
        let err = proto_json(&Status::default(), "spire.api.types.Nope").unwrap_err();
        assert!(err.to_string().contains("spire.api.types.Nope"));
    }

    #[test]
    fn text_helpers() {
        assert_eq!(
            pluralize("Found 1 ", "entry", "entries", 1),
            "Found 1 entry"
        );
        assert_eq!(
            pluralize("Found 0 ", "entry", "entries", 0),
            "Found 0 entries"
        );
        assert_eq!(go_utc_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(go_utc_time(1_700_000_000), "2023-11-14 22:13:20 +0000 UTC");
    }
}
