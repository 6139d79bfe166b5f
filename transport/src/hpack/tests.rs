//! HPACK against RFC 7541's examples (Appendix C) and round trips.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fields(pairs: &[(&str, &str)]) -> Vec<Field> {
    pairs.iter().map(|(n, v)| Field::new(*n, *v)).collect()
}

const REQUEST_1: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
];
const REQUEST_2: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const REQUEST_3: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];

#[test]
fn requests_without_huffman_c3() {
    let mut d = Decoder::new(4096, 1 << 16);
    let blocks = [
        "828684410f7777772e6578616d706c652e636f6d",
        "828684be58086e6f2d6361636865",
        "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
    ];
    for (block, want) in blocks.iter().zip([REQUEST_1, REQUEST_2, REQUEST_3]) {
        assert_eq!(d.decode(&hex(block)).unwrap(), fields(want));
    }
    assert_eq!(d.table_size(), 164);
}

#[test]
fn requests_with_huffman_c4() {
    let mut d = Decoder::new(4096, 1 << 16);
    let blocks = [
        "828684418cf1e3c2e5f23a6ba0ab90f4ff",
        "828684be5886a8eb10649cbf",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ];
    for (block, want) in blocks.iter().zip([REQUEST_1, REQUEST_2, REQUEST_3]) {
        assert_eq!(d.decode(&hex(block)).unwrap(), fields(want));
    }
    assert_eq!(d.table_size(), 164);
}

#[test]
fn responses_with_eviction_c5() {
    let mut d = Decoder::new(256, 1 << 16);
    let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
    let loc = "https://www.example.com";
    let first = d
        .decode(&hex("4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d"))
        .unwrap();
    assert_eq!(
        first,
        fields(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", loc)
        ])
    );
    assert_eq!(d.table_size(), 222);
    let second = d.decode(&hex("4803333037c1c0bf")).unwrap();
    assert_eq!(
        second,
        fields(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", loc)
        ])
    );
    assert_eq!(d.table_size(), 222);
    let third = d
        .decode(&hex("88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31"))
        .unwrap();
    assert_eq!(
        third,
        fields(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", loc),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
            ),
        ])
    );
    assert_eq!(d.table_size(), 215);
}

#[test]
fn encode_decode_round_trip() {
    let mut want = fields(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/SpiffeWorkloadAPI/FetchX509SVID"),
        (":authority", "tmp%2Fspinel%2Fapi.sock"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("workload.spiffe.io", "true"),
        ("x-long", &"v".repeat(300)),
    ]);
    want.push(Field {
        name: b"authorization".to_vec(),
        value: b"secret".to_vec(),
        never_indexed: true,
    });
    let mut block = Vec::new();
    encode(&want, &mut block);
    // The static entry `:method POST` is one byte.
    assert_eq!(block[0], 0x83);
    let mut d = Decoder::new(4096, 1 << 16);
    assert_eq!(d.decode(&block).unwrap(), want);
    // Nothing was added to the table.
    assert_eq!(d.table_size(), 0);
}

#[test]
fn size_updates_only_first_and_within_the_limit() {
    let mut d = Decoder::new(4096, 1 << 16);
    // Update to 0 then an indexed field: fine.
    assert!(d.decode(&[0x20, 0x82]).is_ok());
    // After a field: refused.
    assert_eq!(d.decode(&[0x82, 0x20]), Err(DecodeError::BadSizeUpdate));
    // Above the limit (4097 = 0x3f 0xe2 0x1f with a 5-bit prefix).
    assert_eq!(
        d.decode(&[0x3f, 0xe2, 0x1f]),
        Err(DecodeError::BadSizeUpdate)
    );
}

#[test]
fn malformed_blocks_are_refused() {
    let mut d = Decoder::new(4096, 1 << 16);
    assert_eq!(d.decode(&[0x80]), Err(DecodeError::BadIndex(0)));
    assert_eq!(d.decode(&[0xbe]), Err(DecodeError::BadIndex(62)));
    assert_eq!(d.decode(&[0x41, 0x05, b'a']), Err(DecodeError::Truncated));
    assert_eq!(
        d.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        Err(DecodeError::IntegerOverflow)
    );
}

#[test]
fn decoded_size_is_bounded() {
    // One 100-byte literal inserted, then referenced 100 times: 13 KB
    // decoded from 100 bytes of input.
    let mut block = vec![0x40, 0x01, b'x', 0x64];
    block.extend(std::iter::repeat_n(b'y', 100));
    block.extend(std::iter::repeat_n(0xbe, 100));
    let mut d = Decoder::new(4096, 4096);
    assert_eq!(d.decode(&block), Err(DecodeError::TooLarge(4096)));
    let mut d = Decoder::new(4096, 1 << 16);
    assert_eq!(d.decode(&block).unwrap().len(), 101);
}
