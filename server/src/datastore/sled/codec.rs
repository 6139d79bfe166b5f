//! How records, counters and index keys are laid out in sled.
//!
//! Records are JSON, except entries (below). Counters are 8-byte big-endian integers. A change-log
//! row lists entry IDs as length-prefixed parts (4-byte big-endian length,
//! then the bytes), so no ID can run into the next whatever bytes it holds.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ENTRIES;
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

/// The first byte of an entry record in the compact encoding of layout 2:
/// postcard (no field names, integers as varints) of
/// [`RegistrationEntry`]'s fields in declaration order, about a third of
/// the size of its JSON. Layout 1 wrote entries as JSON, which starts with
/// `{`; such records are still read (an upgraded store keeps them until
/// each is next written).
///
/// postcard knows fields only by position: a change to
/// `RegistrationEntry`'s fields needs a new tag here, with this one still
/// decoded as it is now (`entry_record_bytes_are_pinned` fails first).
const ENTRY_POSTCARD: u8 = 1;

/// An entry record as stored.
pub(super) fn encode_entry(entry: &RegistrationEntry) -> Result<Vec<u8>> {
    postcard::to_extend(entry, vec![ENTRY_POSTCARD])
        .map_err(|e| backend("encoding entry record", e))
}

/// An entry record read back, in either encoding; anything else is
/// `Corrupt` naming the entry's key.
pub(super) fn decode_entry(key: &[u8], bytes: &[u8]) -> Result<RegistrationEntry> {
    match bytes.split_first() {
        Some((&ENTRY_POSTCARD, rest)) => match postcard::take_from_bytes(rest) {
            Ok((entry, [])) => Ok(entry),
            Ok((_, extra)) => Err(corrupt(
                ENTRIES,
                key,
                format!("{} bytes after the entry", extra.len()),
            )),
            Err(e) => Err(corrupt(ENTRIES, key, e)),
        },
        Some((b'{', _)) => decode(ENTRIES, key, bytes),
        Some((tag, _)) => Err(corrupt(
            ENTRIES,
            key,
            format!("unknown entry record encoding {tag}"),
        )),
        None => Err(corrupt(ENTRIES, key, "empty entry record")),
    }
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

/// A change-log row's value: the IDs of the entries its write touched, in
/// revision order, each length-prefixed.
pub(super) fn encode_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut value = Vec::new();
    for id in ids {
        push_part(&mut value, id.as_bytes());
    }
    value
}

/// A change-log row's value read back; anything but whole length-prefixed
/// UTF-8 parts is `Corrupt` naming `tree` and `key`.
pub(super) fn decode_ids(tree: &str, key: &[u8], mut value: &[u8]) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    while !value.is_empty() {
        let (len, rest) = value
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(tree, key, "truncated length"))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        if rest.len() < len {
            return Err(corrupt(tree, key, "truncated entry ID"));
        }
        let (id, rest) = rest.split_at(len);
        let id =
            std::str::from_utf8(id).map_err(|_| corrupt(tree, key, "entry ID is not UTF-8"))?;
        ids.push(id.to_owned());
        value = rest;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_log_ids_round_trip_and_garbage_is_corrupt() {
        let value = encode_ids(["a", "", "entry-3"]);
        assert_eq!(decode_ids("t", b"k", &value).unwrap(), ["a", "", "entry-3"]);
        assert!(decode_ids("t", b"k", &[]).unwrap().is_empty());
        for garbage in [
            &value[..value.len() - 1],
            &[0, 0, 1][..],
            &[0, 0, 0, 1, 0xff][..],
        ] {
            let err = decode_ids("t", b"k", garbage).unwrap_err();
            assert!(
                matches!(err, DataStoreError::Corrupt { ref location, .. } if location == "t/k")
            );
        }
    }

    fn full_entry() -> RegistrationEntry {
        RegistrationEntry {
            id: "e1".into(),
            spiffe_id: "spiffe://td/w".into(),
            parent_id: "spiffe://td/a".into(),
            selectors: vec![crate::datastore::StoredSelector {
                kind: "unix".into(),
                value: "uid:1".into(),
            }],
            x509_svid_ttl: 3600,
            jwt_svid_ttl: -1,
            federates_with: vec!["other.org".into()],
            admin: true,
            downstream: false,
            expires_at: 1_700_000_000,
            dns_names: vec!["w.td".into()],
            revision_number: 2,
            store_svid: true,
            hint: "h".into(),
            created_at: -5,
        }
    }

    #[test]
    fn entry_records_round_trip_in_both_encodings() {
        let entry = full_entry();
        let compact = encode_entry(&entry).unwrap();
        assert_eq!(decode_entry(b"e1", &compact).unwrap(), entry);
        let json = serde_json::to_vec(&entry).unwrap();
        assert_eq!(decode_entry(b"e1", &json).unwrap(), entry);
        assert!(
            compact.len() * 2 < json.len(),
            "{} vs {}",
            compact.len(),
            json.len()
        );
    }

    /// The stored bytes of an entry: if this changes, records already on
    /// disk no longer decode (see `ENTRY_POSTCARD`).
    #[test]
    fn entry_record_bytes_are_pinned() {
        let compact = encode_entry(&full_entry()).unwrap();
        // Strings and lists: a varint length, then the bytes or items;
        // signed integers: zigzag varints; bools: one byte.
        let want: Vec<u8> = [
            &b"\x01"[..],             // the tag
            b"\x02e1",                // id
            b"\x0dspiffe://td/w",     // spiffe_id
            b"\x0dspiffe://td/a",     // parent_id
            b"\x01\x04unix\x05uid:1", // selectors
            b"\xa0\x38\x01",          // x509_svid_ttl 3600, jwt_svid_ttl -1
            b"\x01\x09other.org",     // federates_with
            b"\x01\x00",              // admin, downstream
            b"\x80\xc4\x9f\xd5\x0c",  // expires_at 1,700,000,000
            b"\x01\x04w.td",          // dns_names
            b"\x04\x01\x01h\x09",     // revision_number 2, store_svid, hint, created_at -5
        ]
        .concat();
        assert_eq!(compact, want);
    }

    #[test]
    fn garbage_entry_records_are_corrupt() {
        let mut compact = encode_entry(&full_entry()).unwrap();
        compact.push(0);
        for garbage in [
            &b""[..],
            b"\x07xyz",
            b"\x01\xff\xff",
            &compact,
            b"{not json",
        ] {
            let err = decode_entry(b"k", garbage).unwrap_err();
            assert!(
                matches!(err, DataStoreError::Corrupt { ref location, .. } if location == "entries/k"),
                "{err}"
            );
        }
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
