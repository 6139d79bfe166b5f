//! The HPACK Huffman code (RFC 7541, Appendix B), decoding only.
//!
//! The code is canonical: codes of one length are consecutive and follow
//! the symbols' order, and each length's first code continues from the
//! previous length's last. So the table is fully given by each symbol's
//! code length ([`CODE_LENGTHS`]); the codes themselves are derived. Tests
//! check the derivation against the RFC's examples and against `h2`'s
//! encoder.

/// The end-of-string symbol; never valid inside a string.
const EOS: u16 = 256;
/// The longest code (EOS and three control characters).
const MAX_LEN: usize = 30;

/// Code length in bits of each symbol 0..=255 and EOS (256).
#[rustfmt::skip]
const CODE_LENGTHS: [u8; 257] = [
    // 0x00..0x1f: control characters
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    // ' ' ! " # $ % & ' ( ) * + , - . /
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    // 0-9 : ; < = > ?
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    // @ A-O
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    // P-Z [ \ ] ^ _
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    // ` a-o
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    // p-z { | } ~ DEL
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    // 0x80..0xff
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    // EOS
    30,
];

/// The canonical decoding tables: for each length, the first code, the
/// number of codes, and where its symbols start in `symbols`.
struct Table {
    first: [u32; MAX_LEN + 1],
    count: [u16; MAX_LEN + 1],
    offset: [u16; MAX_LEN + 1],
    /// Symbols ordered by (length, symbol).
    symbols: [u16; 257],
}

const TABLE: Table = build();

const fn build() -> Table {
    let mut count = [0u16; MAX_LEN + 1];
    let mut s = 0;
    while s < 257 {
        count[CODE_LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let mut first = [0u32; MAX_LEN + 1];
    let mut offset = [0u16; MAX_LEN + 1];
    let mut code = 0u32;
    let mut at = 0u16;
    let mut len = 1;
    while len <= MAX_LEN {
        first[len] = code;
        offset[len] = at;
        code = (code + count[len] as u32) << 1;
        at += count[len];
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut next = offset;
    let mut s = 0;
    while s < 257 {
        let len = CODE_LENGTHS[s] as usize;
        symbols[next[len] as usize] = s as u16;
        next[len] += 1;
        s += 1;
    }
    Table {
        first,
        count,
        offset,
        symbols,
    }
}

/// A Huffman-coded string that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HuffmanError {
    /// The end-of-string symbol appears inside the string.
    #[error("Huffman string contains the EOS symbol")]
    Eos,
    /// The string ends in more than 7 bits of padding, or padding that is
    /// not the EOS prefix (all ones).
    #[error("Huffman string has invalid padding")]
    Padding,
}

/// Decodes a Huffman-coded string, appending to `out`. Stops early (with
/// `Ok(false)`) once `out` would grow past `limit` bytes.
pub fn decode(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<bool, HuffmanError> {
    let t = &TABLE;
    let mut code: u32 = 0;
    let mut len: usize = 0;
    for byte in input {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let index = code.wrapping_sub(t.first[len]);
            if index < u32::from(t.count[len]) {
                let symbol = t.symbols[usize::from(t.offset[len]) + index as usize];
                if symbol == EOS {
                    return Err(HuffmanError::Eos);
                }
                if out.len() >= limit {
                    return Ok(false);
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
            } else if len == MAX_LEN {
                // Every 30-bit pattern that is not a code is a prefix of
                // none: the last codes of length 30 end the code space.
                return Err(HuffmanError::Eos);
            }
        }
    }
    // What is left must be a prefix of EOS (all ones), shorter than a byte.
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HuffmanError::Padding);
    }
    Ok(true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes with the derived codes (tests only: the rewriter emits plain
    /// literals).
    pub(crate) fn encode(input: &[u8]) -> Vec<u8> {
        let codes = codes();
        let mut out = Vec::new();
        let mut acc: u64 = 0;
        let mut bits = 0;
        for &b in input {
            let (code, len) = codes[usize::from(b)];
            acc = (acc << len) | u64::from(code);
            bits += len;
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            let pad = 8 - bits;
            out.push(((acc << pad) | ((1 << pad) - 1)) as u8);
        }
        out
    }

    fn codes() -> Vec<(u32, u32)> {
        let t = &TABLE;
        let mut codes = vec![(0, 0); 257];
        for len in 1..=MAX_LEN {
            for i in 0..t.count[len] {
                let symbol = t.symbols[usize::from(t.offset[len] + i)];
                codes[usize::from(symbol)] = (t.first[len] + u32::from(i), len as u32);
            }
        }
        codes
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_code_fills_the_code_space_exactly() {
        // Kraft: sum of 2^-len over all symbols is exactly 1.
        let sum: u64 = CODE_LENGTHS
            .iter()
            .map(|&l| 1u64 << (MAX_LEN - usize::from(l)))
            .sum();
        assert_eq!(sum, 1 << MAX_LEN);
    }

    #[test]
    fn derived_codes_match_rfc_anchor_points() {
        let codes = codes();
        // A few rows of RFC 7541 Appendix B, across all lengths.
        for (symbol, code, len) in [
            (0usize, 0x1ff8u32, 13u32),
            (1, 0x7f_ffd8, 23),
            (9, 0xff_ffea, 24),
            (10, 0x3fff_fffc, 30),
            (b' ' as usize, 0x14, 6),
            (b'0' as usize, 0x0, 5),
            (b':' as usize, 0x5c, 7),
            (b'z' as usize, 0x7b, 7),
            (b'~' as usize, 0x1ffd, 13),
            (127, 0xfff_fffc, 28),
            (128, 0xf_ffe6, 20),
            (195, 0x7_fff1, 19),
            (255, 0x3ff_ffee, 26),
            (256, 0x3fff_ffff, 30),
        ] {
            assert_eq!(codes[symbol], (code, len), "symbol {symbol}");
        }
    }

    #[test]
    fn decodes_the_rfc_examples() {
        for (encoded, plain) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
            ("9bd9 ab", "gzip"),
            (
                "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ] {
            let mut out = Vec::new();
            assert_eq!(decode(&hex(encoded), &mut out, 1024), Ok(true));
            assert_eq!(out, plain.as_bytes());
            assert_eq!(encode(plain.as_bytes()), hex(encoded), "{plain}");
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        assert_eq!(decode(&encode(&all), &mut out, 1024), Ok(true));
        assert_eq!(out, all);
    }

    #[test]
    fn refuses_bad_padding_and_eos() {
        let mut out = Vec::new();
        // '0' is 00000; padding with zeros is not the EOS prefix.
        assert_eq!(decode(&[0x00], &mut out, 16), Err(HuffmanError::Padding));
        // A whole byte of ones is more than 7 bits of padding.
        assert_eq!(
            decode(&[0x07, 0xff], &mut out, 16),
            Err(HuffmanError::Padding)
        );
        // EOS itself (30 ones) inside the string.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], &mut out, 16),
            Err(HuffmanError::Eos)
        );
    }

    #[test]
    fn stops_at_the_limit() {
        let mut out = Vec::new();
        assert_eq!(decode(&encode(b"abcdef"), &mut out, 3), Ok(false));
        assert_eq!(out, b"abc");
    }
}
