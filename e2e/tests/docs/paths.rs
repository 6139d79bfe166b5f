//! Paths cited in code spans of the developer docs exist in the repository.

use std::path::{Path, PathBuf};

/// The docs whose cited paths must exist.
const DOCS: &[&str] = &["docs/architecture.md", "SECURITY.md"];

/// The repository's top-level folders: a code span starting with one of
/// them and holding a `/` is a path into the tree.
const TOP: &[&str] = &[
    "agent",
    "conf",
    "config",
    "docs",
    "e2e",
    "examples",
    "fuzz",
    "interop",
    "proto",
    "scripts",
    "server",
    "spiffe",
    "telemetry",
    "test-fixtures",
    "transport",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate sits in the workspace root")
        .to_path_buf()
}

/// The code spans (text between single backticks) of one line.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// The path a code span cites, if it is one: a top-level folder, a `/`,
/// no placeholder (`<td>`, `*`) and no spaces. A `:line` suffix is dropped.
fn cited_path(span: &str) -> Option<&str> {
    let (top, _) = span.split_once('/')?;
    if !TOP.contains(&top) {
        return None;
    }
    if span.contains(|c: char| c.is_whitespace() || "<>*{}$".contains(c)) {
        return None;
    }
    Some(span.split(':').next().unwrap_or(span))
}

/// Paths cited by `text` that do not exist under `root`, as `line: path`.
fn missing(root: &Path, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for span in code_spans(line) {
            if let Some(path) = cited_path(span) {
                if !root.join(path).exists() {
                    out.push(format!("line {}: {path}", n + 1));
                }
            }
        }
    }
    out
}

#[test]
fn every_path_the_developer_docs_cite_exists() {
    let root = repo_root();
    let mut problems = Vec::new();
    let mut cited = 0;
    for doc in DOCS {
        let text =
            std::fs::read_to_string(root.join(doc)).unwrap_or_else(|e| panic!("read {doc}: {e}"));
        cited += text
            .lines()
            .flat_map(code_spans)
            .filter_map(cited_path)
            .count();
        problems.extend(
            missing(&root, &text)
                .into_iter()
                .map(|m| format!("{doc} {m}")),
        );
    }
    assert!(
        cited > 20,
        "the docs cite only {cited} paths: is the parser broken?"
    );
    assert!(
        problems.is_empty(),
        "paths cited in the docs do not exist:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_finds_a_missing_path_and_skips_what_is_no_path() {
    let root = repo_root();
    let text = "see `server/src/gone.rs` and `server/src/run.rs`, \
                `spiffe://<td>/spire/server`, `agent/<area>/`, `unix:uid:1000`";
    assert_eq!(missing(&root, text), vec!["line 1: server/src/gone.rs"]);
}
