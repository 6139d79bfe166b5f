//! HPACK (RFC 7541): just enough to read a client's header blocks and write
//! them again without the dynamic table.
//!
//! [`Decoder`] keeps the client's dynamic table and refuses oversized or
//! malformed blocks; [`encode`] writes fields back as static-table indexes
//! and plain literals. Huffman decoding is in `huffman.rs`, the tables in
//! `table.rs`.

mod decoder;
mod encoder;
mod huffman;
mod table;

pub use decoder::{DecodeError, Decoder};
pub use encoder::encode;
pub use huffman::HuffmanError;

/// One header field as decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name, as sent (HTTP/2 requires lowercase; the server checks).
    pub name: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Sent as "never indexed" (a sensitive value an intermediary must not
    /// compress); re-encoded the same way.
    pub never_indexed: bool,
}

impl Field {
    /// A field that may be indexed.
    pub fn new(name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Field {
            name: name.into(),
            value: value.into(),
            never_indexed: false,
        }
    }

    /// Its size as counted against table and header list limits: name,
    /// value and 32 bytes of overhead.
    pub fn size(&self) -> usize {
        self.name.len() + self.value.len() + 32
    }
}

#[cfg(test)]
mod tests;
