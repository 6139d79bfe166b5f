//! Responses shared between callers: one message per distinct identity
//! set, not one per call or per stream.
//!
//! A response is a pure function of the cache snapshot and of which of its
//! identities the caller gets, so every caller that gets the same set from
//! the same snapshot is given the same `Arc`. Streams keep the `Arc` they
//! last sent, so 500 streams of one workload hold one response, not 500
//! copies, and tell "nothing changed" by pointer.
//!
//! [`SharedResponses`] is keyed by the snapshot's generation and a
//! [`SetKey`] (the addresses of the snapshot's identities the caller gets,
//! which name them within that snapshot: the snapshot holds them). A new
//! generation starts an empty table; so that a snapshot change that leaves
//! a caller's response as it was does not make every stream send it again,
//! a newly built response equal to one still held by someone (found by a
//! content digest, confirmed by comparing contents) is replaced by that
//! one. Both tables are bounded ([`SharedResponses::new`]); past the bound
//! a response is built for the call alone, as without the table.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tonic::Status;

/// Which identities of one snapshot a caller gets, as the caller-side
/// builder sees them (e.g. identity addresses, with a bit for "servable
/// now"). Only meaningful together with the snapshot's generation.
pub(crate) type SetKey = Vec<usize>;

/// The responses of one kind, shared between callers.
#[derive(Debug)]
pub(crate) struct SharedResponses<M, K = SetKey> {
    inner: Mutex<Inner<M, K>>,
    limit: usize,
}

#[derive(Debug)]
struct Inner<M, K> {
    /// The generation `by_set` belongs to.
    generation: u64,
    /// This generation's responses by identity set (or, for SDS, by the
    /// resources picked).
    by_set: HashMap<K, Arc<M>>,
    /// Every response someone may still hold, by content digest (several
    /// when digests collide).
    by_digest: HashMap<u64, Vec<Weak<M>>>,
}

/// What a response cache needs of a message: equality, and a digest of its
/// contents (equal messages must have equal digests).
pub(crate) trait Digest {
    /// A digest of the contents.
    fn digest(&self) -> u64;
}

impl<M: Digest + PartialEq, K: Hash + Eq> SharedResponses<M, K> {
    /// A table holding at most `limit` identity sets per generation.
    pub(crate) fn new(limit: usize) -> Self {
        SharedResponses {
            inner: Mutex::new(Inner {
                generation: 0,
                by_set: HashMap::new(),
                by_digest: HashMap::new(),
            }),
            limit,
        }
    }

    /// The response for `set` in snapshot `generation`, built with `build`
    /// (outside the lock) the first time; `None` when `build` says there is
    /// nothing to send.
    pub(crate) fn get_or_build(
        &self,
        generation: u64,
        set: K,
        build: impl FnOnce() -> Option<M>,
    ) -> Option<Arc<M>> {
        {
            let mut inner = self.lock();
            inner.turn_to(generation);
            if inner.generation == generation {
                if let Some(found) = inner.by_set.get(&set) {
                    return Some(found.clone());
                }
            }
        }
        let built = build()?;
        let digest = built.digest();
        let mut inner = self.lock();
        inner.turn_to(generation);
        let shared = match inner.find(digest, &built) {
            Some(same) => same,
            None => {
                let built = Arc::new(built);
                inner.remember(digest, &built, self.limit);
                built
            }
        };
        if inner.generation == generation && inner.by_set.len() < self.limit {
            inner.by_set.insert(set, shared.clone());
        }
        Some(shared)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<M, K>> {
        // The table holds only finished values: a panic elsewhere while it
        // was locked leaves nothing half-written.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many identity sets the current generation holds (for tests).
    #[cfg(test)]
    fn sets(&self) -> usize {
        self.lock().by_set.len()
    }
}

impl<M: PartialEq, K> Inner<M, K> {
    /// Moves to `generation` when it is newer: this generation's sets are
    /// forgotten, and digests of responses no one holds any more.
    fn turn_to(&mut self, generation: u64) {
        if generation <= self.generation {
            return;
        }
        self.generation = generation;
        self.by_set = HashMap::new();
        self.prune();
    }

    fn prune(&mut self) {
        self.by_digest.retain(|_, list| {
            list.retain(|w| w.strong_count() > 0);
            !list.is_empty()
        });
    }

    /// A response still held somewhere with the contents of `built`.
    fn find(&self, digest: u64, built: &M) -> Option<Arc<M>> {
        self.by_digest
            .get(&digest)?
            .iter()
            .filter_map(Weak::upgrade)
            .find(|held| **held == *built)
    }

    fn remember(&mut self, digest: u64, response: &Arc<M>, limit: usize) {
        if self.by_digest.len() >= limit {
            self.prune();
            if self.by_digest.len() >= limit {
                return;
            }
        }
        let list = self.by_digest.entry(digest).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(response));
    }
}

/// One gRPC message frame (flag, length, message), shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Encoded(Bytes);

impl Digest for Encoded {
    fn digest(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.0.hash(&mut h);
        h.finish()
    }
}

impl Encoded {
    /// Frames `message`.
    pub(crate) fn of(message: &impl prost::Message) -> Encoded {
        let len = message.encoded_len();
        let mut buf = Vec::with_capacity(5 + len);
        buf.push(0);
        // A message over 4 GiB cannot be framed; the agent's are far smaller.
        buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        message.encode_raw(&mut buf);
        Encoded(Bytes::from(buf))
    }

    /// The length of the message (the frame without its 5-byte prefix).
    pub(crate) fn message_len(&self) -> usize {
        self.0.len().saturating_sub(5)
    }

    /// The frame's bytes.
    pub(crate) fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The message, decoded again (for the generated service's own
    /// `FetchX509SVID`, which `route.rs` takes over).
    pub(crate) fn decode<M: prost::Message + Default>(&self) -> Result<M, Status> {
        M::decode(self.0.get(5..).unwrap_or_default())
            .map_err(|e| Status::internal(format!("re-decoding a response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Msg(&'static str, u64);

    impl Digest for Msg {
        fn digest(&self) -> u64 {
            // Deliberately collides: equality must decide.
            self.1
        }
    }

    fn built(msg: Msg) -> impl FnOnce() -> Option<Msg> {
        move || Some(msg)
    }

    #[test]
    fn same_set_same_arc() {
        let table = SharedResponses::new(16);
        let a = table
            .get_or_build(1, vec![1, 2], built(Msg("a", 0)))
            .unwrap();
        let again = table
            .get_or_build(1, vec![1, 2], || panic!("built twice"))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &again));
    }

    #[test]
    fn different_sets_different_arcs() {
        let table = SharedResponses::new(16);
        let a = table.get_or_build(1, vec![1], built(Msg("a", 0))).unwrap();
        let b = table.get_or_build(1, vec![2], built(Msg("b", 0))).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(*b, Msg("b", 0));
        assert_eq!(table.sets(), 2);
    }

    #[test]
    fn new_snapshot_builds_again_and_keeps_unchanged_responses() {
        let table = SharedResponses::new(16);
        let a = table.get_or_build(1, vec![1], built(Msg("a", 0))).unwrap();
        // Generation 2 changed this set's response: a new one.
        let changed = table.get_or_build(2, vec![1], built(Msg("a2", 0))).unwrap();
        assert_eq!(*changed, Msg("a2", 0));
        assert!(!Arc::ptr_eq(&a, &changed));
        // Generation 3 built it again, equal to the one still held: shared.
        let same = table.get_or_build(3, vec![1], built(Msg("a2", 0))).unwrap();
        assert!(Arc::ptr_eq(&changed, &same));
        // Once no one holds a response, an equal one is a new value.
        drop((changed, same));
        let fresh = table.get_or_build(4, vec![1], built(Msg("a2", 0))).unwrap();
        assert_eq!(*fresh, Msg("a2", 0));
    }

    #[test]
    fn an_older_snapshot_is_served_but_not_kept() {
        let table = SharedResponses::new(16);
        table
            .get_or_build(5, vec![1], built(Msg("new", 0)))
            .unwrap();
        let old = table
            .get_or_build(4, vec![1], built(Msg("old", 1)))
            .unwrap();
        assert_eq!(*old, Msg("old", 1));
        let new = table
            .get_or_build(5, vec![1], || panic!("built twice"))
            .unwrap();
        assert_eq!(*new, Msg("new", 0));
    }

    #[test]
    fn nothing_to_send_is_not_kept() {
        let table: SharedResponses<Msg> = SharedResponses::new(16);
        assert!(table.get_or_build(1, vec![1], || None).is_none());
        assert_eq!(table.sets(), 0);
    }

    #[test]
    fn bounded() {
        let table = SharedResponses::new(2);
        let held: Vec<_> = (0..5)
            .map(|i| table.get_or_build(1, vec![i], built(Msg("m", i as u64))))
            .collect();
        assert_eq!(table.sets(), 2);
        assert!(table.lock().by_digest.len() <= 2);
        // Past the bound, responses are still built for the call.
        assert!(held.iter().all(Option::is_some));
    }
}
