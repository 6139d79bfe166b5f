//! HPACK header block decoding (RFC 7541, sections 5 and 6).

use super::huffman;
use super::table::DynamicTable;
use super::Field;

/// Why a header block does not decode. Every one is a connection error
/// (`COMPRESSION_ERROR`) in HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The block ends inside a representation.
    #[error("header block is truncated")]
    Truncated,
    /// An integer does not fit the bounds this decoder accepts.
    #[error("header block has an oversized integer")]
    IntegerOverflow,
    /// Index 0, or past the end of the dynamic table.
    #[error("header block refers to table index {0}, which does not exist")]
    BadIndex(usize),
    /// A dynamic table size update above the agreed maximum, or after the
    /// first field of the block.
    #[error("header block has an invalid dynamic table size update")]
    BadSizeUpdate,
    /// A Huffman string that does not decode.
    #[error(transparent)]
    Huffman(#[from] huffman::HuffmanError),
    /// The decoded fields exceed the size this decoder accepts.
    #[error("header list is larger than {0} bytes")]
    TooLarge(usize),
}

/// Decodes header blocks of one connection direction, keeping its dynamic
/// table between blocks.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    max_list_size: usize,
}

impl Decoder {
    /// A decoder whose peer may use a dynamic table of up to
    /// `table_size_limit` bytes (the `SETTINGS_HEADER_TABLE_SIZE` the
    /// decoding side advertised), refusing blocks that decode to more than
    /// `max_list_size` bytes (counted as in `SETTINGS_MAX_HEADER_LIST_SIZE`).
    pub fn new(table_size_limit: usize, max_list_size: usize) -> Self {
        Decoder {
            table: DynamicTable::new(table_size_limit),
            max_list_size,
        }
    }

    /// The dynamic table's current size (tests).
    #[cfg(test)]
    pub(crate) fn table_size(&self) -> usize {
        self.table.size()
    }

    /// Decodes one complete header block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, DecodeError> {
        let mut input = Input { buf: block, at: 0 };
        let mut fields = Vec::new();
        let mut list_size = 0usize;
        while let Some(first) = input.peek() {
            let field = if first & 0x80 != 0 {
                let index = input.integer(7)?;
                let (name, value) = self.table.get(index).ok_or(DecodeError::BadIndex(index))?;
                Field {
                    name: name.to_vec(),
                    value: value.to_vec(),
                    never_indexed: false,
                }
            } else if first & 0xc0 == 0x40 {
                let field = self.literal(&mut input, 6, list_size)?;
                self.table.insert(&field.name, &field.value);
                field
            } else if first & 0xe0 == 0x20 {
                let size = input.integer(5)?;
                if !fields.is_empty() || !self.table.set_max_size(size) {
                    return Err(DecodeError::BadSizeUpdate);
                }
                continue;
            } else {
                let mut field = self.literal(&mut input, 4, list_size)?;
                field.never_indexed = first & 0x10 != 0;
                field
            };
            list_size += field.size();
            if list_size > self.max_list_size {
                return Err(DecodeError::TooLarge(self.max_list_size));
            }
            fields.push(field);
        }
        Ok(fields)
    }

    /// A literal field whose name index has a `prefix`-bit prefix.
    fn literal(
        &self,
        input: &mut Input<'_>,
        prefix: u8,
        list_size: usize,
    ) -> Result<Field, DecodeError> {
        let budget = self.max_list_size.saturating_sub(list_size);
        let index = input.integer(prefix)?;
        let name = if index == 0 {
            input.string(budget, self.max_list_size)?
        } else {
            self.table
                .get(index)
                .ok_or(DecodeError::BadIndex(index))?
                .0
                .to_vec()
        };
        let value = input.string(budget.saturating_sub(name.len()), self.max_list_size)?;
        Ok(Field {
            name,
            value,
            never_indexed: false,
        })
    }
}

struct Input<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.at).copied()
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = self.peek().ok_or(DecodeError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    /// An integer with an `n`-bit prefix (RFC 7541, 5.1), at most 2^28.
    fn integer(&mut self, n: u8) -> Result<usize, DecodeError> {
        let mask = (1u8 << n) - 1;
        let mut value = usize::from(self.byte()? & mask);
        if value < usize::from(mask) {
            return Ok(value);
        }
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            value += usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 21 {
                return Err(DecodeError::IntegerOverflow);
            }
        }
    }

    /// A string literal (RFC 7541, 5.2) of at most `budget` decoded bytes.
    fn string(&mut self, budget: usize, max: usize) -> Result<Vec<u8>, DecodeError> {
        let huffman = self.peek().ok_or(DecodeError::Truncated)? & 0x80 != 0;
        let len = self.integer(7)?;
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or(DecodeError::Truncated)?;
        let raw = &self.buf[self.at..end];
        self.at = end;
        if !huffman {
            if raw.len() > budget {
                return Err(DecodeError::TooLarge(max));
            }
            return Ok(raw.to_vec());
        }
        let mut out = Vec::with_capacity(raw.len().min(budget));
        if !huffman::decode(raw, &mut out, budget)? {
            return Err(DecodeError::TooLarge(max));
        }
        Ok(out)
    }
}
