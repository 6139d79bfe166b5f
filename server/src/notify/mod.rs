//! Change notifications for agents: what makes propagation fast.
//!
//! SPIRE agents poll; Spinel agents also hold one `spinel.server.v1.Watch`
//! stream open (see `api::watch`) and sync as soon as it reports a change.
//! This component keeps the marks that stream reports ([`Marks`]) in one
//! `tokio::sync::watch` channel: every subscriber sees only the latest
//! value, so memory stays bounded however many agents listen or however
//! slowly they read.
//!
//! The marks move in two ways, both handled by one refresher task
//! ([`spawn_refresher`]):
//! - a [`Changes::poke`] after any admin write on this server
//!   ([`NotifyLayer`], around the API router, calls it when a call the
//!   method table marks as mutating completes): the refresher reads
//!   the datastore's entry revision and the bundle sequence at once, and
//!   bumps the generation if neither moved, so bans and authority changes
//!   wake agents too;
//! - a periodic read ([`REFRESH_INTERVAL`]), which catches writes made by
//!   other servers sharing the database and CA rotations.
//!
//! What the refresher read (the entry revision and the stored bundle) also
//! answers agents without a database read ([`Changes::settled`]), as long
//! as nothing was written through this server's API since: the entries
//! index follows that revision, `GetBundle` serves that bundle. A write
//! here pokes before its caller has the answer, so a later agent call
//! reads the store until the refresher has caught up; a write by another
//! server is seen within the interval, as the marks are.

mod layer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::datastore::{DataStore, StoredBundle};

pub use layer::{Mutates, NotifyLayer, Notifying};

/// How often the refresher reads the marks without being poked.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(500);

/// What an agent needs to know to decide whether to sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// The datastore's registration entry revision.
    pub entries_revision: u64,
    /// The sequence number of the server's own trust bundle.
    pub bundle_sequence: u64,
    /// Bumped on a poke (an admin write on this server) that moved
    /// neither of the other marks.
    pub generation: u64,
}

/// What the refresher last read from the datastore.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The entry revision.
    pub entries_revision: u64,
    /// The stored bundle of the trust domain (`None`: none stored yet).
    pub bundle: Option<Arc<StoredBundle>>,
    /// [`Changes::poke`]s counted before the read.
    pokes: u64,
}

/// The latest [`Marks`], shared by the API and the refresher.
#[derive(Debug)]
pub struct Changes {
    tx: watch::Sender<Marks>,
    poked: Notify,
    closed: watch::Sender<bool>,
    pokes: AtomicU64,
    settled: Mutex<Option<Settled>>,
}

impl Default for Changes {
    fn default() -> Self {
        Self::new()
    }
}

impl Changes {
    /// A hub with all marks at zero.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Marks::default());
        Changes {
            tx,
            poked: Notify::new(),
            closed: watch::channel(false).0,
            pokes: AtomicU64::new(0),
            settled: Mutex::new(None),
        }
    }

    /// A receiver of the latest marks (marked unseen, so the first
    /// `changed()` returns at once).
    pub fn subscribe(&self) -> watch::Receiver<Marks> {
        let mut rx = self.tx.subscribe();
        rx.mark_changed();
        rx
    }

    /// Ends every watch: the server is stopping, and long-lived streams
    /// must not hold up its graceful shutdown.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves once [`Changes::close`] was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|closed| *closed).await;
        }
    }

    /// The current marks.
    pub fn current(&self) -> Marks {
        *self.tx.borrow()
    }

    /// Asks the refresher to read the marks now and bump the generation.
    /// Cheap and never blocks; pokes that arrive together coalesce.
    pub fn poke(&self) {
        self.pokes.fetch_add(1, Ordering::SeqCst);
        self.poked.notify_one();
    }

    /// What the refresher last read, unless this server was poked since
    /// (its own write may not be in it): `None` then, and before the first
    /// read, and the caller reads the datastore.
    pub fn settled(&self) -> Option<Settled> {
        let settled = match self.settled.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }?;
        (settled.pokes == self.pokes.load(Ordering::SeqCst)).then_some(settled)
    }

    /// Records marks read from the datastore; subscribers wake only if
    /// something moved. With `bump` (a poke) and nothing moved, the
    /// generation is bumped instead, so a write the marks do not show (a
    /// ban) still wakes them, and a write they do show wakes them once.
    pub fn observe(&self, entries_revision: u64, bundle_sequence: u64, bump: bool) {
        self.tx.send_if_modified(|m| {
            let moved =
                m.entries_revision != entries_revision || m.bundle_sequence != bundle_sequence;
            m.entries_revision = entries_revision;
            m.bundle_sequence = bundle_sequence;
            if bump && !moved {
                m.generation = m.generation.wrapping_add(1);
            }
            moved || bump
        });
    }

    /// Reads both marks from `datastore` and records them.
    pub async fn refresh(&self, datastore: &dyn DataStore, trust_domain: &str, bump: bool) {
        let pokes = self.pokes.load(Ordering::SeqCst);
        let revision = datastore.entries_revision().await;
        let bundle = datastore.get_bundle(trust_domain).await;
        match (revision, bundle) {
            (Ok(revision), Ok(bundle)) => {
                let sequence = bundle
                    .as_ref()
                    .map(|b| b.sequence_number)
                    .unwrap_or_default();
                let settled = Settled {
                    entries_revision: revision,
                    bundle: bundle.map(Arc::new),
                    pokes,
                };
                match self.settled.lock() {
                    Ok(mut guard) => *guard = Some(settled),
                    Err(poisoned) => *poisoned.into_inner() = Some(settled),
                }
                self.observe(revision, sequence, bump);
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read the change marks from the datastore");
                if bump {
                    let m = self.current();
                    self.observe(m.entries_revision, m.bundle_sequence, true);
                }
            }
        }
    }
}

/// Starts the task that keeps `changes` current: on every poke and every
/// [`REFRESH_INTERVAL`].
pub fn spawn_refresher(
    changes: Arc<Changes>,
    datastore: Arc<dyn DataStore>,
    trust_domain: String,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            changes
                .refresh(datastore.as_ref(), &trust_domain, false)
                .await;
            let poked = tokio::select! {
                () = changes.poked.notified() => true,
                () = tokio::time::sleep(REFRESH_INTERVAL) => false,
            };
            if poked {
                changes
                    .refresh(datastore.as_ref(), &trust_domain, true)
                    .await;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_only_moves() {
        let changes = Changes::new();
        let mut rx = changes.subscribe();
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        changes.observe(0, 0, false);
        assert!(!rx.has_changed().unwrap());
        changes.observe(3, 1, false);
        changes.observe(4, 1, false);
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().entries_revision, 4);
        changes.observe(4, 1, true);
        assert_eq!(rx.borrow_and_update().generation, 1);
    }

    #[tokio::test]
    async fn what_was_read_is_settled_until_the_next_poke() {
        let ds = crate::datastore::sled::SledDataStore::open_temporary().unwrap();
        let changes = Changes::new();
        assert!(changes.settled().is_none(), "nothing read yet");
        changes.refresh(&ds, "example.org", false).await;
        let settled = changes.settled().unwrap();
        assert_eq!(settled.entries_revision, 0);
        assert!(settled.bundle.is_none());
        // A write through this server's API pokes: what was read may not
        // hold it, so callers read the store until the next refresh.
        changes.poke();
        assert!(changes.settled().is_none());
        changes.refresh(&ds, "example.org", true).await;
        assert!(changes.settled().is_some());
    }
}
