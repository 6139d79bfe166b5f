//! Parent cycles among registration entries, for every backend.
//!
//! Entries form a graph over SPIFFE IDs: each entry is an edge from its
//! parent ID to its SPIFFE ID. Writing entry `parent -> id` closes a cycle
//! when `id` is `parent` itself or an ancestor of it, that is, when walking
//! up from `parent` (through the parent IDs of the entries whose SPIFFE ID
//! is the current ID) reaches `id`. Such an entry would make an ID its own
//! ancestor, and is refused with [`DataStoreError::ParentCycle`].
//!
//! A backend calls [`find_parent_cycle`] with a lookup of the parent IDs
//! stored under a SPIFFE ID, and must make the check and the write one
//! atomic step with respect to other entry writes: two updates that are
//! each acyclic alone (x under y, y under x) must not both pass.

use std::collections::{BTreeMap, VecDeque};

use super::{DataStoreError, RegistrationEntry, Result};

/// Refuses `entry` when writing it would close a parent cycle.
/// `parents_of(id)` returns `(entry ID, parent ID)` of the stored entries
/// whose SPIFFE ID is `id`; the stored version of `entry` itself (an
/// update) is left out, since the write replaces it.
pub fn check_parent_cycle(
    entry: &RegistrationEntry,
    parents_of: impl FnMut(&str) -> Result<Vec<(String, String)>>,
) -> Result<()> {
    match find_parent_cycle(entry, parents_of)? {
        None => Ok(()),
        Some(cycle) => Err(DataStoreError::ParentCycle {
            entry_id: entry.id.clone(),
            cycle,
        }),
    }
}

/// The cycle writing `entry` would close, in parent -> child order, from
/// `entry.spiffe_id` back to itself; `None` when there is none.
pub fn find_parent_cycle(
    entry: &RegistrationEntry,
    mut parents_of: impl FnMut(&str) -> Result<Vec<(String, String)>>,
) -> Result<Option<Vec<String>>> {
    let (id, parent) = (entry.spiffe_id.as_str(), entry.parent_id.as_str());
    if id == parent {
        return Ok(Some(vec![id.to_owned(), id.to_owned()]));
    }
    // child_of[p] = c: p is a parent of c on the walk up from `parent`.
    let mut child_of: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::from([parent.to_owned()]);
    while let Some(current) = queue.pop_front() {
        for (entry_id, up) in parents_of(&current)? {
            if entry_id == entry.id || up == parent || child_of.contains_key(&up) {
                continue;
            }
            child_of.insert(up.clone(), current.clone());
            if up == id {
                return Ok(Some(chain(id, parent, &child_of)));
            }
            queue.push_back(up);
        }
    }
    Ok(None)
}

/// `id -> ... -> parent -> id`, following `child_of` down from `id`.
fn chain(id: &str, parent: &str, child_of: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = vec![id.to_owned()];
    let mut at = id;
    while at != parent {
        match child_of.get(at) {
            Some(child) => {
                out.push(child.clone());
                at = child;
            }
            None => break,
        }
    }
    out.push(id.to_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries as (entry ID, parent, SPIFFE ID).
    fn lookup<'a>(
        stored: &'a [(&'a str, &'a str, &'a str)],
    ) -> impl FnMut(&str) -> Result<Vec<(String, String)>> + 'a {
        move |id| {
            Ok(stored
                .iter()
                .filter(|(_, _, s)| *s == id)
                .map(|(e, p, _)| ((*e).to_owned(), (*p).to_owned()))
                .collect())
        }
    }

    fn entry(id: &str, parent: &str, spiffe_id: &str) -> RegistrationEntry {
        RegistrationEntry {
            id: id.into(),
            parent_id: parent.into(),
            spiffe_id: spiffe_id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn finds_self_parents_and_longer_cycles() {
        let stored = [("1", "agent", "a"), ("2", "a", "b"), ("3", "b", "c")];
        let cycle = |e| find_parent_cycle(&e, lookup(&stored)).unwrap();
        assert_eq!(
            cycle(entry("", "x", "x")),
            Some(vec!["x".into(), "x".into()])
        );
        assert_eq!(
            cycle(entry("", "c", "a")),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(cycle(entry("", "c", "d")), None);
        assert_eq!(
            cycle(entry("", "agent", "c")),
            None,
            "a second registration"
        );
        // Updating entry 1 (a under agent) to a under c: the stored entry 1
        // does not count, but a -> b -> c -> a remains.
        assert!(cycle(entry("1", "c", "a")).is_some());
        // Updating entry 2 (b under a) to b under c: b -> c -> b.
        assert_eq!(
            cycle(entry("2", "c", "b")),
            Some(vec!["b".into(), "c".into(), "b".into()])
        );
    }

    #[test]
    fn terminates_on_a_store_that_already_has_a_cycle() {
        let stored = [("1", "b", "a"), ("2", "a", "b"), ("3", "b", "c")];
        assert_eq!(
            find_parent_cycle(&entry("", "c", "d"), lookup(&stored)).unwrap(),
            None
        );
    }
}
