//! Avro binary encoding primitives: a bounds-checked reading cursor and appending writers.
//!
//! Everything that comes off the wire goes through [`Cursor`], which never indexes out of
//! bounds, never trusts a length before comparing it with what is left, and returns borrowed
//! slices of the input so that strings are not copied. Zig-zag varints follow the Avro
//! specification: at most 10 bytes for a `long`, and an `int` must fit 32 bits.

use crate::error::{CodecError, Result};

/// A read position in an Avro datum.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// Current offset from the start of the datum.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn truncated(&self, needed: usize) -> CodecError {
        CodecError::Truncated {
            offset: self.pos,
            needed: needed.saturating_sub(self.remaining()).max(1),
        }
    }

    /// Takes the next `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.truncated(n))?;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.truncated(n))?;
        self.pos = end;
        Ok(slice)
    }

    #[inline]
    fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Reads a zig-zag varint `long`.
    #[inline]
    pub fn read_long(&mut self) -> Result<i64> {
        // Fast path: most lengths, counts and union indexes fit one byte.
        if let Some(&byte) = self.buf.get(self.pos) {
            if byte & 0x80 == 0 {
                self.pos += 1;
                return Ok(i64::from(byte >> 1) ^ -i64::from(byte & 1));
            }
        }
        let mut raw: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self.buf.get(self.pos).ok_or_else(|| self.truncated(1))?;
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(CodecError::invalid("varint longer than 64 bits"));
            }
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(CodecError::invalid("varint longer than 10 bytes"));
            }
        }
        // Zig-zag: the low bit is the sign.
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Reads a zig-zag varint `int` (must fit 32 bits).
    #[inline]
    pub fn read_int(&mut self) -> Result<i32> {
        let v = self.read_long()?;
        i32::try_from(v).map_err(|_| CodecError::invalid(format!("int out of range: {v}")))
    }

    pub fn read_bool(&mut self) -> Result<bool> {
        match self.take(1)? {
            [0] => Ok(false),
            [1] => Ok(true),
            other => Err(CodecError::invalid(format!("boolean byte {other:?}"))),
        }
    }

    #[inline]
    pub fn read_f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take_array::<4>()?))
    }

    #[inline]
    pub fn read_f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take_array::<8>()?))
    }

    /// Reads a length (of bytes, a string, or a block's byte size): non-negative and no larger
    /// than what is left, so that nothing is ever sized from an unchecked number.
    #[inline]
    pub fn read_len(&mut self) -> Result<usize> {
        let len = self.read_long()?;
        let len = usize::try_from(len)
            .map_err(|_| CodecError::invalid(format!("negative length {len}")))?;
        if len > self.remaining() {
            return Err(self.truncated(len));
        }
        Ok(len)
    }

    #[inline]
    pub fn read_bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.read_len()?;
        self.take(len)
    }

    /// Reads a string, validating UTF-8, borrowed from the input.
    #[inline]
    pub fn read_str(&mut self) -> Result<&'a str> {
        let offset = self.pos;
        let bytes = self.read_bytes()?;
        std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidUtf8 { offset })
    }

    /// Reads the header of an array or map block: the item count (0 ends the sequence).
    ///
    /// A negative count announces the block's size in bytes, which is read and checked here.
    /// `min_item_bytes` is the smallest encoding of one item; a count that could not fit in the
    /// remaining input is rejected before any loop runs. Items that take no bytes at all (such
    /// as `null`) are capped at [`MAX_ZERO_WIDTH_ITEMS`] so a tiny datum cannot spin forever.
    #[inline]
    pub fn read_block_count(&mut self, min_item_bytes: usize) -> Result<usize> {
        let raw = self.read_long()?;
        let count = if raw < 0 {
            let _byte_size = self.read_len()?;
            raw.checked_neg()
                .ok_or_else(|| CodecError::invalid("block count overflow"))?
        } else {
            raw
        };
        let count = usize::try_from(count)
            .map_err(|_| CodecError::invalid(format!("block count {count}")))?;
        // Zero-width items divide by zero: they get the fixed cap instead.
        let limit = self
            .remaining()
            .checked_div(min_item_bytes)
            .unwrap_or(MAX_ZERO_WIDTH_ITEMS);
        if count > limit {
            return Err(CodecError::invalid(format!(
                "block count {count} exceeds what {} remaining byte(s) can hold",
                self.remaining()
            )));
        }
        Ok(count)
    }

    /// Fails unless the whole datum was consumed.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(CodecError::invalid(format!(
                "{} trailing byte(s) after the record",
                self.remaining()
            )))
        }
    }
}

/// Most items of a zero-width type (e.g. `null`) accepted in one array block.
pub const MAX_ZERO_WIDTH_ITEMS: usize = 1 << 16;

/// Appends a zig-zag varint `long`.
#[inline]
pub fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub fn put_int(out: &mut Vec<u8>, v: i32) {
    put_long(out, i64::from(v));
}

pub fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

#[inline]
pub fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    // A Rust slice length always fits an i64.
    put_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends an unsigned counter as an Avro `long`; values above `i64::MAX` cannot be encoded.
pub fn put_u64(out: &mut Vec<u8>, v: u64, field: &str) -> Result<()> {
    let v = i64::try_from(v)
        .map_err(|_| CodecError::invalid(format!("{field}: {v} does not fit an Avro long")))?;
    put_long(out, v);
    Ok(())
}

/// Appends the item count of a single block (or nothing for an empty sequence) — the caller
/// writes the items and then [`put_block_end`].
pub fn put_block_start(out: &mut Vec<u8>, count: usize) {
    if count > 0 {
        put_long(out, count as i64);
    }
}

pub fn put_block_end(out: &mut Vec<u8>) {
    out.push(0);
}

/// Reads an Avro `long` holding an unsigned counter.
pub fn read_u64(cur: &mut Cursor<'_>, field: &str) -> Result<u64> {
    let v = cur.read_long()?;
    u64::try_from(v).map_err(|_| CodecError::invalid(format!("{field}: negative count {v}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn long_round_trips(v in any::<i64>()) {
            let mut out = Vec::new();
            put_long(&mut out, v);
            prop_assert!(out.len() <= 10);
            let mut cur = Cursor::new(&out);
            prop_assert_eq!(cur.read_long().unwrap(), v);
            prop_assert_eq!(cur.remaining(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut cur = Cursor::new(&bytes);
            let _ = cur.read_str();
            let mut cur = Cursor::new(&bytes);
            let _ = cur.read_block_count(1);
        }
    }

    #[test]
    fn zigzag_matches_the_avro_specification_table() {
        // Pairs from the Avro specification's zig-zag example table.
        for (v, encoded) in [(0i64, 0u8), (-1, 1), (1, 2), (-2, 3), (2, 4), (-64, 0x7f)] {
            let mut out = Vec::new();
            put_long(&mut out, v);
            assert_eq!(out, vec![encoded]);
        }
        let mut out = Vec::new();
        put_long(&mut out, 64);
        assert_eq!(out, vec![0x80, 0x01]);
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let bytes = [0xffu8; 11];
        assert_eq!(
            Cursor::new(&bytes).read_long().unwrap_err().kind(),
            "invalid_data"
        );
        // Ten bytes whose last one carries more than the 64th bit.
        let mut bytes = [0xffu8; 10];
        bytes[9] = 0x02;
        assert_eq!(
            Cursor::new(&bytes).read_long().unwrap_err().kind(),
            "invalid_data"
        );
        let mut max = Vec::new();
        put_long(&mut max, i64::MIN);
        assert_eq!(Cursor::new(&max).read_long().unwrap(), i64::MIN);
    }

    #[test]
    fn lengths_are_checked_before_use() {
        let mut neg = Vec::new();
        put_long(&mut neg, -3);
        assert_eq!(
            Cursor::new(&neg).read_str().unwrap_err().kind(),
            "invalid_data"
        );
        let mut past_end = Vec::new();
        put_long(&mut past_end, 1 << 40);
        past_end.extend_from_slice(b"abc");
        assert_eq!(
            Cursor::new(&past_end).read_str().unwrap_err().kind(),
            "truncated"
        );
        let bad_utf8 = [4u8, 0xff, 0xfe];
        assert_eq!(
            Cursor::new(&bad_utf8).read_str().unwrap_err().kind(),
            "invalid_utf8"
        );
        let int_too_big = {
            let mut v = Vec::new();
            put_long(&mut v, i64::from(i32::MAX) + 1);
            v
        };
        assert!(Cursor::new(&int_too_big).read_int().is_err());
    }

    #[test]
    fn absurd_block_counts_are_rejected() {
        let mut huge = Vec::new();
        put_long(&mut huge, 1_000_000);
        huge.extend_from_slice(&[0; 10]);
        assert!(Cursor::new(&huge).read_block_count(1).is_err());
        let mut min = Vec::new();
        put_long(&mut min, i64::MIN);
        put_long(&mut min, 0);
        assert!(Cursor::new(&min).read_block_count(1).is_err());
        // Negative count with a byte size: count 2, size 2, two one-byte items.
        let mut sized = Vec::new();
        put_long(&mut sized, -2);
        put_long(&mut sized, 2);
        sized.extend_from_slice(&[2, 4]);
        let mut cur = Cursor::new(&sized);
        assert_eq!(cur.read_block_count(1).unwrap(), 2);
        assert_eq!(cur.remaining(), 2);
    }
}
