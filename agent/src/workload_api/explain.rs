//! Saying why a caller got no identity, without leaking what it should not.
//!
//! [`explain`] matches a caller's attested selectors against a snapshot:
//! the identities it gets and, when none, the entries that come closest
//! (fewest missing selectors) with what each lacks. The Workload API logs
//! that at info on every denial; the agent's debug API
//! (`spinel-agent debug explain -pid N`, admin socket only) returns it in
//! full.
//!
//! Selector values can be sensitive (labels, paths, image names), so the
//! log shows a value only for the selector kinds in [`SelectorLog`]
//! (`agent { log_selectors = [...] }`, SPIRE's key); others appear as
//! `k8s:pod-label:<redacted>`, which still tells the operator which kind of
//! selector was attested or is missing.

use std::collections::BTreeSet;

use spinel_spiffe::{selector, Selector};

use crate::cache::Snapshot;

/// How many near-miss entries an explanation names.
pub const CLOSEST_SHOWN: usize = 3;

/// Selector kinds whose values are logged unless the config says otherwise:
/// who a process runs as and where it is scheduled, not what it carries.
pub const DEFAULT_LOG_SELECTORS: &[&str] = &[
    "unix:uid",
    "unix:user",
    "unix:gid",
    "unix:group",
    "unix:supplementary_gid",
    "unix:supplementary_group",
    "k8s:ns",
    "k8s:sa",
    "k8s:node-name",
    "k8s:pod-name",
    "k8s:pod-uid",
    "k8s:container-name",
    "k8s:pod-image-count",
    "k8s:pod-init-image-count",
];

/// Which selector values may appear in logs.
///
/// Each item is a selector type (`unix`: every unix selector) or a type
/// and the first part of the value (`k8s:ns`, `k8s:pod-label`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorLog {
    kinds: BTreeSet<String>,
}

impl Default for SelectorLog {
    fn default() -> Self {
        SelectorLog::new(DEFAULT_LOG_SELECTORS.iter().map(|s| (*s).to_owned()))
    }
}

impl SelectorLog {
    /// A policy logging the values of `kinds`.
    pub fn new(kinds: impl IntoIterator<Item = String>) -> Self {
        SelectorLog {
            kinds: kinds.into_iter().collect(),
        }
    }

    /// A policy that logs no value.
    pub fn none() -> Self {
        SelectorLog::new([])
    }

    /// `s` as it may be logged: whole, or with its value redacted after the
    /// kind (`k8s:pod-label:<redacted>`).
    pub fn render(&self, s: &Selector) -> String {
        let key = s.value.split(':').next().unwrap_or_default();
        let kind = format!("{}:{key}", s.kind);
        if self.kinds.contains(&s.kind) || self.kinds.contains(&kind) {
            s.to_string()
        } else if key.len() < s.value.len() {
            format!("{kind}:<redacted>")
        } else {
            format!("{}:<redacted>", s.kind)
        }
    }

    /// `selectors` rendered and joined with `,`.
    pub fn join<'a>(&self, selectors: impl IntoIterator<Item = &'a Selector>) -> String {
        selectors
            .into_iter()
            .map(|s| self.render(s))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// An entry the caller matches, or nearly matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMatch {
    /// The registration entry's ID.
    pub entry_id: String,
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// Its selectors the caller lacks (empty for a match).
    pub missing: Vec<Selector>,
}

/// A caller's selectors held against one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Explanation {
    /// Entries whose selectors are all attested.
    pub identities: Vec<EntryMatch>,
    /// When there are none: the entries missing the fewest selectors (at
    /// most `CLOSEST_SHOWN`, ties by entry ID).
    pub closest: Vec<EntryMatch>,
    /// The snapshot held no entry with selectors at all.
    pub no_entries: bool,
}

impl Explanation {
    /// `"<spiffe id> (entry <id>) lacks [<selectors>]; ..."`, rendered by
    /// `policy`, for a log line.
    pub fn closest_line(&self, policy: &SelectorLog) -> String {
        if self.no_entries {
            return "the agent holds no entries".to_owned();
        }
        self.closest
            .iter()
            .map(|m| {
                format!(
                    "{} (entry {}) lacks [{}]",
                    m.spiffe_id,
                    m.entry_id,
                    policy.join(&m.missing)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Matches `attested` against the entries of `snapshot`.
pub fn explain(attested: &BTreeSet<Selector>, snapshot: &Snapshot) -> Explanation {
    let with_selectors = || {
        snapshot
            .identities
            .values()
            .filter(|i| !i.entry.selectors.is_empty())
    };
    let entry_match = |i: &crate::cache::Identity, missing: Vec<Selector>| EntryMatch {
        entry_id: i.entry.id.clone(),
        spiffe_id: i.entry.spiffe_id.to_string(),
        missing,
    };
    let identities: Vec<EntryMatch> = snapshot
        .matching(attested)
        .iter()
        .map(|i| entry_match(i, vec![]))
        .collect();
    let mut explanation = Explanation {
        no_entries: with_selectors().next().is_none(),
        ..Explanation::default()
    };
    if identities.is_empty() {
        let mut scored: Vec<(usize, &crate::cache::Identity, Vec<Selector>)> = with_selectors()
            .map(|i| {
                let missing: Vec<Selector> = selector::missing(&i.entry.selectors, attested)
                    .into_iter()
                    .cloned()
                    .collect();
                (missing.len(), i.as_ref(), missing)
            })
            .collect();
        scored.sort_by(|a, b| (a.0, &a.1.entry.id).cmp(&(b.0, &b.1.entry.id)));
        let fewest = scored.first().map(|s| s.0).unwrap_or_default();
        explanation.closest = scored
            .into_iter()
            .take_while(|(n, _, _)| *n == fewest)
            .take(CLOSEST_SHOWN)
            .map(|(_, i, missing)| entry_match(i, missing))
            .collect();
    }
    explanation.identities = identities;
    explanation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    #[test]
    fn values_outside_the_policy_are_redacted_after_their_kind() {
        let policy = SelectorLog::default();
        assert_eq!(policy.render(&sel("unix:uid:1000")), "unix:uid:1000");
        assert_eq!(policy.render(&sel("k8s:ns:payments")), "k8s:ns:payments");
        assert_eq!(
            policy.render(&sel("k8s:pod-label:team:secret")),
            "k8s:pod-label:<redacted>"
        );
        assert_eq!(
            policy.render(&sel("unix:path:/opt/app")),
            "unix:path:<redacted>"
        );
        // No key part: only the type stays.
        assert_eq!(policy.render(&sel("custom:opaque")), "custom:<redacted>");
        let by_type = SelectorLog::new(["k8s".to_owned()]);
        assert_eq!(
            by_type.render(&sel("k8s:pod-label:team:a")),
            "k8s:pod-label:team:a"
        );
        assert_eq!(by_type.render(&sel("unix:uid:0")), "unix:uid:<redacted>");
        assert_eq!(
            SelectorLog::none().join(&[sel("k8s:ns:a"), sel("unix:gid:1")]),
            "k8s:ns:<redacted>,unix:gid:<redacted>"
        );
    }
}
