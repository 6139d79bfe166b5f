//! `entry show -output json` of many entries: each entry written straight
//! as the bytes [`crate::cli::output::proto_json`] makes of it (protojson
//! with proto field names and defaults, keys in byte order, `null`s left
//! out, 64-bit integers as strings, Go's HTML escaping), without going
//! through a dynamic message and a JSON value per entry. That generic path
//! took about 13 us an entry, most of the CLI's time for 100,000 entries.
//!
//! The tests compare the two paths byte for byte; a field added to
//! `spire.api.types.Entry` must be added here too, and the tests fail
//! until it is.

use std::io::Write;

use spinel_proto::spire::api::types::{Entry, Spiffeid};

use crate::cli::admin_client::AdminClientError;
use crate::cli::output::go_html_escape;

/// Writes `{"entries":[...],"next_page_token":""}` and a newline, as
/// `write_listing_json` does for `spire.api.types.Entry` items.
pub fn write_entries_json(out: &mut impl Write, entries: &[Entry]) -> Result<(), AdminClientError> {
    let io = |e: std::io::Error| AdminClientError::Output(e.to_string());
    out.write_all(b"{\"entries\":[").map_err(io)?;
    let mut buf = Vec::with_capacity(512);
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.write_all(b",").map_err(io)?;
        }
        buf.clear();
        entry_json(entry, &mut buf)?;
        out.write_all(&buf).map_err(io)?;
    }
    out.write_all(b"],\"next_page_token\":\"\"}\n")
        .map_err(io)?;
    out.flush().map_err(io)
}

/// One entry's JSON (no newline), escaped as Go's encoder escapes.
pub fn entry_json(e: &Entry, out: &mut Vec<u8>) -> Result<(), AdminClientError> {
    let start = out.len();
    out.push(b'{');
    if let Some(attrs) = &e.additional_attributes {
        out.extend_from_slice(b"\"additional_attributes\":{\"disable_x509_svid_prefetch\":");
        boolean(out, attrs.disable_x509_svid_prefetch);
        out.extend_from_slice(b",\"jwt_svid_include_jti\":");
        boolean(out, attrs.jwt_svid_include_jti);
        out.extend_from_slice(b"},");
    }
    out.extend_from_slice(b"\"admin\":");
    boolean(out, e.admin);
    out.extend_from_slice(b",\"created_at\":");
    int64(out, e.created_at);
    out.extend_from_slice(b",\"dns_names\":");
    strings(out, &e.dns_names)?;
    out.extend_from_slice(b",\"downstream\":");
    boolean(out, e.downstream);
    out.extend_from_slice(b",\"expires_at\":");
    int64(out, e.expires_at);
    out.extend_from_slice(b",\"federates_with\":");
    strings(out, &e.federates_with)?;
    out.extend_from_slice(b",\"hint\":");
    string(out, &e.hint)?;
    out.extend_from_slice(b",\"id\":");
    string(out, &e.id)?;
    out.extend_from_slice(b",\"jwt_svid_ttl\":");
    int32(out, e.jwt_svid_ttl);
    if let Some(id) = &e.parent_id {
        out.extend_from_slice(b",\"parent_id\":");
        spiffe_id(out, id)?;
    }
    out.extend_from_slice(b",\"revision_number\":");
    int64(out, e.revision_number);
    out.extend_from_slice(b",\"selectors\":[");
    for (i, s) in e.selectors.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"type\":");
        string(out, &s.r#type)?;
        out.extend_from_slice(b",\"value\":");
        string(out, &s.value)?;
        out.push(b'}');
    }
    out.push(b']');
    if let Some(id) = &e.spiffe_id {
        out.extend_from_slice(b",\"spiffe_id\":");
        spiffe_id(out, id)?;
    }
    out.extend_from_slice(b",\"store_svid\":");
    boolean(out, e.store_svid);
    out.extend_from_slice(b",\"x509_svid_ttl\":");
    int32(out, e.x509_svid_ttl);
    out.push(b'}');
    escape_html_from(out, start)
}

fn boolean(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// protojson writes 64-bit integers as strings.
fn int64(out: &mut Vec<u8>, v: i64) {
    let _ = write!(out, "\"{v}\"");
}

fn int32(out: &mut Vec<u8>, v: i32) {
    let _ = write!(out, "{v}");
}

fn string(out: &mut Vec<u8>, s: &str) -> Result<(), AdminClientError> {
    serde_json::to_writer(&mut *out, s).map_err(|e| AdminClientError::Output(e.to_string()))
}

fn strings(out: &mut Vec<u8>, items: &[String]) -> Result<(), AdminClientError> {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s)?;
    }
    out.push(b']');
    Ok(())
}

fn spiffe_id(out: &mut Vec<u8>, id: &Spiffeid) -> Result<(), AdminClientError> {
    out.extend_from_slice(b"{\"path\":");
    string(out, &id.path)?;
    out.extend_from_slice(b",\"trust_domain\":");
    string(out, &id.trust_domain)?;
    out.push(b'}');
    Ok(())
}

/// Applies Go's HTML escaping to what was written from `start` on (only
/// when one of its characters occurs, which is rare).
fn escape_html_from(out: &mut Vec<u8>, start: usize) -> Result<(), AdminClientError> {
    let written = out.get(start..).unwrap_or_default();
    let special = written
        .iter()
        .any(|&b| matches!(b, b'<' | b'>' | b'&' | 0xE2));
    if !special {
        return Ok(());
    }
    let text =
        String::from_utf8(written.to_vec()).map_err(|e| AdminClientError::Output(e.to_string()))?;
    let escaped = go_html_escape(text);
    out.truncate(start);
    out.extend_from_slice(escaped.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::write_listing_json;
    use spinel_proto::spire::api::types::{entry::AdditionalAttributes, Selector};

    fn id(td: &str, path: &str) -> Option<Spiffeid> {
        Some(Spiffeid {
            trust_domain: td.into(),
            path: path.into(),
        })
    }

    fn samples() -> Vec<Entry> {
        let full = Entry {
            id: "0a1b-<&>-\u{2028}\u{2029}-\"quote\"\\".into(),
            spiffe_id: id("example.org", "/w/é/ünïcode/\u{1F600}"),
            parent_id: id("example.org", "/spire/agent/x509pop/abc"),
            selectors: vec![
                Selector {
                    r#type: "unix".into(),
                    value: "uid:1000".into(),
                },
                Selector {
                    r#type: "k8s".into(),
                    value: "ns:<a&b>\t\n\u{0001}\u{007f}".into(),
                },
            ],
            x509_svid_ttl: -1,
            federates_with: vec!["a.org".into(), "b<c>.org".into()],
            admin: true,
            downstream: true,
            expires_at: i64::MAX,
            dns_names: vec!["a.example.org".into(), String::new()],
            revision_number: i64::MIN,
            store_svid: true,
            jwt_svid_ttl: i32::MAX,
            hint: "hint & more".into(),
            created_at: 1_700_000_000,
            additional_attributes: Some(AdditionalAttributes {
                disable_x509_svid_prefetch: true,
                jwt_svid_include_jti: false,
            }),
        };
        let defaults_attrs = Entry {
            additional_attributes: Some(AdditionalAttributes::default()),
            ..Default::default()
        };
        let typical = Entry {
            id: "4c7a9a4e-1f7e-4c0b-9f5e-0c1d2e3f4a5b".into(),
            spiffe_id: id("example.org", "/bench/0000001"),
            parent_id: id("example.org", "/spire/agent/join_token/bench"),
            selectors: vec![Selector {
                r#type: "unix".into(),
                value: "uid:10001".into(),
            }],
            x509_svid_ttl: 3600,
            jwt_svid_ttl: 300,
            created_at: 1_764_000_000,
            ..Default::default()
        };
        vec![Entry::default(), full, defaults_attrs, typical]
    }

    #[test]
    fn matches_the_generic_protojson_writer() {
        for entry in samples() {
            let mut fast = Vec::new();
            entry_json(&entry, &mut fast).unwrap();
            let generic = crate::cli::output::proto_json(&entry, "spire.api.types.Entry").unwrap();
            assert_eq!(String::from_utf8(fast).unwrap(), generic, "{entry:?}");
        }
    }

    #[test]
    fn listing_matches_the_generic_listing() {
        let entries = samples();
        for items in [&entries[..0], &entries[..1], &entries[..]] {
            let mut fast = Vec::new();
            write_entries_json(&mut fast, items).unwrap();
            let mut generic = Vec::new();
            write_listing_json(&mut generic, "entries", items, "spire.api.types.Entry").unwrap();
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(generic).unwrap()
            );
        }
    }
}
