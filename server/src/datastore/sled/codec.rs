//! How records, counters and index keys are laid out in sled.
//!
//! Records are JSON. Counters are 8-byte big-endian integers. Index keys are
//! built from length-prefixed parts (4-byte big-endian length, then the
//! bytes), so no value can run into the next part whatever bytes it holds,
//! and a prefix scan over the leading parts finds exactly the rows of one
//! parent or SPIFFE ID.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::datastore::{DataStoreError, RegistrationEntry, Result};

/// Shown instead of a join token's value wherever a key would be printed.
pub(super) const REDACTED: &[u8] = b"<redacted>";

/// A storage-engine failure with what was being done.
pub(super) fn backend(context: &str, e: impl std::fmt::Display) -> DataStoreError {
    DataStoreError::Backend(format!("{context}: {e}"))
}

/// A record as stored.
pub(super) fn encode<T: Serialize>(kind: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| backend(&format!("encoding {kind} record"), e))
}

/// A stored record read back; anything but valid JSON of `T` is `Corrupt`
/// naming `tree` and `key`.
pub(super) fn decode<T: DeserializeOwned>(tree: &str, key: &[u8], bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(tree, key, e))
}

/// A `Corrupt` error at `tree/key`.
pub(super) fn corrupt(tree: &str, key: &[u8], reason: impl std::fmt::Display) -> DataStoreError {
    DataStoreError::Corrupt {
        location: format!("{tree}/{}", String::from_utf8_lossy(key)),
        reason: reason.to_string(),
    }
}

/// A counter as stored.
pub(super) fn encode_u64(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

/// A stored counter read back (absent counts as 0).
pub(super) fn decode_u64(tree: &str, key: &[u8], bytes: Option<&[u8]>) -> Result<u64> {
    match bytes {
        None => Ok(0),
        Some(b) => <[u8; 8]>::try_from(b)
            .map(u64::from_be_bytes)
            .map_err(|_| corrupt(tree, key, format!("counter of {} bytes, want 8", b.len()))),
    }
}

fn push_part(key: &mut Vec<u8>, part: &[u8]) {
    // Parts longer than 4 GiB cannot reach the store: sled values are far
    // smaller. Saturate rather than wrap so a key never aliases another.
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(part);
}

/// The prefix under which an index keeps the rows of one value.
pub(super) fn index_prefix(value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + value.len());
    push_part(&mut key, value.as_bytes());
    key
}

/// An index row: the indexed value, then the entry ID. Rows of one value
/// sort by entry ID.
pub(super) fn index_key(value: &str, id: &str) -> Vec<u8> {
    let mut key = index_prefix(value);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The entry ID at the end of an index row under `prefix`.
pub(super) fn id_from_index_key<'k>(prefix: &[u8], key: &'k [u8]) -> &'k [u8] {
    key.get(prefix.len()..).unwrap_or_default()
}

/// The key that makes two entries "similar": same parent, same SPIFFE ID,
/// same selector set (order and repeats do not matter).
pub(super) fn similar_key(entry: &RegistrationEntry) -> Vec<u8> {
    entry.similarity_key()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_prefix_does_not_match_longer_values() {
        let row = index_key("spiffe://td/agent1", "id");
        assert!(!row.starts_with(&index_prefix("spiffe://td/agent")));
        assert!(row.starts_with(&index_prefix("spiffe://td/agent1")));
        assert_eq!(
            id_from_index_key(&index_prefix("spiffe://td/agent1"), &row),
            b"id"
        );
    }

    #[test]
    fn bad_counter_is_corrupt() {
        assert_eq!(decode_u64("meta", b"k", None).unwrap(), 0);
        assert_eq!(
            decode_u64("meta", b"k", Some(&7u64.to_be_bytes())).unwrap(),
            7
        );
        let err = decode_u64("meta", b"k", Some(b"xyz")).unwrap_err();
        assert!(
            matches!(err, DataStoreError::Corrupt { ref location, .. } if location == "meta/k")
        );
    }
}
