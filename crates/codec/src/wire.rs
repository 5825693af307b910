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
    /// A stretch of `buf`, starting at `text_at`, already validated as UTF-8 (see
    /// [`read_str`](Self::read_str)).
    text: &'a str,
    text_at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            text: "",
            text_at: 0,
        }
    }

    /// Current offset from the start of the datum.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    #[inline(always)]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    #[cold]
    fn truncated(&self, needed: usize) -> CodecError {
        CodecError::Truncated {
            offset: self.pos,
            needed: needed.saturating_sub(self.remaining()).max(1),
        }
    }

    /// Takes the next `n` bytes.
    #[inline(always)]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.truncated(n))?;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.truncated(n))?;
        self.pos = end;
        Ok(slice)
    }

    #[inline(always)]
    fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Reads a zig-zag varint `long`.
    ///
    /// Why split: the one-byte case is inlined into every caller (a load, a test and a
    /// shift), while the general loop stays out of line; a call per varint with a full
    /// prologue cost more than the decoding itself.
    #[inline(always)]
    pub fn read_long(&mut self) -> Result<i64> {
        // Fast path: most lengths, counts and union indexes fit one byte.
        if let Some(&byte) = self.buf.get(self.pos) {
            if byte & 0x80 == 0 {
                self.pos += 1;
                return Ok(i64::from(byte >> 1) ^ -i64::from(byte & 1));
            }
        }
        self.read_long_slow()
    }

    #[inline(never)]
    fn read_long_slow(&mut self) -> Result<i64> {
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
    #[inline(always)]
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

    #[inline(always)]
    pub fn read_f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take_array::<4>()?))
    }

    #[inline(always)]
    pub fn read_f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take_array::<8>()?))
    }

    /// Reads a length (of bytes, a string, or a block's byte size): non-negative and no larger
    /// than what is left, so that nothing is ever sized from an unchecked number.
    #[inline(always)]
    pub fn read_len(&mut self) -> Result<usize> {
        let len = self.read_long()?;
        let len = usize::try_from(len)
            .map_err(|_| CodecError::invalid(format!("negative length {len}")))?;
        if len > self.remaining() {
            return Err(self.truncated(len));
        }
        Ok(len)
    }

    #[inline(always)]
    pub fn read_bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.read_len()?;
        // `read_len` compared `len` with what is left, so one range check (kept, so that
        // nothing can panic) suffices instead of `take`'s overflow check and range check.
        let end = self.pos.saturating_add(len);
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.truncated(len))?;
        self.pos = end;
        Ok(slice)
    }

    /// Reads a string, validating UTF-8, borrowed from the input.
    ///
    /// Why not `from_utf8` per string: for short strings the call and its byte-by-byte loop
    /// cost more than the rest of reading them. Instead, a string not covered by the ASCII
    /// stretch found so far measures the ASCII stretch starting at it (8 bytes per step),
    /// validates that stretch once, and later strings inside it are sliced out of it (a range
    /// check). A prediction's strings sit in long ASCII stretches (categorical features,
    /// label, tags), so a datum needs a handful of validations instead of dozens. A string
    /// that is not all ASCII is validated alone, as before; either way a string is accepted
    /// exactly when its own bytes are UTF-8.
    #[inline(always)]
    pub fn read_str(&mut self) -> Result<&'a str> {
        let raw = self.read_raw_str()?;
        // The string's bytes end at the current position.
        let end = self.pos;
        let start = end.saturating_sub(raw.bytes.len());
        if let Some(s) = start
            .checked_sub(self.text_at)
            .and_then(|from| self.text.get(from..end - self.text_at))
        {
            return Ok(s);
        }
        self.validate_from(start, end, raw.offset)
    }

    /// `buf[start..end]` as a `str`, keeping the ASCII stretch from `start` for later strings
    /// (or the error at `offset` when the string is not UTF-8).
    #[inline(never)]
    fn validate_from(&mut self, start: usize, end: usize, offset: usize) -> Result<&'a str> {
        let invalid = || CodecError::InvalidUtf8 { offset };
        let rest = self.buf.get(start..).unwrap_or_default();
        let ascii = ascii_prefix_len(rest);
        if ascii >= end - start {
            // All ASCII, so this cannot fail (and takes the validator's word-at-a-time path).
            if let Some(text) = rest.get(..ascii).and_then(|a| std::str::from_utf8(a).ok()) {
                self.text = text;
                self.text_at = start;
                return text.get(..end - start).ok_or_else(invalid);
            }
        }
        rest.get(..end - start)
            .and_then(|s| std::str::from_utf8(s).ok())
            .ok_or_else(invalid)
    }

    /// Reads a string's bytes without validating them yet (see [`RawStr`]).
    #[inline(always)]
    pub fn read_raw_str(&mut self) -> Result<RawStr<'a>> {
        let offset = self.pos;
        let bytes = self.read_bytes()?;
        Ok(RawStr { bytes, offset })
    }

    /// Reads the header of an array or map block: the item count (0 ends the sequence).
    ///
    /// A negative count announces the block's size in bytes, which is read and checked here.
    /// `min_item_bytes` is the smallest encoding of one item; a count that could not fit in the
    /// remaining input is rejected before any loop runs. Items that take no bytes at all (such
    /// as `null`) are capped at [`MAX_ZERO_WIDTH_ITEMS`] so a tiny datum cannot spin forever.
    #[inline(always)]
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

/// Number of leading ASCII bytes of `bytes`, looked at 8 bytes at a time.
fn ascii_prefix_len(bytes: &[u8]) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut n = 0;
    for chunk in &mut chunks {
        let word = chunk
            .first_chunk::<8>()
            .map_or(HIGH, |c| u64::from_le_bytes(*c));
        let high = word & HIGH;
        if high != 0 {
            // Little-endian: the lowest set high bit belongs to the first non-ASCII byte.
            return n + high.trailing_zeros() as usize / 8;
        }
        n += 8;
    }
    n + chunks
        .remainder()
        .iter()
        .take_while(|b| b.is_ascii())
        .count()
}

/// The bytes of an Avro string whose UTF-8 validation is deferred.
///
/// Why: validating a short string costs more than reading it, and a caller that recognises
/// the bytes as equal to a string it already holds (a feature name seen in the previous
/// message) knows they are valid UTF-8 without looking at them again. Whoever turns a
/// `RawStr` into text must go through [`to_str`](Self::to_str) (or compare it with a known
/// `str`), so malformed input is still rejected with the offset of the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStr<'a> {
    pub bytes: &'a [u8],
    /// Offset of the string (its length prefix) in the datum.
    pub offset: usize,
}

impl<'a> RawStr<'a> {
    /// The bytes as a validated `str`.
    #[inline]
    pub fn to_str(self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes).map_err(|_| CodecError::InvalidUtf8 {
            offset: self.offset,
        })
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

        /// Strings read one after another (with binary bytes between them) are accepted or
        /// rejected exactly as validating each one alone would, whatever the stretch
        /// validated before.
        #[test]
        fn read_str_agrees_with_validating_each_string(
            items in proptest::collection::vec(
                (
                    proptest::collection::vec(
                        prop_oneof![
                            Just(&b"abc"[..]),
                            Just(&b"\xc3\xa9"[..]),
                            Just(&b"\xe2\x82\xac"[..]),
                            Just(&b"\xf0\x9f\x98\x80"[..]),
                            Just(&b"\xc3"[..]),
                            Just(&b"\xa9"[..]),
                            Just(&b"\xff"[..]),
                            Just(&b""[..]),
                        ],
                        0..5,
                    ),
                    proptest::collection::vec(any::<u8>(), 0..3),
                ),
                1..12,
            )
        ) {
            let mut datum = Vec::new();
            let mut strings = Vec::new();
            for (pieces, gap) in &items {
                let s: Vec<u8> = pieces.concat();
                put_long(&mut datum, s.len() as i64);
                datum.extend_from_slice(&s);
                put_long(&mut datum, gap.len() as i64);
                datum.extend_from_slice(gap);
                strings.push(s);
            }
            let mut cur = Cursor::new(&datum);
            for s in &strings {
                let offset = cur.position();
                match (cur.read_str(), std::str::from_utf8(s)) {
                    (Ok(got), Ok(want)) => prop_assert_eq!(got, want),
                    (Err(e), Err(_)) => {
                        prop_assert_eq!(e, CodecError::InvalidUtf8 { offset });
                        break;
                    }
                    (got, want) => prop_assert!(false, "{:?} vs {:?}", got, want),
                }
                cur.read_bytes().unwrap();
            }
        }

        #[test]
        fn ascii_prefix_len_finds_the_first_non_ascii_byte(
            bytes in proptest::collection::vec(any::<u8>(), 0..40)
        ) {
            let want = bytes.iter().position(|b| !b.is_ascii()).unwrap_or(bytes.len());
            prop_assert_eq!(ascii_prefix_len(&bytes), want);
            let ascii: Vec<u8> = bytes.iter().map(|b| b & 0x7f).collect();
            prop_assert_eq!(ascii_prefix_len(&ascii), ascii.len());
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
