//! Failpoints: named places where a debug build can be told to stop, so a
//! test can send a real `SIGKILL` at that exact point of a write.
//!
//! [`hit`]`("keyfile:renamed")` marks such a place. In builds with
//! `debug_assertions` (what `cargo build` and `cargo test` make) it reads
//! the environment variable `SPINEL_PAUSE_AT` once per process, a
//! comma-separated list of failpoint names. When `name` is listed, the
//! calling thread writes one line `spinel failpoint: paused at <name>` to
//! stderr and then blocks forever: the test waits for that line and kills
//! the process. Other threads keep running.
//!
//! In release builds [`hit`] is an empty inline function: production
//! binaries read no such variable and carry no crash knob.
//!
//! Names say what has happened when the point is reached, prefixed with the
//! component: `keyfile:temp-written`, `ca:prepare:key-stored`, ... The list
//! lives with the tests that use it (`server/tests/crash_*.rs`) and in
//! `docs/architecture.md` ("Fault tests").

/// The environment variable listing the failpoints to pause at.
pub const PAUSE_AT_ENV: &str = "SPINEL_PAUSE_AT";

/// The line written to stderr when pausing at `name` (without the newline).
pub fn pause_line(name: &str) -> String {
    format!("spinel failpoint: paused at {name}")
}

/// Pauses the calling thread forever if `name` is listed in
/// `SPINEL_PAUSE_AT` (debug builds only).
#[cfg(debug_assertions)]
pub fn hit(name: &str) {
    if !armed().iter().any(|n| n == name) {
        return;
    }
    {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", pause_line(name));
        let _ = err.flush();
    }
    loop {
        std::thread::park();
    }
}

/// Does nothing: release builds carry no failpoints.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// The names in `SPINEL_PAUSE_AT`, read once.
#[cfg(debug_assertions)]
fn armed() -> &'static [String] {
    static ARMED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var(PAUSE_AT_ENV)
            .map(|v| parse_list(&v))
            .unwrap_or_default()
    })
}

/// Splits a comma-separated list, trimming blanks and dropping empty names.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
fn parse_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_split_and_trimmed() {
        assert_eq!(
            parse_list(" keyfile:renamed, ,ca:prepare:key-stored,"),
            vec!["keyfile:renamed", "ca:prepare:key-stored"]
        );
        assert!(parse_list("").is_empty());
    }

    #[test]
    fn an_unlisted_point_returns_at_once() {
        // The test process does not set SPINEL_PAUSE_AT for this name.
        hit("failpoint:test-never-armed");
        assert_eq!(pause_line("x"), "spinel failpoint: paused at x");
    }
}
