//! The entries an agent is authorized for (invariant 2), cached.
//!
//! An agent may receive: entries parented by its own ID; entries parented
//! by the SPIFFE ID of a node alias it matches (an entry parented by
//! `spiffe://<td>/spire/server` whose selectors are all among the agent's
//! node selectors); and, recursively, entries parented by the SPIFFE ID of
//! any entry already in the set. Expired entries are left out and do not
//! pass authority on.
//!
//! Agents poll this every second, so the work is cached twice: one index of
//! all entries by parent, kept at the datastore's entry revision, and one
//! result per agent, reused while the revision, the agent's selectors and
//! every included entry's expiry allow.
//!
//! Which revision is current comes from the change refresher when nothing
//! was written through this server since its last read
//! ([`crate::notify::Changes::settled`]), else from the datastore: an
//! agent's sync costs no database read while nothing changes.
//!
//! When the revision moves, the index follows the datastore's change log
//! ([`DataStore::entry_changes_since`]): only the entries written since are
//! read again, so a change costs the same with 100 or 100,000 entries. It
//! reads everything again only at the first call, when the log no longer
//! reaches back to the index's revision, or when more than
//! [`INCREMENTAL_MAX`] entries changed.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use spinel_spiffe::{id, selector, Selector, TrustDomain};

use crate::datastore::{
    AttestedAgent, DataStore, DataStoreError, EntryFilter, RegistrationEntry, Result,
    StoredSelector,
};

/// The entries one agent may receive, sorted by entry ID.
#[derive(Debug, Default)]
pub struct AuthorizedSet {
    /// Sorted by entry ID, so that `get` is a binary search (no map of IDs:
    /// an agent authorized for 100,000 entries would keep a copy of each).
    entries: Vec<Arc<RegistrationEntry>>,
    /// Unix seconds at which the first included entry expires (i64::MAX if none).
    valid_until: i64,
}

impl AuthorizedSet {
    /// All entries, sorted by ID.
    pub fn entries(&self) -> &[Arc<RegistrationEntry>] {
        &self.entries
    }

    /// The entry with `id`, if the agent is authorized for it.
    pub fn get(&self, id: &str) -> Option<&Arc<RegistrationEntry>> {
        self.entries
            .binary_search_by(|e| e.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.entries.get(i))
    }
}

/// Above this many changed entries the index is read again in full
/// rather than entry by entry.
pub const INCREMENTAL_MAX: usize = 10_000;

/// An entry filed by its ID: it hashes and compares as its ID and can be
/// looked up by one, so a set of them is a map from entry ID that keeps no
/// second copy of every ID.
#[derive(Debug, Clone)]
struct ById(Arc<RegistrationEntry>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl std::hash::Hash for ById {
    // As `str` hashes: `Borrow<str>` requires it.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// Every entry, indexed by parent ID, as of one entry revision.
#[derive(Debug, Clone)]
struct EntryIndex {
    revision: u64,
    /// Every entry by ID, to find what a changed entry was.
    by_id: HashSet<ById>,
    /// Parent ID -> its entries by ID.
    by_parent: HashMap<String, HashSet<ById>>,
    /// Node aliases (entries parented by the server), by entry ID, with
    /// their selectors parsed.
    aliases: HashMap<String, (Arc<RegistrationEntry>, Vec<Selector>)>,
}

impl EntryIndex {
    fn empty(revision: u64) -> Self {
        EntryIndex {
            revision,
            by_id: HashSet::new(),
            by_parent: HashMap::new(),
            aliases: HashMap::new(),
        }
    }

    fn insert(&mut self, entry: RegistrationEntry, server_id: &str) {
        self.remove(&entry.id);
        let entry = Arc::new(entry);
        if entry.parent_id == server_id {
            let selectors = entry.selectors.iter().map(Selector::from).collect();
            self.aliases
                .insert(entry.id.clone(), (entry.clone(), selectors));
        }
        self.by_parent
            .entry(entry.parent_id.clone())
            .or_default()
            .insert(ById(entry.clone()));
        self.by_id.insert(ById(entry));
    }

    fn remove(&mut self, id: &str) {
        let Some(ById(old)) = self.by_id.take(id) else {
            return;
        };
        self.aliases.remove(id);
        if let Some(children) = self.by_parent.get_mut(&old.parent_id) {
            children.remove(id);
            if children.is_empty() {
                self.by_parent.remove(&old.parent_id);
            }
        }
    }
}

#[derive(Debug)]
struct CachedSet {
    revision: u64,
    selectors: Vec<StoredSelector>,
    set: Arc<AuthorizedSet>,
}

/// The authorized-entries cache; one per server.
#[derive(Debug)]
pub struct AuthorizedEntries {
    server_id: String,
    index: tokio::sync::Mutex<Option<Arc<EntryIndex>>>,
    per_agent: Mutex<HashMap<String, CachedSet>>,
    /// How often the index was read from the datastore in full.
    full_loads: AtomicU64,
}

impl AuthorizedEntries {
    /// An empty cache for trust domain `td`.
    pub fn new(td: &TrustDomain) -> Self {
        AuthorizedEntries {
            server_id: id::server_id(td).to_string(),
            index: tokio::sync::Mutex::new(None),
            per_agent: Mutex::new(HashMap::new()),
            full_loads: AtomicU64::new(0),
        }
    }

    /// How often the entry index was read from the datastore in full (at
    /// the first call, and when the change log could not be followed).
    pub fn full_loads(&self) -> u64 {
        self.full_loads.load(Ordering::Relaxed)
    }

    /// Reads the index now (at server start, so that the first agent
    /// does not wait for it).
    pub async fn warm(&self, datastore: &dyn DataStore) -> Result<()> {
        self.index(datastore, None).await.map(drop)
    }

    /// The entries `agent` is authorized for at time `now` (Unix seconds).
    /// `settled` is the entry revision the change refresher last read, when
    /// nothing was written through this server since
    /// ([`crate::notify::Changes::settled`]): an index at least that new is
    /// used without asking the datastore. Without it the datastore's
    /// revision is read.
    pub async fn for_agent(
        &self,
        datastore: &dyn DataStore,
        agent: &AttestedAgent,
        now: i64,
        settled: Option<u64>,
    ) -> Result<Arc<AuthorizedSet>> {
        let index = self.index(datastore, settled).await?;
        {
            let cache = self.lock_per_agent();
            if let Some(hit) = cache.get(&agent.spiffe_id) {
                if hit.revision == index.revision
                    && hit.selectors == agent.selectors
                    && now < hit.set.valid_until
                {
                    return Ok(hit.set.clone());
                }
            }
        }
        let set = Arc::new(compute(&index, agent, now));
        let mut cache = self.lock_per_agent();
        // Results of older revisions are useless: drop them all at once
        // rather than one by one, so deleted agents do not linger.
        if cache.values().any(|c| c.revision != index.revision) {
            cache.retain(|_, c| c.revision == index.revision);
        }
        cache.insert(
            agent.spiffe_id.clone(),
            CachedSet {
                revision: index.revision,
                selectors: agent.selectors.clone(),
                set: set.clone(),
            },
        );
        Ok(set)
    }

    fn lock_per_agent(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedSet>> {
        match self.per_agent.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The index at the datastore's revision; while the database cannot be
    /// reached, the index as last read (agents keep getting what they were
    /// authorized for, and no entry can change meanwhile).
    async fn index(
        &self,
        datastore: &dyn DataStore,
        settled: Option<u64>,
    ) -> Result<Arc<EntryIndex>> {
        match self.current_index(datastore, settled).await {
            Err(DataStoreError::Unavailable(reason)) => {
                let slot = self.index.lock().await;
                match slot.as_ref() {
                    Some(index) => {
                        tracing::debug!(revision = index.revision, %reason, "database unavailable: answering from the entries index as last read");
                        Ok(index.clone())
                    }
                    None => Err(DataStoreError::Unavailable(reason)),
                }
            }
            other => other,
        }
    }

    async fn current_index(
        &self,
        datastore: &dyn DataStore,
        settled: Option<u64>,
    ) -> Result<Arc<EntryIndex>> {
        if let Some(settled) = settled {
            if let Some(index) = self.index.lock().await.as_ref() {
                if index.revision >= settled {
                    return Ok(index.clone());
                }
            }
        }
        let revision = datastore.entries_revision().await?;
        let mut slot = self.index.lock().await;
        if let Some(index) = slot.as_mut() {
            if index.revision == revision {
                return Ok(index.clone());
            }
            if index.revision < revision && self.follow(datastore, index, revision).await? {
                return Ok(index.clone());
            }
        }
        // Read the revision before the entries: the list is at least as new
        // as the revision it is filed under, so a change in between only
        // causes one extra reload.
        let started = tokio::time::Instant::now();
        let entries = datastore.list_entries(&EntryFilter::default()).await?;
        self.full_loads.fetch_add(1, Ordering::Relaxed);
        let count = entries.len();
        let index = Arc::new(build_index(revision, entries, &self.server_id));
        tracing::info!(
            revision,
            entries = count,
            elapsed_ms = started.elapsed().as_millis(),
            loads = self.full_loads(),
            "authorized-entries index read in full"
        );
        *slot = Some(index.clone());
        Ok(index)
    }
}

impl AuthorizedEntries {
    /// Brings `index` to `revision` with the entries changed since its own
    /// revision. False when the datastore cannot say what changed, or too
    /// much did: the caller reads everything. The changed entries are read
    /// after the revision, so the index is at least as new as the revision
    /// it is filed under (a later change is read again next time).
    async fn follow(
        &self,
        datastore: &dyn DataStore,
        index: &mut Arc<EntryIndex>,
        revision: u64,
    ) -> Result<bool> {
        let Some(ids) = datastore.entry_changes_since(index.revision).await? else {
            return Ok(false);
        };
        if ids.len() > INCREMENTAL_MAX {
            return Ok(false);
        }
        let mut changed = Vec::with_capacity(ids.len());
        for id in ids {
            let entry = datastore.get_entry(&id).await?;
            changed.push((id, entry));
        }
        // In place unless a sync still holds the old index.
        let index = Arc::make_mut(index);
        for (id, entry) in changed {
            match entry {
                Some(entry) => index.insert(entry, &self.server_id),
                None => index.remove(&id),
            }
        }
        index.revision = revision;
        Ok(true)
    }
}

fn build_index(revision: u64, entries: Vec<RegistrationEntry>, server_id: &str) -> EntryIndex {
    let mut index = EntryIndex::empty(revision);
    for entry in entries {
        index.insert(entry, server_id);
    }
    index
}

fn live(entry: &RegistrationEntry, now: i64) -> bool {
    entry.expires_at == 0 || entry.expires_at > now
}

fn compute(index: &EntryIndex, agent: &AttestedAgent, now: i64) -> AuthorizedSet {
    let node_selectors: BTreeSet<Selector> = agent.selectors.iter().map(Selector::from).collect();
    let mut valid_until = i64::MAX;
    let mut queue: VecDeque<&str> = VecDeque::new();
    queue.push_back(&agent.spiffe_id);
    for (alias, selectors) in index.aliases.values() {
        if live(alias, now) && selector::is_subset(selectors, &node_selectors) {
            if alias.expires_at != 0 {
                valid_until = valid_until.min(alias.expires_at);
            }
            queue.push_back(&alias.spiffe_id);
        }
    }
    let mut seen_parents: HashSet<&str> = HashSet::new();
    let mut seen_entries: HashSet<&str> = HashSet::new();
    let mut entries: Vec<Arc<RegistrationEntry>> = Vec::new();
    while let Some(parent) = queue.pop_front() {
        if !seen_parents.insert(parent) {
            continue;
        }
        for entry in index
            .by_parent
            .get(parent)
            .into_iter()
            .flat_map(|c| c.iter().map(|ById(entry)| entry))
        {
            if !live(entry, now) {
                continue;
            }
            if seen_entries.insert(&entry.id) {
                if entry.expires_at != 0 {
                    valid_until = valid_until.min(entry.expires_at);
                }
                entries.push(entry.clone());
                queue.push_back(&entry.spiffe_id);
            }
        }
    }
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    AuthorizedSet {
        entries,
        valid_until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "spiffe://example.org/spire/server";
    const AGENT: &str = "spiffe://example.org/spire/agent/join_token/a";

    fn entry(id: &str, parent: &str, spiffe_id: &str, selectors: &[&str]) -> RegistrationEntry {
        RegistrationEntry {
            id: id.into(),
            parent_id: parent.into(),
            spiffe_id: spiffe_id.into(),
            selectors: selectors
                .iter()
                .map(|s| StoredSelector::from(&Selector::parse(s).unwrap()))
                .collect(),
            ..Default::default()
        }
    }

    fn agent(selectors: &[&str]) -> AttestedAgent {
        AttestedAgent {
            spiffe_id: AGENT.into(),
            selectors: selectors
                .iter()
                .map(|s| StoredSelector::from(&Selector::parse(s).unwrap()))
                .collect(),
            ..Default::default()
        }
    }

    fn ids(set: &AuthorizedSet) -> Vec<&str> {
        set.entries().iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn descendants_and_aliases() {
        let entries = vec![
            entry("1-own", AGENT, "spiffe://example.org/node", &["x:y"]),
            entry(
                "2-child",
                "spiffe://example.org/node",
                "spiffe://example.org/w",
                &["unix:uid:1"],
            ),
            entry(
                "3-grandchild",
                "spiffe://example.org/w",
                "spiffe://example.org/w2",
                &["unix:uid:2"],
            ),
            entry(
                "4-other",
                "spiffe://example.org/spire/agent/join_token/b",
                "spiffe://example.org/o",
                &["unix:uid:1"],
            ),
            entry(
                "5-alias",
                SERVER,
                "spiffe://example.org/cluster",
                &["k8s_psat:cluster:c"],
            ),
            entry(
                "6-under-alias",
                "spiffe://example.org/cluster",
                "spiffe://example.org/pod",
                &["k8s:ns:a"],
            ),
            entry(
                "7-alias-miss",
                SERVER,
                "spiffe://example.org/other-cluster",
                &["k8s_psat:cluster:d"],
            ),
            entry(
                "8-under-miss",
                "spiffe://example.org/other-cluster",
                "spiffe://example.org/pod2",
                &["k8s:ns:a"],
            ),
            entry(
                "9-loop",
                "spiffe://example.org/w2",
                "spiffe://example.org/node",
                &["x:z"],
            ),
        ];
        let index = build_index(1, entries, SERVER);
        let set = compute(&index, &agent(&["k8s_psat:cluster:c"]), 0);
        assert_eq!(
            ids(&set),
            vec![
                "1-own",
                "2-child",
                "3-grandchild",
                "6-under-alias",
                "9-loop"
            ]
        );
        assert!(set.get("4-other").is_none());
        assert!(set.get("5-alias").is_none());
        let bare = compute(&index, &agent(&[]), 0);
        assert_eq!(
            ids(&bare),
            vec!["1-own", "2-child", "3-grandchild", "9-loop"]
        );
    }

    #[tokio::test]
    async fn the_index_follows_the_change_log_and_agrees_with_a_full_load() {
        use crate::datastore::sled::SledDataStore;
        let ds = SledDataStore::open_temporary().unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        let cache = AuthorizedEntries::new(&td);
        let agent = agent(&["k8s_psat:cluster:c"]);
        let mut stored = Vec::new();
        for e in [
            entry("1-own", AGENT, "spiffe://example.org/node", &["x:y"]),
            entry(
                "2-child",
                "spiffe://example.org/node",
                "spiffe://example.org/w",
                &["unix:uid:1"],
            ),
            entry(
                "3-alias",
                SERVER,
                "spiffe://example.org/cluster",
                &["k8s_psat:cluster:c"],
            ),
            entry(
                "4-under-alias",
                "spiffe://example.org/cluster",
                "spiffe://example.org/pod",
                &["k8s:ns:a"],
            ),
        ] {
            stored.push(ds.create_entry(e).await.unwrap());
        }
        let first = cache.for_agent(&ds, &agent, 0, None).await.unwrap();
        assert_eq!(ids(&first), ["1-own", "2-child", "4-under-alias"]);

        // Move the child under the alias's pod, delete the alias (its
        // subtree goes), add a new own entry.
        let mut moved = stored[1].clone();
        moved.parent_id = "spiffe://example.org/pod".into();
        ds.update_entry(moved).await.unwrap();
        ds.delete_entry("3-alias").await.unwrap();
        ds.create_entry(entry("5-new", AGENT, "spiffe://example.org/n2", &["x:z"]))
            .await
            .unwrap();
        let followed = cache.for_agent(&ds, &agent, 0, None).await.unwrap();
        let fresh = AuthorizedEntries::new(&td)
            .for_agent(&ds, &agent, 0, None)
            .await
            .unwrap();
        assert_eq!(ids(&followed), ids(&fresh));
        assert_eq!(ids(&followed), ["1-own", "5-new"]);
        assert_eq!(
            cache.full_loads(),
            1,
            "the second call read only the changes"
        );

        // The alias comes back: its subtree (the moved child) with it.
        ds.create_entry(entry(
            "3-alias",
            SERVER,
            "spiffe://example.org/cluster",
            &["k8s_psat:cluster:c"],
        ))
        .await
        .unwrap();
        let back = cache.for_agent(&ds, &agent, 0, None).await.unwrap();
        assert_eq!(ids(&back), ["1-own", "2-child", "4-under-alias", "5-new"]);
        assert_eq!(cache.full_loads(), 1);
    }

    #[test]
    fn expired_entries_cut_the_chain() {
        let mut own = entry("1", AGENT, "spiffe://example.org/node", &["x:y"]);
        own.expires_at = 100;
        let child = entry(
            "2",
            "spiffe://example.org/node",
            "spiffe://example.org/w",
            &["x:y"],
        );
        let index = build_index(1, vec![own, child], SERVER);
        let before = compute(&index, &agent(&[]), 50);
        assert_eq!(ids(&before), vec!["1", "2"]);
        assert_eq!(before.valid_until, 100);
        assert!(ids(&compute(&index, &agent(&[]), 100)).is_empty());
    }
}
