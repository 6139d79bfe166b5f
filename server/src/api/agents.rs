//! Agent records in memory, for the authorization of agent calls.
//!
//! Every agent call is authorized against the caller's stored record
//! (banned? the current SVID serial? its node selectors), so without a
//! cache every sync of every agent is one database read. Servers sharing
//! a database keep the records they read and follow the store's agent
//! change log ([`DataStore::agent_changes_since`]) at most every
//! [`FOLLOW_INTERVAL`], when a call comes: a record another server
//! changed (a ban, an eviction, a renewal) is read again by the next call
//! that needs it, so a write on one server takes effect on every other
//! within that interval. Writes made by this server mark the record at
//! once ([`AgentRecords::written`]).
//!
//! A store that keeps no log (sled, read locally) is read on every call;
//! the records are then kept only as the last known ones.
//!
//! While the database cannot be reached, an agent is authorized by its
//! record as last read (fresh or not): its SVIDs stay current, and no ban
//! can be written meanwhile. An agent never read is refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::datastore::{AttestedAgent, DataStore, DataStoreError, Result};

/// How long the records may go without looking at the change log.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Record {
    agent: AttestedAgent,
    /// Current as of the log position; stale records are read again, and
    /// used only while the database cannot be reached.
    fresh: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// The change log revision the fresh records are current as of;
    /// `None` until read, and for a store without a log.
    position: Option<u64>,
    /// The store keeps no log: every call reads it.
    no_log: bool,
    followed_at: Option<Instant>,
    /// Bumped whenever records go stale, so that a read that raced an
    /// invalidation files its result as stale.
    epoch: u64,
    records: HashMap<String, Record>,
}

/// The cache; one per server.
#[derive(Debug)]
pub struct AgentRecords {
    interval: Duration,
    inner: Mutex<Inner>,
    /// One caller follows the log at a time; the others use the records
    /// as they are.
    following: tokio::sync::Mutex<()>,
}

impl Default for AgentRecords {
    fn default() -> Self {
        Self::with_interval(FOLLOW_INTERVAL)
    }
}

impl AgentRecords {
    /// A cache that looks at the change log at most every `interval`.
    pub fn with_interval(interval: Duration) -> Self {
        AgentRecords {
            interval,
            inner: Mutex::default(),
            following: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The record of agent `spiffe_id`: from memory when it is current,
    /// else from `datastore`.
    pub async fn get(
        &self,
        datastore: &dyn DataStore,
        spiffe_id: &str,
    ) -> Result<Option<AttestedAgent>> {
        self.follow(datastore).await;
        let epoch = {
            let inner = self.lock();
            if inner.position.is_some() {
                if let Some(record) = inner.records.get(spiffe_id).filter(|r| r.fresh) {
                    return Ok(Some(record.agent.clone()));
                }
            }
            inner.epoch
        };
        match datastore.get_agent(spiffe_id).await {
            Ok(Some(agent)) => {
                let mut inner = self.lock();
                let fresh = inner.epoch == epoch;
                inner.records.insert(
                    spiffe_id.to_owned(),
                    Record {
                        agent: agent.clone(),
                        fresh,
                    },
                );
                Ok(Some(agent))
            }
            Ok(None) => {
                self.lock().records.remove(spiffe_id);
                Ok(None)
            }
            Err(DataStoreError::Unavailable(reason)) => {
                if let Some(record) = self.lock().records.get(spiffe_id) {
                    tracing::debug!(agent_id = %spiffe_id, %reason, "database unavailable: authorizing the agent by its last known record");
                    return Ok(Some(record.agent.clone()));
                }
                Err(DataStoreError::Unavailable(reason))
            }
            Err(e) => Err(e),
        }
    }

    /// This server wrote (or deleted) the record of `spiffe_id`: the next
    /// call reads it again.
    pub fn written(&self, spiffe_id: &str) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        if let Some(record) = inner.records.get_mut(spiffe_id) {
            record.fresh = false;
        }
    }

    /// Brings the records up to the store's agent change log when the last
    /// look is older than the interval ([`FOLLOW_INTERVAL`]). Failures leave the records
    /// as they are (while the database is down, the last known ones are
    /// what agents are authorized by) and are retried after the interval.
    async fn follow(&self, datastore: &dyn DataStore) {
        let position = {
            let inner = self.lock();
            if inner.no_log
                || inner
                    .followed_at
                    .is_some_and(|at| at.elapsed() < self.interval)
            {
                return;
            }
            inner.position
        };
        let Ok(_held) = self.following.try_lock() else {
            return;
        };
        let outcome = match datastore.agents_revision().await {
            Ok(None) => {
                let mut inner = self.lock();
                inner.no_log = true;
                return;
            }
            Ok(Some(revision)) => match position {
                None => Ok((revision, None)),
                Some(position) => datastore
                    .agent_changes_since(position)
                    .await
                    .map(|ids| (revision, ids)),
            },
            Err(e) => Err(e),
        };
        let mut inner = self.lock();
        inner.followed_at = Some(Instant::now());
        match outcome {
            Ok((revision, Some(ids))) => {
                if !ids.is_empty() {
                    inner.epoch = inner.epoch.wrapping_add(1);
                    for id in &ids {
                        if let Some(record) = inner.records.get_mut(id) {
                            record.fresh = false;
                        }
                    }
                }
                inner.position = Some(revision);
            }
            Ok((revision, None)) => {
                // First look, or the log no longer reaches back: nothing
                // held is known to be current.
                inner.epoch = inner.epoch.wrapping_add(1);
                for record in inner.records.values_mut() {
                    record.fresh = false;
                }
                inner.position = Some(revision);
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the agent change log; keeping the agent records as they are");
            }
        }
    }
}

#[cfg(test)]
mod tests;
