//! The datastore conformance suite.
//!
//! Every `check_*` function takes a fresh, empty `Arc<dyn DataStore>` and
//! tests one part of the trait's contract, so any backend (sled today,
//! PostgreSQL later) runs the same suite: give [`run_suite`] a constructor.
//! Persistence and corrupt records come after the suite; sled's own open
//! errors (locks, foreign directories, layout versions) are unit tests in
//! `src/datastore/sled/tests.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use spinel_server::datastore::sled::SledDataStore;
use spinel_server::datastore::{
    AttestedAgent, DataStore, DataStoreError, EntryFilter, JoinToken, RegistrationEntry,
    SelectorMatch, StoredBundle, StoredFederationRelationship, StoredJwtKey, StoredSelector,
};

const AGENT: &str = "spiffe://example.org/spire/agent/join_token/t1";
const OTHER_AGENT: &str = "spiffe://example.org/spire/agent/join_token/t2";

/// Selectors written `type:value`, e.g. `unix:uid:1`.
fn sels(list: &[&str]) -> Vec<StoredSelector> {
    list.iter()
        .map(|s| {
            let (kind, value) = s.split_once(':').unwrap();
            StoredSelector {
                kind: kind.into(),
                value: value.into(),
            }
        })
        .collect()
}

/// An entry for `spiffe://example.org/<path>`.
fn entry(path: &str, parent: &str, selectors: &[&str]) -> RegistrationEntry {
    RegistrationEntry {
        spiffe_id: format!("spiffe://example.org/{path}"),
        parent_id: parent.into(),
        selectors: sels(selectors),
        ..Default::default()
    }
}

fn with_id(id: &str, mut e: RegistrationEntry) -> RegistrationEntry {
    e.id = id.into();
    e
}

fn agent(spiffe_id: &str) -> AttestedAgent {
    AttestedAgent {
        spiffe_id: spiffe_id.into(),
        attestation_type: "join_token".into(),
        cert_serial_number: "1".into(),
        cert_not_after: 1_000,
        selectors: sels(&["join_token:t1"]),
        ..Default::default()
    }
}

fn bundle(trust_domain: &str, sequence_number: u64) -> StoredBundle {
    StoredBundle {
        trust_domain: trust_domain.into(),
        x509_authorities: vec![vec![1, 2, 3], vec![4]],
        jwt_authorities: vec![StoredJwtKey {
            key_id: "k1".into(),
            public_key: vec![9, 9],
            expires_at: 77,
        }],
        refresh_hint: 300,
        sequence_number,
    }
}

fn token(value: &str, expires_at: i64) -> JoinToken {
    JoinToken {
        value: value.into(),
        expires_at,
    }
}

fn by_parent(parent: &str) -> EntryFilter {
    EntryFilter {
        parent_id: Some(parent.into()),
        ..Default::default()
    }
}

/// The IDs of the entries `filter` lists, in the order listed.
async fn listed(ds: &Arc<dyn DataStore>, filter: EntryFilter) -> Vec<String> {
    let found = ds.list_entries(&filter).await.unwrap();
    found.into_iter().map(|e| e.id).collect()
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, DataStoreError>) -> bool {
    matches!(r, Err(DataStoreError::NotFound { .. }))
}

/// The existing ID an `AlreadyExists` names.
fn existing_id<T: std::fmt::Debug>(r: Result<T, DataStoreError>) -> String {
    match r {
        Err(DataStoreError::AlreadyExists { id, .. }) => id,
        other => panic!("want AlreadyExists, got {other:?}"),
    }
}

/// Runs every contract check, each on a store from `fresh`.
pub(super) async fn run_suite<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn DataStore>>,
{
    check_entry_create(fresh().await).await;
    check_batch_create(fresh().await).await;
    check_similar_entries(fresh().await).await;
    check_entry_update(fresh().await).await;
    check_entry_delete(fresh().await).await;
    check_parent_cycles(fresh().await).await;
    check_parent_cycle_race(fresh().await).await;
    check_entry_filters(fresh().await).await;
    check_selector_match_modes(fresh().await).await;
    check_entries_revision(fresh().await).await;
    check_entry_changes(fresh().await).await;
    check_agents(fresh().await).await;
    check_agent_changes(fresh().await).await;
    check_join_tokens(fresh().await).await;
    check_join_token_race(fresh().await).await;
    check_bundles(fresh().await).await;
    check_ca_journal(fresh().await).await;
    check_bundle_update_race(fresh().await).await;
    check_federation_relationships(fresh().await).await;
}

async fn check_entry_create(ds: Arc<dyn DataStore>) {
    assert_eq!(ds.count_entries().await.unwrap(), 0);
    let mut given = entry("a", AGENT, &["unix:uid:1"]);
    given.revision_number = 42;
    given.created_at = 1_234;
    given.dns_names = vec!["a.example.org".into()];
    let a = ds.create_entry(given.clone()).await.unwrap();
    let uuid = uuid::Uuid::parse_str(&a.id).expect("a generated ID is a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(a.revision_number, 0);
    assert_eq!(a.created_at, 1_234, "a given created_at is kept");
    assert_eq!(a.dns_names, given.dns_names);
    assert_eq!(ds.get_entry(&a.id).await.unwrap(), Some(a.clone()));

    let b = ds
        .create_entry(with_id("fixed", entry("b", AGENT, &[])))
        .await
        .unwrap();
    assert_eq!(b.id, "fixed");
    assert!(b.created_at > 0, "a missing created_at is set");
    let clash = ds
        .create_entry(with_id("fixed", entry("c", AGENT, &[])))
        .await;
    assert_eq!(existing_id(clash), "fixed");
    assert_eq!(ds.count_entries().await.unwrap(), 2);
    assert_eq!(ds.get_entry("missing").await.unwrap(), None);
}

/// `create_entries`: one outcome per entry, in order; each entry checked
/// against the store and the entries of the same call before it; the
/// refused ones leave the others created.
async fn check_batch_create(ds: Arc<dyn DataStore>) {
    let uid = ["unix:uid:1"];
    ds.create_entry(with_id("old", entry("old", AGENT, &uid)))
        .await
        .unwrap();
    let before = ds.entries_revision().await.unwrap();
    assert!(ds.create_entries(Vec::new()).await.unwrap().is_empty());
    let outcomes = ds
        .create_entries(vec![
            entry("a", AGENT, &uid),
            // Similar to a stored entry, to an earlier one of the batch.
            entry("old", AGENT, &uid),
            entry("a", AGENT, &uid),
            // An ID the store has, one the batch has.
            with_id("old", entry("x", AGENT, &[])),
            with_id("b", entry("b", &td("a"), &[])),
            with_id("b", entry("y", AGENT, &[])),
            // A cycle through two entries of this batch (a -> b -> a),
            // its own parent, and a fine child of the batch's b.
            entry("a", &td("b"), &["unix:uid:2"]),
            entry("c", &td("c"), &[]),
            entry("c", &td("b"), &[]),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 9);
    let created: Vec<RegistrationEntry> = [0, 4, 8]
        .iter()
        .map(|&i| outcomes[i].as_ref().unwrap().clone())
        .collect();
    let a_id = created[0].id.clone();
    let mut outcomes = outcomes.into_iter();
    let mut next = || outcomes.next().unwrap();
    next().unwrap();
    assert_eq!(existing_id(next()), "old");
    assert_eq!(existing_id(next()), a_id);
    assert_eq!(existing_id(next()), "old");
    next().unwrap();
    assert_eq!(existing_id(next()), "b");
    assert_eq!(cycle_of(next()), [td("a"), td("b"), td("a")]);
    assert_eq!(cycle_of(next()), [td("c"), td("c")]);
    next().unwrap();

    // What was answered is what is stored, and nothing else.
    for e in &created {
        assert_eq!(e.revision_number, 0);
        assert!(e.created_at > 0);
        assert_eq!(ds.get_entry(&e.id).await.unwrap().as_ref(), Some(e));
    }
    assert_eq!(ds.count_entries().await.unwrap(), 4);
    assert_eq!(
        listed(&ds, by_parent(&td("b"))).await,
        [created[2].id.clone()]
    );
    let changed: BTreeSet<String> = ds
        .entry_changes_since(before)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .collect();
    let want: BTreeSet<String> = created.iter().map(|e| e.id.clone()).collect();
    assert_eq!(changed, want);
    assert!(ds.entries_revision().await.unwrap() > before);
}

async fn check_similar_entries(ds: Arc<dyn DataStore>) {
    let ug = ["unix:uid:1", "unix:gid:1"];
    let a = ds.create_entry(entry("a", AGENT, &ug)).await.unwrap();
    let dup = ds
        .create_entry(entry("a", AGENT, &["unix:gid:1", "unix:uid:1"]))
        .await;
    assert_eq!(existing_id(dup), a.id, "selector order does not matter");
    // Differing in any one of parent, SPIFFE ID or selectors is not similar.
    for other in [
        entry("a", OTHER_AGENT, &ug),
        entry("a2", AGENT, &ug),
        entry("a", AGENT, &["unix:uid:1"]),
        entry("a", AGENT, &["unix:gid:1", "unix:uid:2"]),
    ] {
        ds.create_entry(other).await.unwrap();
    }
    // An update may not make an entry similar to another one...
    let b = ds.create_entry(entry("b", AGENT, &ug)).await.unwrap();
    let mut onto_a = b.clone();
    onto_a.spiffe_id.clone_from(&a.spiffe_id);
    onto_a.selectors.reverse();
    assert_eq!(existing_id(ds.update_entry(onto_a).await), a.id);
    // ...but an entry is not similar to itself.
    let mut same = b.clone();
    same.selectors.reverse();
    ds.update_entry(same).await.unwrap();
    // Once deleted, the registration can be made again.
    ds.delete_entry(&a.id).await.unwrap();
    ds.create_entry(entry("a", AGENT, &ug)).await.unwrap();
}

async fn check_entry_update(ds: Arc<dyn DataStore>) {
    let mut given = entry("a", AGENT, &["unix:uid:1"]);
    given.created_at = 500;
    let a = ds.create_entry(given).await.unwrap();
    let mut changed = a.clone();
    changed.hint = "web".into();
    changed.parent_id = OTHER_AGENT.into();
    changed.spiffe_id = "spiffe://example.org/moved".into();
    changed.revision_number = 99;
    changed.created_at = 1;
    let updated = ds.update_entry(changed).await.unwrap();
    assert_eq!(
        updated.revision_number, 1,
        "stored revision + 1, not the given one"
    );
    assert_eq!(updated.created_at, 500, "created_at is kept");
    assert_eq!(updated.hint, "web");
    assert_eq!(ds.get_entry(&a.id).await.unwrap(), Some(updated.clone()));
    let again = ds.update_entry(updated.clone()).await.unwrap();
    assert_eq!(again.revision_number, 2);

    // The indexes follow the change.
    assert!(listed(&ds, by_parent(AGENT)).await.is_empty());
    assert_eq!(listed(&ds, by_parent(OTHER_AGENT)).await, [a.id.as_str()]);
    let by_spiffe_id = |id: &str| EntryFilter {
        spiffe_id: Some(id.into()),
        ..Default::default()
    };
    assert!(listed(&ds, by_spiffe_id(&a.spiffe_id)).await.is_empty());
    assert_eq!(
        listed(&ds, by_spiffe_id("spiffe://example.org/moved")).await,
        [a.id]
    );

    let ghost = with_id("no-such-entry", entry("x", AGENT, &[]));
    assert!(is_not_found(ds.update_entry(ghost).await));
}

/// The cycle a `ParentCycle` names.
fn cycle_of<T: std::fmt::Debug>(r: Result<T, DataStoreError>) -> Vec<String> {
    match r {
        Err(DataStoreError::ParentCycle { cycle, .. }) => cycle,
        other => panic!("want ParentCycle, got {other:?}"),
    }
}

fn td(path: &str) -> String {
    format!("spiffe://example.org/{path}")
}

async fn check_parent_cycles(ds: Arc<dyn DataStore>) {
    // Its own parent.
    let own = entry("a", &td("a"), &["unix:uid:1"]);
    assert_eq!(cycle_of(ds.create_entry(own).await), [td("a"), td("a")]);

    // a <- b <- c (parent -> child: agent -> a -> b -> c).
    let a = ds
        .create_entry(entry("a", AGENT, &["unix:uid:1"]))
        .await
        .unwrap();
    let b = ds
        .create_entry(entry("b", &td("a"), &["unix:uid:1"]))
        .await
        .unwrap();
    ds.create_entry(entry("c", &td("b"), &["unix:uid:1"]))
        .await
        .unwrap();
    // A second registration of a, under c, closes a -> b -> c -> a.
    assert_eq!(
        cycle_of(ds.create_entry(entry("a", &td("c"), &["unix:uid:2"])).await),
        [td("a"), td("b"), td("c"), td("a")]
    );
    // Moving a under c does the same; moving b under itself too.
    let mut moved = a.clone();
    moved.parent_id = td("c");
    assert_eq!(
        cycle_of(ds.update_entry(moved).await),
        [td("a"), td("b"), td("c"), td("a")]
    );
    let mut own = b.clone();
    own.parent_id = td("b");
    assert_eq!(cycle_of(ds.update_entry(own).await), [td("b"), td("b")]);
    // Nothing was written by the refusals.
    assert_eq!(ds.count_entries().await.unwrap(), 3);
    assert_eq!(ds.get_entry(&a.id).await.unwrap(), Some(a.clone()));

    // The entry being updated no longer holds its old place: b moved
    // from under a to under the agent, a may then go under b.
    let mut b2 = b.clone();
    b2.parent_id = AGENT.into();
    ds.update_entry(b2).await.unwrap();
    let mut a2 = a.clone();
    a2.parent_id = td("b");
    ds.update_entry(a2).await.unwrap();
    // A diamond is not a cycle: d under both b and c.
    ds.create_entry(entry("d", &td("b"), &["unix:uid:1"]))
        .await
        .unwrap();
    ds.create_entry(entry("d", &td("c"), &["unix:uid:1"]))
        .await
        .unwrap();
}

/// Updates that are each fine alone but together close a ring (e0 under
/// e1, e1 under e2, ..., e7 under e0), raced many times: all but the last
/// one applied succeed, never all of them.
async fn check_parent_cycle_race(ds: Arc<dyn DataStore>) {
    const RING: usize = 8;
    for round in 0..20 {
        let path = |i: usize| format!("r{round}/e{}", i % RING);
        let mut ring = Vec::new();
        for i in 0..RING {
            ring.push(
                ds.create_entry(entry(&path(i), AGENT, &["unix:uid:1"]))
                    .await
                    .unwrap(),
            );
        }
        let start = Arc::new(tokio::sync::Barrier::new(RING));
        let racers: Vec<_> = ring
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                let (ds, start) = (ds.clone(), start.clone());
                e.parent_id = td(&path(i + 1));
                tokio::spawn(async move {
                    start.wait().await;
                    ds.update_entry(e).await
                })
            })
            .collect();
        let mut ok = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => ok += 1,
                Err(DataStoreError::ParentCycle { .. }) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(
            ok,
            RING - 1,
            "round {round}: the update that closes the ring fails"
        );
    }
}

async fn check_entry_delete(ds: Arc<dyn DataStore>) {
    let a = ds
        .create_entry(entry("a", AGENT, &["unix:uid:1"]))
        .await
        .unwrap();
    let b = ds
        .create_entry(entry("b", AGENT, &["unix:uid:2"]))
        .await
        .unwrap();
    assert_eq!(ds.delete_entry(&a.id).await.unwrap(), a);
    assert!(is_not_found(ds.delete_entry(&a.id).await));
    assert_eq!(ds.get_entry(&a.id).await.unwrap(), None);
    assert_eq!(ds.count_entries().await.unwrap(), 1);
    assert_eq!(listed(&ds, by_parent(AGENT)).await, [b.id]);
    let gone = EntryFilter {
        spiffe_id: Some(a.spiffe_id),
        ..Default::default()
    };
    assert!(listed(&ds, gone).await.is_empty());
}

async fn check_entry_filters(ds: Arc<dyn DataStore>) {
    // Created out of order: listings come back ordered by ID.
    let mut e3 = with_id("e3", entry("web", AGENT, &["unix:uid:1"]));
    e3.hint = "web".into();
    e3.federates_with = vec!["other.org".into()];
    let mut e1 = with_id("e1", entry("web", OTHER_AGENT, &["unix:uid:1"]));
    e1.downstream = true;
    e1.federates_with = vec!["third.org".into(), "other.org".into()];
    let mut e2 = with_id("e2", entry("db", AGENT, &["unix:uid:2"]));
    e2.hint = "db".into();
    let e4 = with_id("e4", entry("web/agent1", AGENT, &[]));
    for e in [e3, e1, e2, e4] {
        ds.create_entry(e).await.unwrap();
    }
    let f = EntryFilter::default;
    let ids = |filter| listed(&ds, filter);
    let web = || Some("spiffe://example.org/web".to_owned());
    assert_eq!(ids(f()).await, ["e1", "e2", "e3", "e4"]);
    assert_eq!(ids(by_parent(AGENT)).await, ["e2", "e3", "e4"]);
    assert_eq!(ids(by_parent(OTHER_AGENT)).await, ["e1"]);
    // A prefix of a parent or SPIFFE ID is not a match.
    let agent_prefix = by_parent("spiffe://example.org/spire/agent/join_token/t");
    assert!(ids(agent_prefix).await.is_empty());
    let web_prefix = Some("spiffe://example.org/we".to_owned());
    assert!(ids(EntryFilter {
        spiffe_id: web_prefix,
        ..f()
    })
    .await
    .is_empty());
    assert_eq!(
        ids(EntryFilter {
            spiffe_id: web(),
            ..f()
        })
        .await,
        ["e1", "e3"]
    );
    let both = EntryFilter {
        spiffe_id: web(),
        ..by_parent(AGENT)
    };
    assert_eq!(ids(both).await, ["e3"]);
    let hint = |h: &str| EntryFilter {
        hint: Some(h.into()),
        ..f()
    };
    assert_eq!(ids(hint("web")).await, ["e3"]);
    assert_eq!(ids(hint("")).await, ["e1", "e4"]);
    let downstream = |d| EntryFilter {
        downstream: Some(d),
        ..f()
    };
    assert_eq!(ids(downstream(true)).await, ["e1"]);
    assert_eq!(ids(downstream(false)).await, ["e2", "e3", "e4"]);
    let federates = |td: &str| EntryFilter {
        federates_with: Some(td.into()),
        ..f()
    };
    assert_eq!(ids(federates("other.org")).await, ["e1", "e3"]);
    assert_eq!(ids(federates("third.org")).await, ["e1"]);
    assert!(ids(federates("nowhere.org")).await.is_empty());
    let all_fields = EntryFilter {
        spiffe_id: web(),
        parent_id: Some(AGENT.into()),
        selectors: Some((sels(&["unix:uid:1"]), SelectorMatch::Exact)),
        federates_with: Some("other.org".into()),
        hint: Some("web".into()),
        downstream: Some(false),
    };
    assert_eq!(ids(all_fields.clone()).await, ["e3"]);
    let one_off = EntryFilter {
        downstream: Some(true),
        ..all_fields
    };
    assert!(ids(one_off).await.is_empty());
}

async fn check_selector_match_modes(ds: Arc<dyn DataStore>) {
    let (a, b, c) = ("k8s:ns:a", "k8s:sa:b", "k8s:pod:c");
    let cases: [(&str, &[&str]); 5] = [
        ("ab", &[a, b]),
        ("a", &[a]),
        ("abc", &[a, b, c]),
        ("c", &[c]),
        ("none", &[]),
    ];
    for (id, selectors) in cases {
        ds.create_entry(with_id(id, entry(id, AGENT, selectors)))
            .await
            .unwrap();
    }
    let check = |given: &[&str], how: SelectorMatch, want: &[&str]| {
        let filter = EntryFilter {
            selectors: Some((sels(given), how)),
            ..Default::default()
        };
        let context = format!("{how:?} {given:?}");
        let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
        let ds = ds.clone();
        async move {
            let found: BTreeSet<String> = listed(&ds, filter).await.into_iter().collect();
            assert_eq!(found, want, "{context}");
        }
    };
    use SelectorMatch::*;
    check(&[b, a], Exact, &["ab"]).await;
    check(&[a, b, a], Exact, &["ab"]).await;
    check(&[b, a], Subset, &["ab", "a", "none"]).await;
    check(&[b, a], Superset, &["ab", "abc"]).await;
    check(&[b, a], Any, &["ab", "a", "abc"]).await;
    check(&[c], Any, &["abc", "c"]).await;
    check(&["k8s:ns:zzz"], Any, &[]).await;
    check(&[], Exact, &["none"]).await;
    check(&[], Subset, &["none"]).await;
    check(&[], Superset, &["ab", "a", "abc", "c", "none"]).await;
    check(&[], Any, &[]).await;
    // Combined with an index lookup.
    let under = EntryFilter {
        selectors: Some((sels(&[c]), Any)),
        ..by_parent(AGENT)
    };
    assert_eq!(listed(&ds, under).await, ["abc", "c"]);
}

async fn check_entries_revision(ds: Arc<dyn DataStore>) {
    let mut last = ds.entries_revision().await.unwrap();
    let mut bumped = |now: u64| {
        assert!(now > last, "revision moved from {last} to {now}");
        last = now;
    };
    let a = ds
        .create_entry(entry("a", AGENT, &["unix:uid:1"]))
        .await
        .unwrap();
    bumped(ds.entries_revision().await.unwrap());
    ds.update_entry(a.clone()).await.unwrap();
    bumped(ds.entries_revision().await.unwrap());
    ds.delete_entry(&a.id).await.unwrap();
    bumped(ds.entries_revision().await.unwrap());
    let b = ds.create_entry(entry("b", AGENT, &[])).await.unwrap();
    bumped(ds.entries_revision().await.unwrap());
    // Failed writes and reads change nothing.
    ds.create_entry(entry("b", AGENT, &[])).await.unwrap_err();
    ds.delete_entry(&a.id).await.unwrap_err();
    ds.update_entry(a).await.unwrap_err();
    ds.list_entries(&EntryFilter::default()).await.unwrap();
    ds.get_entry(&b.id).await.unwrap();
    assert_eq!(ds.entries_revision().await.unwrap(), last);
}

/// The change log: which entries were written after a revision.
async fn check_entry_changes(ds: Arc<dyn DataStore>) {
    let start = ds.entries_revision().await.unwrap();
    let since = |r: u64| {
        let ds = ds.clone();
        async move {
            ds.entry_changes_since(r)
                .await
                .unwrap()
                .map(|ids| ids.into_iter().collect::<BTreeSet<_>>())
        }
    };
    assert_eq!(since(start).await, Some(BTreeSet::new()));
    let a = ds
        .create_entry(with_id("a", entry("a", AGENT, &["unix:uid:1"])))
        .await
        .unwrap();
    let b = ds
        .create_entry(with_id("b", entry("b", AGENT, &["unix:uid:2"])))
        .await
        .unwrap();
    let after_creates = ds.entries_revision().await.unwrap();
    ds.update_entry(a.clone()).await.unwrap();
    ds.delete_entry(&b.id).await.unwrap();
    let set = |ids: &[&str]| Some(ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
    // Each entry once, however often it was written; deleted ones too.
    assert_eq!(since(start).await, set(&["a", "b"]));
    assert_eq!(since(after_creates).await, set(&["a", "b"]));
    let now = ds.entries_revision().await.unwrap();
    assert_eq!(since(now).await, set(&[]));
    // Failed writes log nothing.
    ds.create_entry(with_id("a", entry("a2", AGENT, &[])))
        .await
        .unwrap_err();
    assert_eq!(since(now).await, set(&[]));
    // A revision the store never had: it cannot tell.
    assert_eq!(since(now + 1_000).await, None);
}

async fn check_agents(ds: Arc<dyn DataStore>) {
    assert_eq!(ds.get_agent(AGENT).await.unwrap(), None);
    ds.create_agent(agent(OTHER_AGENT)).await.unwrap();
    ds.create_agent(agent(AGENT)).await.unwrap();
    assert_eq!(existing_id(ds.create_agent(agent(AGENT)).await), AGENT);
    let mut rotated = agent(AGENT);
    rotated.new_cert_serial_number = "2".into();
    rotated.new_cert_not_after = 2_000;
    rotated.banned = true;
    rotated.can_reattest = true;
    ds.update_agent(rotated.clone()).await.unwrap();
    assert_eq!(ds.get_agent(AGENT).await.unwrap(), Some(rotated.clone()));
    let all = ds.list_agents().await.unwrap();
    assert_eq!(
        all,
        [rotated.clone(), agent(OTHER_AGENT)],
        "ordered by SPIFFE ID"
    );
    assert_eq!(ds.count_agents().await.unwrap(), 2);
    assert_eq!(ds.delete_agent(AGENT).await.unwrap(), rotated);
    assert_eq!(ds.get_agent(AGENT).await.unwrap(), None);
    assert!(is_not_found(ds.delete_agent(AGENT).await));
    assert!(is_not_found(ds.update_agent(agent(AGENT)).await));
    assert_eq!(ds.list_agents().await.unwrap(), [agent(OTHER_AGENT)]);
    assert_eq!(ds.count_agents().await.unwrap(), 1);
}

/// A store that keeps an agent change log names every agent written since
/// a revision; one that keeps none (sled) says so.
async fn check_agent_changes(ds: Arc<dyn DataStore>) {
    let Some(start) = ds.agents_revision().await.unwrap() else {
        assert_eq!(ds.agent_changes_since(0).await.unwrap(), None);
        return;
    };
    let since = |r: u64| {
        let ds = ds.clone();
        async move {
            ds.agent_changes_since(r)
                .await
                .unwrap()
                .map(|ids| ids.into_iter().collect::<BTreeSet<_>>())
        }
    };
    let set = |ids: &[&str]| Some(ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
    assert_eq!(since(start).await, set(&[]));
    ds.create_agent(agent(AGENT)).await.unwrap();
    ds.create_agent(agent(OTHER_AGENT)).await.unwrap();
    let created = ds.agents_revision().await.unwrap().unwrap();
    assert!(created > start);
    let mut banned = agent(AGENT);
    banned.banned = true;
    ds.update_agent(banned).await.unwrap();
    let banned_at = ds.agents_revision().await.unwrap().unwrap();
    assert_eq!(since(start).await, set(&[AGENT, OTHER_AGENT]));
    assert_eq!(since(created).await, set(&[AGENT]));
    ds.delete_agent(OTHER_AGENT).await.unwrap();
    assert_eq!(since(banned_at).await, set(&[OTHER_AGENT]));
    // Failed writes log nothing.
    let now = ds.agents_revision().await.unwrap().unwrap();
    existing_id(ds.create_agent(agent(AGENT)).await);
    assert!(is_not_found(ds.update_agent(agent(OTHER_AGENT)).await));
    assert!(is_not_found(ds.delete_agent(OTHER_AGENT).await));
    assert_eq!(ds.agents_revision().await.unwrap(), Some(now));
    assert_eq!(since(now).await, set(&[]));
    // A revision the store never had: it cannot tell.
    assert_eq!(since(now + 1_000).await, None);
}

async fn check_join_tokens(ds: Arc<dyn DataStore>) {
    ds.create_join_token(token("secret-one", 1_000))
        .await
        .unwrap();
    let dup = ds
        .create_join_token(token("secret-one", 5))
        .await
        .unwrap_err();
    assert!(matches!(dup, DataStoreError::AlreadyExists { .. }), "{dup}");
    assert!(
        !dup.to_string().contains("secret-one"),
        "token value leaked: {dup}"
    );
    let taken = ds.take_join_token("secret-one").await.unwrap();
    assert_eq!(taken, Some(token("secret-one", 1_000)));
    assert_eq!(
        ds.take_join_token("secret-one").await.unwrap(),
        None,
        "single use"
    );
    assert_eq!(ds.take_join_token("never-made").await.unwrap(), None);

    // An expired token is still handed out: its taker checks the expiry.
    ds.create_join_token(token("stale", 10)).await.unwrap();
    assert_eq!(
        ds.take_join_token("stale").await.unwrap(),
        Some(token("stale", 10))
    );

    for (value, expires_at) in [("p1", 99), ("p2", 50), ("p3", 100), ("p4", 1_000)] {
        ds.create_join_token(token(value, expires_at))
            .await
            .unwrap();
    }
    assert_eq!(
        ds.prune_join_tokens(100).await.unwrap(),
        2,
        "expired before 100"
    );
    assert_eq!(ds.prune_join_tokens(100).await.unwrap(), 0);
    assert_eq!(ds.take_join_token("p1").await.unwrap(), None);
    assert_eq!(ds.take_join_token("p2").await.unwrap(), None);
    assert!(ds.take_join_token("p3").await.unwrap().is_some());
    assert!(ds.take_join_token("p4").await.unwrap().is_some());
}

async fn check_join_token_race(ds: Arc<dyn DataStore>) {
    for round in 0..5 {
        let value = format!("race-{round}");
        ds.create_join_token(token(&value, i64::MAX)).await.unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(32));
        let takers: Vec<_> = (0..32)
            .map(|_| {
                let (ds, start, value) = (ds.clone(), start.clone(), value.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    ds.take_join_token(&value).await.unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for taker in takers {
            winners += usize::from(taker.await.unwrap().is_some());
        }
        assert_eq!(
            winners, 1,
            "exactly one of 32 concurrent takers gets the token"
        );
    }
}

async fn check_bundles(ds: Arc<dyn DataStore>) {
    assert_eq!(ds.get_bundle("example.org").await.unwrap(), None);
    ds.set_bundle(bundle("example.org", 1)).await.unwrap();
    ds.set_bundle(bundle("aaa.org", 1)).await.unwrap();
    let got = ds.get_bundle("example.org").await.unwrap();
    assert_eq!(got, Some(bundle("example.org", 1)));
    ds.set_bundle(bundle("example.org", 2)).await.unwrap();
    let got = ds.get_bundle("example.org").await.unwrap();
    assert_eq!(got, Some(bundle("example.org", 2)), "set replaces");
    let all = ds.list_bundles().await.unwrap();
    assert_eq!(
        all,
        [bundle("aaa.org", 1), bundle("example.org", 2)],
        "ordered by trust domain"
    );
    let removed = ds.delete_bundle("example.org").await.unwrap();
    assert_eq!(removed, bundle("example.org", 2));
    assert!(is_not_found(ds.delete_bundle("example.org").await));
    assert_eq!(ds.list_bundles().await.unwrap(), [bundle("aaa.org", 1)]);
}

fn relationship(td: &str, url: &str) -> StoredFederationRelationship {
    StoredFederationRelationship {
        trust_domain: td.into(),
        bundle_endpoint_url: url.into(),
        profile: "https_spiffe".into(),
        endpoint_spiffe_id: format!("spiffe://{td}/spire/server"),
    }
}

async fn check_federation_relationships(ds: Arc<dyn DataStore>) {
    assert_eq!(ds.get_federation_relationship("b.org").await.unwrap(), None);
    ds.create_federation_relationship(relationship("b.org", "https://b"))
        .await
        .unwrap();
    ds.create_federation_relationship(relationship("a.org", "https://a"))
        .await
        .unwrap();
    assert!(matches!(
        ds.create_federation_relationship(relationship("b.org", "https://x"))
            .await,
        Err(DataStoreError::AlreadyExists { .. })
    ));
    ds.update_federation_relationship(relationship("b.org", "https://b2"))
        .await
        .unwrap();
    assert!(is_not_found(
        ds.update_federation_relationship(relationship("c.org", "https://c"))
            .await
    ));
    assert_eq!(
        ds.get_federation_relationship("b.org").await.unwrap(),
        Some(relationship("b.org", "https://b2"))
    );
    assert_eq!(
        ds.list_federation_relationships().await.unwrap(),
        [
            relationship("a.org", "https://a"),
            relationship("b.org", "https://b2")
        ],
        "ordered by trust domain"
    );
    let removed = ds.delete_federation_relationship("a.org").await.unwrap();
    assert_eq!(removed, relationship("a.org", "https://a"));
    assert!(is_not_found(
        ds.delete_federation_relationship("a.org").await
    ));
}

async fn check_ca_journal(ds: Arc<dyn DataStore>) {
    assert_eq!(ds.get_ca_journal("a").await.unwrap(), None);
    ds.set_ca_journal("a", b"first".to_vec()).await.unwrap();
    assert_eq!(
        ds.get_ca_journal("a").await.unwrap(),
        Some(b"first".to_vec())
    );
    ds.set_ca_journal("a", vec![0, 255, 1]).await.unwrap();
    assert_eq!(ds.get_ca_journal("a").await.unwrap(), Some(vec![0, 255, 1]));
    // Each server has its own journal.
    assert_eq!(ds.get_ca_journal("b").await.unwrap(), None);
    ds.set_ca_journal("b", b"other".to_vec()).await.unwrap();
    assert_eq!(
        ds.get_ca_journal("b").await.unwrap(),
        Some(b"other".to_vec())
    );
    assert_eq!(ds.get_ca_journal("a").await.unwrap(), Some(vec![0, 255, 1]));
}

/// `update_bundle` from many writers at once (as servers sharing a
/// database): every change lands, none overwrites another.
async fn check_bundle_update_race(ds: Arc<dyn DataStore>) {
    let unchanged = ds.update_bundle("example.org", &|_| None).await.unwrap();
    assert_eq!(unchanged, None, "no bundle, no change");
    let writers = 16u8;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let ds = ds.clone();
        tasks.push(tokio::spawn(async move {
            ds.update_bundle("example.org", &|current| {
                let mut b = current.unwrap_or_else(|| bundle("example.org", 0));
                b.x509_authorities.push(vec![i]);
                b.sequence_number += 1;
                Some(b)
            })
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        let stored = t.await.unwrap().unwrap();
        assert!(stored.sequence_number >= 1);
    }
    let got = ds.get_bundle("example.org").await.unwrap().unwrap();
    assert_eq!(got.sequence_number, u64::from(writers));
    for i in 0..writers {
        assert!(got.x509_authorities.contains(&vec![i]), "writer {i} lost");
    }
    let same = ds.update_bundle("example.org", &|_| None).await.unwrap();
    assert_eq!(same, Some(got), "no change returns what is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_temporary_conforms() {
    run_suite(|| async {
        Arc::new(SledDataStore::open_temporary().unwrap()) as Arc<dyn DataStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_on_disk_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let made = std::sync::atomic::AtomicUsize::new(0);
    run_suite(|| {
        let n = made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("store-{n}"));
        async move { Arc::new(SledDataStore::open(&path).unwrap()) as Arc<dyn DataStore> }
    })
    .await;
}

// --- persistence and corrupt records (sled) ---

/// Puts one of everything into a store at `path` and closes it.
async fn fill(path: &Path) -> RegistrationEntry {
    let ds = SledDataStore::open(path).unwrap();
    let e = ds
        .create_entry(entry("kept", AGENT, &["unix:uid:1"]))
        .await
        .unwrap();
    let e = ds.update_entry(e).await.unwrap();
    ds.create_agent(agent(AGENT)).await.unwrap();
    ds.create_join_token(token("kept-token", i64::MAX))
        .await
        .unwrap();
    ds.set_bundle(bundle("example.org", 3)).await.unwrap();
    ds.set_ca_journal("s1", b"journal".to_vec()).await.unwrap();
    e
}

#[tokio::test]
async fn sled_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let kept = fill(dir.path()).await;
    let ds = SledDataStore::open(dir.path()).unwrap();
    assert_eq!(ds.get_entry(&kept.id).await.unwrap(), Some(kept.clone()));
    let under_agent = ds.list_entries(&by_parent(AGENT)).await.unwrap();
    assert_eq!(under_agent, std::slice::from_ref(&kept));
    assert_eq!(ds.count_entries().await.unwrap(), 1);
    assert_eq!(ds.entries_revision().await.unwrap(), 2);
    assert_eq!(ds.get_agent(AGENT).await.unwrap(), Some(agent(AGENT)));
    let got = ds.get_bundle("example.org").await.unwrap();
    assert_eq!(got, Some(bundle("example.org", 3)));
    assert_eq!(
        ds.get_ca_journal("s1").await.unwrap(),
        Some(b"journal".to_vec())
    );
    // The similar-entry index came back too.
    let dup = entry("kept", AGENT, &["unix:uid:1"]);
    assert_eq!(existing_id(ds.create_entry(dup).await), kept.id);
    assert!(ds.take_join_token("kept-token").await.unwrap().is_some());
    drop(ds);
    let ds = SledDataStore::open(dir.path()).unwrap();
    let again = ds.take_join_token("kept-token").await.unwrap();
    assert_eq!(again, None, "a take is durable");
}

/// Writes `value` under `key` in `tree` through a raw sled handle.
fn plant(path: &Path, tree: &str, key: &[u8], value: &[u8]) {
    // sled lets go of its file lock a moment after the last handle drops
    // (SledDataStore::open waits for it the same way).
    let mut tries = 0;
    let db = loop {
        match sled::open(path) {
            Err(sled::Error::Io(e)) if tries < 100 && e.to_string().contains("lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    db.open_tree(tree).unwrap().insert(key, value).unwrap();
    db.flush().unwrap();
}

/// Where a `Corrupt` error points.
fn corrupt_at<T: std::fmt::Debug>(r: Result<T, DataStoreError>) -> String {
    match r {
        Err(DataStoreError::Corrupt { location, .. }) => location,
        other => panic!("want Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn sled_corrupt_records_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path()).await;
    let bad_agent = "spiffe://example.org/bad";
    plant(dir.path(), "entries", b"broken", b"{not json");
    plant(dir.path(), "agents", bad_agent.as_bytes(), b"\xff\x00");
    plant(dir.path(), "bundles", b"bad.org", br#"{"trust_domain": 7}"#);
    plant(dir.path(), "join_tokens", b"bad-token", b"[]");
    let ds = SledDataStore::open(dir.path()).unwrap();

    assert_eq!(corrupt_at(ds.get_entry("broken").await), "entries/broken");
    let all = ds.list_entries(&EntryFilter::default()).await;
    assert_eq!(corrupt_at(all), "entries/broken");
    assert_eq!(
        corrupt_at(ds.list_agents().await),
        format!("agents/{bad_agent}")
    );
    // A failed delete changes nothing; writing a good record repairs it.
    corrupt_at(ds.delete_agent(bad_agent).await);
    let mut good = agent(bad_agent);
    good.banned = true;
    ds.update_agent(good.clone()).await.unwrap();
    assert_eq!(ds.get_agent(bad_agent).await.unwrap(), Some(good));
    assert_eq!(
        corrupt_at(ds.get_bundle("bad.org").await),
        "bundles/bad.org"
    );
    assert_eq!(corrupt_at(ds.list_bundles().await), "bundles/bad.org");
    // A token's key is the secret: the error does not show it.
    let taken = ds.take_join_token("bad-token").await;
    assert_eq!(corrupt_at(taken), "join_tokens/<redacted>");
    drop(ds);

    plant(dir.path(), "meta", b"entries_revision", b"xyz");
    let ds = SledDataStore::open(dir.path()).unwrap();
    let revision = ds.entries_revision().await;
    assert_eq!(corrupt_at(revision), "meta/entries_revision");
    let write = ds.create_entry(entry("new", AGENT, &[])).await;
    assert_eq!(corrupt_at(write), "meta/entries_revision");
}
