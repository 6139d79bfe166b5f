//! SPIRE's pretty layout of authority states:
//!
//! ```text
//! Active X.509 authority:
//!   Authority ID: 6b6b...
//!   Expires at: 2026-12-02 08:00:00 +0000 UTC
//!
//! Prepared X.509 authority:
//!   No prepared X.509 authority found
//! ```

use spinel_proto::spire::api::server::localauthority::v1::AuthorityState;

use crate::cli::output::go_utc_time;

/// Which kind of authority is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// X.509 CAs.
    X509,
    /// JWT keys.
    Jwt,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::X509 => "X.509",
            Kind::Jwt => "JWT",
        }
    }
}

fn body(state: &AuthorityState) -> String {
    let mut out = format!(
        "  Authority ID: {}\n  Expires at: {}\n",
        state.authority_id,
        go_utc_time(state.expires_at)
    );
    if !state.upstream_authority_subject_key_id.is_empty() {
        out.push_str(&format!(
            "  Upstream authority Subject Key ID: {}\n",
            state.upstream_authority_subject_key_id
        ));
    }
    out
}

fn section(title: &str, kind: Kind, state: Option<&AuthorityState>) -> String {
    let name = kind.name();
    let mut out = format!("{title} {name} authority:\n");
    match state {
        Some(s) => out.push_str(&body(s)),
        None => out.push_str(&format!(
            "  No {} {name} authority found\n",
            title.to_lowercase()
        )),
    }
    out
}

/// `show`: the active, prepared and old sections, separated by blank lines.
pub fn format_state(
    kind: Kind,
    active: Option<&AuthorityState>,
    prepared: Option<&AuthorityState>,
    old: Option<&AuthorityState>,
) -> String {
    [
        section("Active", kind, active),
        section("Prepared", kind, prepared),
        section("Old", kind, old),
    ]
    .join("\n")
}

/// `prepare`, `activate`, `taint`, `revoke`: one section titled by what
/// was done (`Prepared`, `Activated`, `Tainted`, `Revoked`).
pub fn format_one(done: &str, kind: Kind, state: Option<&AuthorityState>) -> String {
    let name = kind.name();
    match state {
        Some(s) => format!("{done} {name} authority:\n{}", body(s)),
        None => format!("{done} {name} authority:\n  No authority returned\n"),
    }
}
