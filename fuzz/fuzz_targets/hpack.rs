//! The HPACK decoder the HTTP/2 guard runs on every client header block.
//! Input: one byte choosing the dynamic table limit, two bytes (big
//! endian) for the header list limit, then header blocks, each a two-byte
//! length and its bytes, decoded in order on one connection's decoder.
//!
//! Invariants: no panic; a decoded list is within the list limit; the
//! encoder's output (no dynamic table) is no bigger than the list and
//! decodes, on a fresh decoder, to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spinel_transport::hpack::{encode, Decoder};

fuzz_target!(|data: &[u8]| {
    let [table, hi, lo, rest @ ..] = data else {
        return;
    };
    let table_limit = [0, 256, 4096, 65_536][usize::from(table & 3)];
    let max_list = usize::from(u16::from_be_bytes([*hi, *lo]));
    let mut decoder = Decoder::new(table_limit, max_list);
    let mut rest = rest;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (block, tail) = tail.split_at(len);
        rest = tail;
        let Ok(fields) = decoder.decode(block) else {
            // A decoding error ends the connection.
            return;
        };
        let list_size: usize = fields.iter().map(|f| f.size()).sum();
        assert!(
            list_size <= max_list,
            "list of {list_size} bytes over {max_list}"
        );
        let mut encoded = Vec::new();
        encode(&fields, &mut encoded);
        assert!(encoded.len() <= list_size);
        let again = Decoder::new(0, max_list)
            .decode(&encoded)
            .expect("the encoder's output decodes");
        assert_eq!(again, fields, "encode -> decode round trip");
    }
});
