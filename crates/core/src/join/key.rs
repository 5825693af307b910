//! Request keys: the request id hashed once to 128 bits, and a hasher that only folds it.
//!
//! The join never keeps the request id string. It keeps `xxh3_128(request_id)` as two `u64`
//! (two words rather than one `u128` so the map bucket stays 8-byte aligned and 32 bytes with
//! its 16-byte slot).
//!
//! Collisions do not matter: with `n` pending keys the chance that any two of 128-bit hashes
//! collide is about `n² / 2^129`, ≈ 1e-25 at n = 10M. And a collision would only mis-join one
//! pair (or count one input as a duplicate), an error far below the label noise the monitor
//! works with.
//!
//! Because the key is already a uniform hash, the table's hasher ([`KeyHasher`]) does not hash
//! again: it folds the two words into one. SipHash would cost more than the whole lookup.

use std::hash::{BuildHasher, Hash, Hasher};

/// 128-bit hash of a request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestKey {
    pub hi: u64,
    pub lo: u64,
}

impl RequestKey {
    /// Hashes a request id (its UTF-8 bytes, or any bytes) with xxh3-128.
    pub fn from_request_id(id: impl AsRef<[u8]>) -> Self {
        let h = xxhash_rust::xxh3::xxh3_128(id.as_ref());
        RequestKey {
            hi: (h >> 64) as u64,
            lo: h as u64,
        }
    }

    /// A key from its two halves (tests, benchmarks, changelog restore).
    pub const fn from_parts(hi: u64, lo: u64) -> Self {
        RequestKey { hi, lo }
    }

    /// The 64-bit value the hash table uses.
    #[inline]
    pub fn fold(self) -> u64 {
        self.hi ^ self.lo
    }
}

impl Hash for RequestKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.fold());
    }
}

/// Builds [`KeyHasher`]s; the `S` parameter of the join table.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHashBuilder;

impl BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;

    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// A hasher for values that are already uniform hashes. `write_u64` folds the word in
/// unchanged; other writes (not used by [`RequestKey`]) fall back to a multiplicative mix so
/// the hasher stays usable for any key.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = self.0.rotate_left(23) ^ v;
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn same_id_same_key_different_ids_differ() {
        let a = RequestKey::from_request_id("req-1");
        assert_eq!(a, RequestKey::from_request_id(b"req-1"));
        assert_ne!(a, RequestKey::from_request_id("req-2"));
        let h = xxhash_rust::xxh3::xxh3_128(b"req-1");
        assert_eq!((u128::from(a.hi) << 64) | u128::from(a.lo), h);
    }

    #[test]
    fn hasher_folds_the_key() {
        let k = RequestKey::from_request_id("abc");
        assert_eq!(KeyHashBuilder.hash_one(k), k.hi ^ k.lo);
    }

    #[test]
    fn byte_writes_depend_on_content() {
        let mut a = KeyHasher::default();
        a.write(b"ab");
        let mut b = KeyHasher::default();
        b.write(b"ba");
        assert_ne!(a.finish(), b.finish());
    }
}
