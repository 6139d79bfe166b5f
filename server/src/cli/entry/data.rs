//! Entry files: `-data FILE` (or `-data -` for stdin) of `entry create` and
//! `entry update` in SPIRE's `RegistrationEntries` JSON, and the
//! `{"ids": [...]}` file of `entry delete -file`.
//!
//! SPIRE's format:
//!
//! ```json
//! {"entries": [{"spiffe_id": "spiffe://example.org/web",
//!               "parent_id": "spiffe://example.org/spire/agent/join_token/t",
//!               "selectors": [{"type": "unix", "value": "uid:1000"}],
//!               "x509_svid_ttl": 3600, "dns_names": ["web"]}]}
//! ```
//!
//! Unlike SPIRE, a misspelt key is an error naming it rather than silently
//! ignored.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use spinel_proto::spire::api::types::{entry::AdditionalAttributes, Entry, Selector};

use crate::cli::admin_client::{id_to_proto, parse_spiffe_id, parse_td, AdminClientError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesFile {
    #[serde(default)]
    entries: Vec<EntryJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryJson {
    #[serde(default)]
    selectors: Vec<SelectorJson>,
    #[serde(default)]
    parent_id: String,
    #[serde(default)]
    spiffe_id: String,
    #[serde(default, alias = "ttl")]
    x509_svid_ttl: i32,
    #[serde(default)]
    federates_with: Vec<String>,
    #[serde(default)]
    entry_id: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    downstream: bool,
    #[serde(default, rename = "entryExpiry", alias = "entry_expiry")]
    entry_expiry: i64,
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    revision_number: i64,
    #[serde(default)]
    store_svid: bool,
    #[serde(default)]
    jwt_svid_ttl: i32,
    #[serde(default)]
    hint: String,
    #[serde(default)]
    created_at: i64,
    #[serde(default)]
    additional_attributes: Option<AttributesJson>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorJson {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributesJson {
    #[serde(default)]
    disable_x509_svid_prefetch: bool,
    #[serde(default)]
    jwt_svid_include_jti: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteFile {
    #[serde(default)]
    ids: Vec<String>,
}

/// Reads `path` (`-` for `stdin`) whole.
pub fn read_input(
    flag: &str,
    path: &Path,
    stdin: &mut dyn Read,
) -> Result<Vec<u8>, AdminClientError> {
    let mut buf = Vec::new();
    let result = if path == Path::new("-") {
        stdin.read_to_end(&mut buf).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut buf).map(|_| ()))
    };
    result.map_err(|e| AdminClientError::Input {
        source_name: source_name(flag, path),
        reason: e.to_string(),
    })?;
    Ok(buf)
}

fn source_name(flag: &str, path: &Path) -> String {
    if path == Path::new("-") {
        format!("{flag} - (stdin)")
    } else {
        format!("{flag} {}", path.display())
    }
}

/// Parses SPIRE's entries JSON into API entries, checking IDs, selectors
/// and trust domains as the flags are checked.
pub fn parse_entries(flag: &str, path: &Path, json: &[u8]) -> Result<Vec<Entry>, AdminClientError> {
    let bad = |reason: String| AdminClientError::Input {
        source_name: source_name(flag, path),
        reason,
    };
    let file: EntriesFile = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    if file.entries.is_empty() {
        return Err(bad("no entries (expected {\"entries\": [...]})".to_owned()));
    }
    file.entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| convert(e).map_err(|reason| bad(format!("entry {}: {reason}", i + 1))))
        .collect()
}

fn convert(e: EntryJson) -> Result<Entry, String> {
    let spiffe_id =
        parse_spiffe_id(&e.spiffe_id).map_err(|err| format!("invalid SPIFFE ID: {err}"))?;
    let parent_id =
        parse_spiffe_id(&e.parent_id).map_err(|err| format!("invalid parent ID: {err}"))?;
    let selectors = e
        .selectors
        .into_iter()
        .map(|s| {
            spinel_spiffe::Selector::new(s.kind, s.value)
                .map(|s| Selector {
                    r#type: s.kind,
                    value: s.value,
                })
                .map_err(|err| err.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    if e.x509_svid_ttl < 0 || e.jwt_svid_ttl < 0 {
        return Err("TTLs must not be negative".to_owned());
    }
    let federates_with = e
        .federates_with
        .iter()
        .map(|td| {
            parse_td(td)
                .map(|td| td.to_string())
                .map_err(|err| format!("invalid federated trust domain: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Entry {
        id: e.entry_id,
        spiffe_id: Some(id_to_proto(&spiffe_id)),
        parent_id: Some(id_to_proto(&parent_id)),
        selectors,
        x509_svid_ttl: e.x509_svid_ttl,
        federates_with,
        admin: e.admin,
        downstream: e.downstream,
        expires_at: e.entry_expiry,
        dns_names: e.dns_names,
        revision_number: e.revision_number,
        store_svid: e.store_svid,
        jwt_svid_ttl: e.jwt_svid_ttl,
        hint: e.hint,
        created_at: e.created_at,
        additional_attributes: e.additional_attributes.map(|a| AdditionalAttributes {
            disable_x509_svid_prefetch: a.disable_x509_svid_prefetch,
            jwt_svid_include_jti: a.jwt_svid_include_jti,
        }),
    })
}

/// Parses the `{"ids": [...]}` file of `entry delete -file`.
pub fn parse_delete_ids(
    flag: &str,
    path: &Path,
    json: &[u8],
) -> Result<Vec<String>, AdminClientError> {
    let bad = |reason: String| AdminClientError::Input {
        source_name: source_name(flag, path),
        reason,
    };
    let file: DeleteFile = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    if file.ids.is_empty() {
        return Err(bad("no entry IDs (expected {\"ids\": [...]})".to_owned()));
    }
    if file.ids.iter().any(String::is_empty) {
        return Err(bad("an entry ID is empty".to_owned()));
    }
    Ok(file.ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPIRE_SAMPLE: &str = r#"{
        "entries": [
            {
                "selectors": [{"type": "unix", "value": "uid:1111"}],
                "spiffe_id": "spiffe://example.org/Blog",
                "parent_id": "spiffe://example.org/spire/agent/join_token/TokenBlog",
                "x509_svid_ttl": 200,
                "jwt_svid_ttl": 30,
                "admin": true
            },
            {
                "selectors": [{"type": "unix", "value": "uid:1111"}],
                "spiffe_id": "spiffe://example.org/Database",
                "parent_id": "spiffe://example.org/spire/agent/join_token/TokenDatabase",
                "ttl": 200,
                "entryExpiry": 1700000000,
                "dns_names": ["db.example.org"],
                "federates_with": ["spiffe://other.org"],
                "hint": "db"
            }
        ]
    }"#;

    #[test]
    fn reads_spire_entries_file() {
        let entries = parse_entries("-data", Path::new("e.json"), SPIRE_SAMPLE.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        let blog = &entries[0];
        assert_eq!(blog.spiffe_id.as_ref().unwrap().path, "/Blog");
        assert_eq!(blog.x509_svid_ttl, 200);
        assert_eq!(blog.jwt_svid_ttl, 30);
        assert!(blog.admin);
        let db = &entries[1];
        assert_eq!(db.x509_svid_ttl, 200);
        assert_eq!(db.expires_at, 1_700_000_000);
        assert_eq!(db.federates_with, vec!["other.org"]);
        assert_eq!(db.dns_names, vec!["db.example.org"]);
        assert_eq!(db.hint, "db");
    }

    #[test]
    fn bad_files_name_file_entry_and_problem() {
        let cases = [
            (
                r#"{"entries": [{"spiffe_id": "spiffe://EXAMPLE.org/a", "parent_id": "spiffe://example.org/p"}]}"#,
                "entry 1: invalid SPIFFE ID",
            ),
            (
                r#"{"entries": [{"spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/p/"}]}"#,
                "entry 1: invalid parent ID",
            ),
            (
                r#"{"entries": [{"spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/p", "selectors": [{"type": "", "value": "x"}]}]}"#,
                "empty type",
            ),
            (
                r#"{"entries": [{"spiffe_id": "spiffe://example.org/a", "parent_id": "spiffe://example.org/p", "spifeID": "x"}]}"#,
                "unknown field `spifeID`",
            ),
            (r#"{"entries": []}"#, "no entries"),
            ("not json", "expected"),
        ];
        for (json, want) in cases {
            let err = parse_entries("-data", Path::new("e.json"), json.as_bytes()).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("-data e.json: "), "{text}");
            assert!(text.contains(want), "{text} should contain {want}");
        }
    }

    #[test]
    fn delete_ids_file() {
        let ids = parse_delete_ids("-file", Path::new("-"), br#"{"ids": ["a", "b"]}"#).unwrap();
        assert_eq!(ids, vec!["a", "b"]);
        let err = parse_delete_ids("-file", Path::new("-"), br#"{"ids": []}"#).unwrap_err();
        assert!(err.to_string().starts_with("-file - (stdin): "), "{err}");
    }

    #[test]
    fn reads_stdin_for_dash() {
        let mut stdin: &[u8] = b"{}";
        let data = read_input("-data", Path::new("-"), &mut stdin).unwrap();
        assert_eq!(data, b"{}");
        let err = read_input("-data", Path::new("/nonexistent/x.json"), &mut stdin).unwrap_err();
        assert!(
            err.to_string().contains("-data /nonexistent/x.json"),
            "{err}"
        );
    }
}
