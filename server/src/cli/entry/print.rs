//! SPIRE's pretty layout of registration entries and batch results.
//!
//! Each entry is a block of `Label : value` lines (labels padded to the
//! longest, `DisableX509SvidPrefetch`) ending with a blank line; optional
//! attributes appear only when set, as in SPIRE.

use std::fmt::Write as _;

use spinel_proto::spire::api::server::entry::v1::{
    BatchCreateEntryResponse, BatchDeleteEntryResponse, BatchUpdateEntryResponse,
    CountEntriesResponse, ListEntriesResponse,
};
use spinel_proto::spire::api::types::{Entry, Selector, Status};

use crate::cli::admin_client::{id_from_proto, GoCode};
use crate::cli::output::{go_quote, go_utc_time, pluralize};

/// What a command prints: `stdout` and `stderr` text, and whether it failed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Printed {
    /// Text for standard output.
    pub stdout: String,
    /// Text for standard error.
    pub stderr: String,
    /// The summary error when some item failed.
    pub failure: Option<String>,
}

fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{label:<23} : {value}");
}

/// One entry block, as `spire-server entry show` prints it.
pub fn entry_block(e: &Entry) -> String {
    let mut out = String::new();
    let id = if e.id.is_empty() { "(none)" } else { &e.id };
    line(&mut out, "Entry ID", id);
    line(&mut out, "SPIFFE ID", id_from_proto(e.spiffe_id.as_ref()));
    line(&mut out, "Parent ID", id_from_proto(e.parent_id.as_ref()));
    line(&mut out, "Revision", e.revision_number);
    if e.downstream {
        line(&mut out, "Downstream", true);
    }
    let ttl = |v: i32| {
        if v == 0 {
            "default".to_owned()
        } else {
            v.to_string()
        }
    };
    line(&mut out, "X509-SVID TTL", ttl(e.x509_svid_ttl));
    line(&mut out, "JWT-SVID TTL", ttl(e.jwt_svid_ttl));
    if e.expires_at != 0 {
        line(&mut out, "Expiration time", go_utc_time(e.expires_at));
    }
    for s in &e.selectors {
        line(
            &mut out,
            "Selector",
            format_args!("{}:{}", s.r#type, s.value),
        );
    }
    for td in &e.federates_with {
        line(&mut out, "FederatesWith", td);
    }
    for dns in &e.dns_names {
        line(&mut out, "DNS name", dns);
    }
    if e.admin {
        line(&mut out, "Admin", true);
    }
    if e.store_svid {
        line(&mut out, "StoreSvid", true);
    }
    if !e.hint.is_empty() {
        line(&mut out, "Hint", &e.hint);
    }
    if let Some(attrs) = &e.additional_attributes {
        if attrs.disable_x509_svid_prefetch {
            line(&mut out, "DisableX509SvidPrefetch", true);
        }
        if attrs.jwt_svid_include_jti {
            line(&mut out, "JwtSvidIncludeJti", true);
        }
    }
    out.push('\n');
    out
}

fn status_ok(status: Option<&Status>) -> bool {
    status.is_none_or(|s| s.code == 0)
}

fn status_parts(status: Option<&Status>) -> (GoCode, String) {
    match status {
        Some(s) => (GoCode::from_i32(s.code), go_quote(&s.message)),
        None => (GoCode(tonic::Code::Ok), go_quote("")),
    }
}

/// `entry create` / `entry update` results: the entries that succeeded on
/// stdout, each failure with its status on stderr. `requested` fills in
/// failed entries, which the API leaves out of the results.
fn batch_results<'a>(
    verb: &str,
    results: impl Iterator<Item = (Option<&'a Status>, Option<&'a Entry>)>,
    requested: &[Entry],
) -> Printed {
    let mut printed = Printed::default();
    let mut failed = Vec::new();
    for (i, (status, entry)) in results.enumerate() {
        if status_ok(status) {
            if let Some(entry) = entry {
                printed.stdout.push_str(&entry_block(entry));
            }
        } else {
            failed.push((status, entry.or_else(|| requested.get(i))));
        }
    }
    for (status, entry) in &failed {
        let (code, msg) = status_parts(*status);
        let _ = writeln!(
            printed.stderr,
            "Failed to {verb} the following entry (code: {code}, msg: {msg}):"
        );
        if let Some(entry) = entry {
            printed.stderr.push_str(&entry_block(entry));
        }
    }
    if !failed.is_empty() {
        printed.failure = Some(format!("failed to {verb} one or more entries"));
    }
    printed
}

/// `entry create`'s pretty output.
pub fn create_results(resp: &BatchCreateEntryResponse, requested: &[Entry]) -> Printed {
    batch_results(
        "create",
        resp.results
            .iter()
            .map(|r| (r.status.as_ref(), r.entry.as_ref())),
        requested,
    )
}

/// `entry update`'s pretty output.
pub fn update_results(resp: &BatchUpdateEntryResponse, requested: &[Entry]) -> Printed {
    batch_results(
        "update",
        resp.results
            .iter()
            .map(|r| (r.status.as_ref(), r.entry.as_ref())),
        requested,
    )
}

/// `entry delete`'s pretty output.
pub fn delete_results(resp: &BatchDeleteEntryResponse) -> Printed {
    let mut printed = Printed::default();
    let (ok, failed): (Vec<_>, Vec<_>) = resp
        .results
        .iter()
        .partition(|r| status_ok(r.status.as_ref()));
    for r in &ok {
        let _ = writeln!(printed.stdout, "Deleted entry with ID: {}", r.id);
    }
    if !ok.is_empty() {
        printed.stdout.push_str("\n\n");
    }
    for r in &failed {
        let (code, msg) = status_parts(r.status.as_ref());
        let _ = writeln!(
            printed.stderr,
            "Failed to delete entry with ID {} (code: {code}, msg: {msg})",
            r.id
        );
    }
    if failed.is_empty() {
        let _ = write!(printed.stdout, "Deleted {} entries successfully", ok.len());
    } else {
        printed.stdout.push_str("\n\n");
        if ok.is_empty() {
            let _ = write!(printed.stdout, "Failed to delete {} entries", failed.len());
        } else {
            let _ = write!(
                printed.stdout,
                "Deleted {} entries successfully, but failed to delete {} entries",
                ok.len(),
                failed.len()
            );
        }
        printed.failure = Some("failed to delete one or more entries".to_owned());
    }
    // SPIRE ends the summary without a newline; end the line for shells.
    printed.stdout.push('\n');
    printed
}

/// `entry show`'s pretty output: `Found N entries` and the blocks.
pub fn show_entries(resp: &ListEntriesResponse) -> String {
    let n = resp.entries.len();
    let mut out = pluralize(&format!("Found {n} "), "entry", "entries", n);
    out.push('\n');
    for e in &resp.entries {
        out.push_str(&entry_block(e));
    }
    out
}

/// `entry count`'s pretty output.
pub fn count(resp: &CountEntriesResponse) -> String {
    let n = usize::try_from(resp.count).unwrap_or(0);
    let mut out = pluralize(
        &format!("{} registration ", resp.count),
        "entry",
        "entries",
        n,
    );
    out.push('\n');
    out
}

/// Sorts entries as SPIRE's `entry show` does: by SPIFFE ID, parent ID,
/// X.509 then JWT TTL, then selectors (each entry's selectors sorted first).
pub fn sort_entries(entries: &mut [Entry]) {
    fn sel_key(s: &Selector) -> (&str, &str) {
        (&s.r#type, &s.value)
    }
    for e in entries.iter_mut() {
        e.selectors.sort_by(|a, b| sel_key(a).cmp(&sel_key(b)));
    }
    // Borrowed keys: a sort of 100,000 entries compares ~1.7 million times.
    entries.sort_by(|a, b| {
        fn id(e: &Entry, parent: bool) -> (&str, &str) {
            let id = if parent { &e.parent_id } else { &e.spiffe_id };
            id.as_ref()
                .map_or(("", ""), |i| (i.trust_domain.as_str(), i.path.as_str()))
        }
        id(a, false)
            .cmp(&id(b, false))
            .then_with(|| id(a, true).cmp(&id(b, true)))
            .then_with(|| a.x509_svid_ttl.cmp(&b.x509_svid_ttl))
            .then_with(|| a.jwt_svid_ttl.cmp(&b.jwt_svid_ttl))
            .then_with(|| a.selectors.len().cmp(&b.selectors.len()))
            .then_with(|| {
                a.selectors
                    .iter()
                    .map(sel_key)
                    .cmp(b.selectors.iter().map(sel_key))
            })
    });
}
