//! HPACK header block encoding without the dynamic table.
//!
//! The rewriter re-encodes every block it passes on, so that the server's
//! decoder never holds dynamic table state the client's encoder does not
//! know about: fields are either fully indexed in the static table or sent
//! as literals without indexing (never-indexed kept as such), names by
//! static index where the static table has them, strings unencoded.

use super::table::{static_field_index, static_name_index};
use super::Field;

/// Appends the encoding of `fields` to `out`.
pub fn encode(fields: &[Field], out: &mut Vec<u8>) {
    for field in fields {
        if !field.never_indexed {
            if let Some(index) = static_field_index(&field.name, &field.value) {
                integer(index, 7, 0x80, out);
                continue;
            }
        }
        let flags = if field.never_indexed { 0x10 } else { 0x00 };
        match static_name_index(&field.name) {
            Some(index) => integer(index, 4, flags, out),
            None => {
                out.push(flags);
                string(&field.name, out);
            }
        }
        string(&field.value, out);
    }
}

/// An integer with an `n`-bit prefix, the prefix byte's other bits `flags`.
fn integer(mut value: usize, n: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    integer(s.len(), 7, 0x00, out);
    out.extend_from_slice(s);
}
