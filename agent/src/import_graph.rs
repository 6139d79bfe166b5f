//! Guard: the files of `manager/` and of `workload_api/` never import each
//! other in a loop (a file importing one that, directly or through others,
//! imports it back).
//!
//! What is parsed, from the crate's own sources, is deliberately simple:
//! - `use` statements (also multi-line, with `{...}` groups and `self`),
//!   whose path starts with `crate::`, `super::` (repeated), `self::`, or
//!   a child module of the file;
//! - paths written in code that start with `crate::` or `super::`
//!   (`super::rebootstrap::untrusted(m)`).
//!
//! Each path is resolved to the deepest file it names (`crate::manager::
//! sync::round::sync_once` is `manager/sync/round.rs`; `super::Manager`
//! from a child is its parent's `mod.rs`). Not parsed: comment lines, the
//! `#[cfg(test)] mod` at the end of a file (clippy's
//! `items_after_test_module` keeps it last), method calls (`m.reattest()`
//! names no file), and names a glob import (`use super::*`) brings in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The components whose files must not import each other in a loop.
const GUARDED: &[&str] = &["manager", "workload_api"];

/// A source file: its module path (`["manager", "sync", "round"]`; a
/// `mod.rs` is its directory's module) and its text.
struct Source {
    module: Vec<String>,
    text: String,
}

fn sources(src: &Path, component: &str) -> Vec<Source> {
    let mut out = Vec::new();
    let mut dirs = vec![src.join(component)];
    while let Some(dir) = dirs.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.push(Source { module, text });
        }
    }
    out
}

/// The code of a file without comment lines and without its test module.
fn code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t == "#[cfg(test)]" && lines.get(i + 1).is_some_and(|n| is_mod_block(n)) {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn is_mod_block(line: &str) -> bool {
    let t = line.trim_start();
    let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
    t.starts_with("mod ") && t.trim_end().ends_with('{')
}

/// Splits `code` into its `use` statements (each as one line of text) and
/// the rest.
fn split_uses(code: &str) -> (Vec<String>, String) {
    let mut uses = Vec::new();
    let mut rest = String::new();
    let mut current: Option<String> = None;
    for line in code.lines() {
        if let Some(u) = current.as_mut() {
            u.push_str(line.trim());
            if line.contains(';') {
                uses.extend(current.take());
            }
            continue;
        }
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        if let Some(u) = t.strip_prefix("use ") {
            if u.contains(';') {
                uses.push(u.trim().to_owned());
            } else {
                current = Some(u.trim().to_owned());
            }
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    (uses, rest)
}

/// The paths of one `use` statement, `{...}` groups expanded, `self`
/// dropped, `as` renames and `*` ignored.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim().trim_end_matches(';').trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        return vec![path
            .split("::")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s != "self" && s != "*")
            .collect()];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .flat_map(expand)
        .map(|tail| prefix.iter().cloned().chain(tail).collect())
        .collect()
}

/// `crate::` and `super::` paths written in code.
fn code_paths(code: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        for (i, _) in code.match_indices(start) {
            if code[..i].chars().next_back().is_some_and(ident) {
                continue;
            }
            let mut end = i;
            let bytes = code.as_bytes();
            while end < code.len() && (ident(bytes[end] as char) || code[end..].starts_with("::")) {
                end += if code[end..].starts_with("::") { 2 } else { 1 };
            }
            let path: Vec<String> = code[i..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            out.push(path);
        }
    }
    out
}

/// The absolute module path `path` names, written in the file of `module`.
fn absolute(module: &[String], path: &[String]) -> Vec<String> {
    let mut base: Vec<String> = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            // `a/b.rs` is module `a::b` and `a/mod.rs` module `a`: `super`
            // is one level up from either.
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => {}
    }
    base.extend(rest.iter().cloned());
    base
}

/// The import edges between `files`, by index.
fn edges(files: &[Source]) -> BTreeMap<usize, BTreeSet<usize>> {
    let index: BTreeMap<&[String], usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.as_slice(), i))
        .collect();
    let resolve = |abs: &[String]| -> Option<usize> {
        (1..=abs.len())
            .rev()
            .find_map(|n| index.get(&abs[..n]).copied())
    };
    let mut out: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (i, file) in files.iter().enumerate() {
        let (uses, rest) = split_uses(&code(&file.text));
        let mut paths = Vec::new();
        for u in &uses {
            for p in expand(u) {
                let relative_child = p
                    .first()
                    .is_some_and(|s| !matches!(s.as_str(), "crate" | "super" | "self"));
                if relative_child {
                    // `use child::x;`: only when `child` is a module of this file.
                    let mut abs = file.module.clone();
                    abs.extend(p.iter().cloned());
                    let child = &abs[..file.module.len() + 1];
                    if index.contains_key(child) {
                        paths.push(abs);
                    }
                } else {
                    paths.push(absolute(&file.module, &p));
                }
            }
        }
        paths.extend(code_paths(&rest).iter().map(|p| absolute(&file.module, p)));
        for abs in paths {
            if let Some(j) = resolve(&abs) {
                if j != i {
                    out.entry(i).or_default().insert(j);
                }
            }
        }
    }
    out
}

/// A loop in `edges`, as the files along it, if there is one.
fn find_cycle(n: usize, edges: &BTreeMap<usize, BTreeSet<usize>>) -> Option<Vec<usize>> {
    // 0: not seen, 1: on the current path, 2: done.
    fn visit(
        v: usize,
        edges: &BTreeMap<usize, BTreeSet<usize>>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[v] = 1;
        path.push(v);
        for &w in edges.get(&v).into_iter().flatten() {
            if state[w] == 1 {
                let from = path.iter().position(|&p| p == w).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(w);
                return Some(cycle);
            }
            if state[w] == 0 {
                if let Some(c) = visit(w, edges, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state[v] = 2;
        None
    }
    let mut state = vec![0u8; n];
    (0..n).find_map(|v| {
        if state[v] == 0 {
            visit(v, edges, &mut state, &mut Vec::new())
        } else {
            None
        }
    })
}

fn name(f: &Source) -> String {
    f.module.join("/")
}

fn check(files: &[Source]) -> Result<usize, String> {
    let edges = edges(files);
    match find_cycle(files.len(), &edges) {
        None => Ok(edges.values().map(BTreeSet::len).sum()),
        Some(cycle) => Err(cycle
            .iter()
            .map(|&i| name(&files[i]))
            .collect::<Vec<_>>()
            .join(" -> ")),
    }
}

#[test]
fn no_import_loops_in_manager_or_workload_api() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for component in GUARDED {
        let files = sources(&src, component);
        assert!(files.len() > 3, "{component}: too few files found");
        match check(&files) {
            Ok(edges) => assert!(edges > 0, "{component}: no import found"),
            Err(cycle) => panic!("{component}: files import each other in a loop: {cycle}"),
        }
    }
}

#[test]
fn the_guard_sees_a_loop() {
    let file = |module: &[&str], text: &str| Source {
        module: module.iter().map(|s| s.to_string()).collect(),
        text: text.to_owned(),
    };
    let files = vec![
        file(&["m"], "mod a;\nmod b;\npub use a::A;\n"),
        file(&["m", "a"], "use super::b::{self, B};\npub struct A;\n"),
        file(
            &["m", "b"],
            "pub struct B;\nfn f() {\n    crate::m::c::g();\n}\n#[cfg(test)]\nmod tests {\n    use super::super::a::A;\n}\n",
        ),
        file(&["m", "c"], "// use super::a::A;\npub fn g() {}\n"),
    ];
    // a -> b -> c, m -> a: no loop (comments and the test module ignored).
    assert_eq!(check(&files), Ok(3));
    let mut looped = files;
    looped[2].text = "use crate::m::{\n    a::A,\n    c,\n};\n".into();
    assert_eq!(check(&looped), Err("m/a -> m/b -> m/a".into()));
    // Through the parent's re-export: `super::A` is `m`'s `mod.rs`.
    looped[2].text = "fn f() -> super::A { todo!() }\n".into();
    assert_eq!(check(&looped), Err("m -> m/a -> m/b -> m".into()));
}
