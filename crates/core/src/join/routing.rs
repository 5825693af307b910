//! Routing check: is an input record on the partition the join expects for its key?
//!
//! The join reads partition *i* of `predictions` with partition *i* of `ground-truth`, so a
//! prediction and its label meet only when both producers put the request id on the same
//! partition. driftwatch's contract is the Java client's default partitioner:
//!
//! ```text
//! partition = toPositive(murmur2(key)) % n        toPositive(x) = x & 0x7fffffff
//! ```
//!
//! (`org.apache.kafka.common.utils.Utils.murmur2`, seed `0x9747b28c`; librdkafka's
//! `murmur2_random` computes the same for a non-empty key). librdkafka's own default,
//! `consistent_random`, takes `crc32(key) % n` (the IEEE CRC-32 of zlib) instead: a label
//! producer left on it sends about (n−1)/n of its labels to a partition where their predictions
//! are not, and every such pair ends as one prediction expired unlabeled plus one orphan label.
//!
//! [`check`] classifies one record; [`RoutingTally`] counts a topic's records and tells which
//! partitioner its misrouted records most likely came from ([`RoutingTally::likely`]): when
//! nearly every misrouted record sits on its CRC32 partition, the producer runs
//! `consistent_random`; otherwise the partitioner is unknown (random, round-robin, explicit
//! partitions or a custom one). A record without a key (or with an empty one) cannot be
//! checked: librdkafka and the Java client place those at random, and the join refuses them
//! anyway by request id.
//!
//! The tally is pure counting: the worker decides when to log, and [`RoutingTally::crossed`]
//! compares the share with the configured alert threshold.

use serde::Serialize;

/// Java's `Utils.murmur2` of `data`: 32-bit MurmurHash2 with Kafka's seed, as a signed int.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka hashes `int length` into the seed; keys beyond 2³¹ bytes do not exist.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = blocks.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner (and librdkafka's `murmur2_random`)
/// picks for `key` among `partitions` (> 0).
pub fn murmur2_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// The IEEE CRC-32 (zlib's, reflected polynomial `0xedb88320`) of `data`, as librdkafka's
/// `rd_crc32` computes it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = CRC32_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The byte-at-a-time table of the reflected polynomial, built at compile time.
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The partition librdkafka's default partitioner (`consistent_random`, also `consistent`)
/// picks for a non-empty `key`.
pub fn crc32_partition(key: &[u8], partitions: i32) -> i32 {
    let n = u32::try_from(partitions.max(1)).unwrap_or(1);
    // The remainder is below `partitions`, an i32.
    (crc32(key) % n) as i32
}

/// Where one record sits compared with its key's murmur2 partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// On its murmur2 partition.
    Correct,
    /// Elsewhere; `crc32` says whether it is on its CRC32 (`consistent_random`) partition.
    Misrouted { expected: i32, crc32: bool },
    /// No key, or an empty one: nothing to check.
    Unkeyed,
}

/// Classifies a record with `key` read from `partition` of a topic of `partitions`.
pub fn check(key: Option<&[u8]>, partition: i32, partitions: i32) -> Routing {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Routing::Unkeyed;
    };
    let expected = murmur2_partition(key, partitions);
    if expected == partition {
        Routing::Correct
    } else {
        Routing::Misrouted {
            expected,
            crc32: crc32_partition(key, partitions) == partition,
        }
    }
}

/// The partitioner a topic's misrouted records most likely came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioner {
    /// Nothing misrouted: murmur2, as the contract asks.
    Murmur2,
    /// librdkafka's default, `consistent_random` (CRC32).
    ConsistentRandom,
    /// Neither: random, round-robin, explicit partitions or a custom partitioner.
    Unknown,
}

impl Partitioner {
    /// How the log line and `check-config` name it.
    pub fn describe(self) -> &'static str {
        match self {
            Partitioner::Murmur2 => "murmur2 (correct)",
            Partitioner::ConsistentRandom => {
                "librdkafka's default consistent_random (CRC32): set partitioner=murmur2_random"
            }
            Partitioner::Unknown => {
                "unknown (random, explicit partitions or custom): partition by murmur2 of the key"
            }
        }
    }
}

/// Share of misrouted records on their CRC32 partition above which the producer is taken for
/// `consistent_random`. A murmur2 producer's records are never misrouted; a random one's land on
/// their CRC32 partition about 1/n of the time.
const CRC32_SHARE: f64 = 0.95;

/// Counts of one topic's checked records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RoutingTally {
    /// Keyed records checked.
    pub checked: u64,
    /// Of those, not on their murmur2 partition.
    pub misrouted: u64,
    /// Of the misrouted, on their CRC32 partition.
    pub on_crc32: u64,
    /// Records without a key (not checked).
    pub unkeyed: u64,
}

impl RoutingTally {
    /// Counts one record.
    #[inline]
    pub fn add(&mut self, routing: Routing) {
        match routing {
            Routing::Correct => self.checked += 1,
            Routing::Misrouted { crc32, .. } => {
                self.checked += 1;
                self.misrouted += 1;
                self.on_crc32 += u64::from(crc32);
            }
            Routing::Unkeyed => self.unkeyed += 1,
        }
    }

    /// Misrouted share of the checked records (0 when none was checked).
    pub fn share(&self) -> f64 {
        if self.checked == 0 {
            0.0
        } else {
            self.misrouted as f64 / self.checked as f64
        }
    }

    /// The partitioner the misrouted records most likely came from.
    pub fn likely(&self) -> Partitioner {
        if self.misrouted == 0 {
            Partitioner::Murmur2
        } else if self.on_crc32 as f64 >= CRC32_SHARE * self.misrouted as f64 {
            Partitioner::ConsistentRandom
        } else {
            Partitioner::Unknown
        }
    }

    /// Whether the misrouted share exceeds `threshold` over at least `min_checked` records.
    pub fn crossed(&self, threshold: f64, min_checked: u64) -> bool {
        self.checked >= min_checked.max(1) && self.misrouted > 0 && self.share() > threshold
    }

    /// Sum of two tallies.
    pub fn merged(&self, other: &RoutingTally) -> RoutingTally {
        RoutingTally {
            checked: self.checked + other.checked,
            misrouted: self.misrouted + other.misrouted,
            on_crc32: self.on_crc32 + other.on_crc32,
            unkeyed: self.unkeyed + other.unkeyed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` (clients/src/test/java/org/apache/kafka/common/utils).
    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn murmur2_partition_is_to_positive_mod_n() {
        // toPositive(-973932308) = 1173551340
        assert_eq!(murmur2_partition(b"21", 8), 1_173_551_340 % 8);
        for n in 1..20 {
            let p = murmur2_partition(b"foobar", n);
            assert!((0..n).contains(&p));
        }
    }

    #[test]
    fn crc32_is_the_ieee_checksum() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
    }

    #[test]
    fn check_names_the_expected_partition_and_the_crc32_match() {
        let key = b"req-1-42";
        let n = 8;
        let m = murmur2_partition(key, n);
        assert_eq!(check(Some(key), m, n), Routing::Correct);
        let c = crc32_partition(key, n);
        let other = (0..n).find(|p| *p != m && *p != c).unwrap();
        assert_eq!(
            check(Some(key), other, n),
            Routing::Misrouted {
                expected: m,
                crc32: false
            }
        );
        if c != m {
            assert_eq!(
                check(Some(key), c, n),
                Routing::Misrouted {
                    expected: m,
                    crc32: true
                }
            );
        }
        assert_eq!(check(None, 0, n), Routing::Unkeyed);
        assert_eq!(check(Some(b""), 0, n), Routing::Unkeyed);
    }

    #[test]
    fn a_crc32_producer_is_misrouted_about_n_minus_one_over_n_and_recognized() {
        let n = 8;
        let mut crc = RoutingTally::default();
        let mut java = RoutingTally::default();
        for i in 0..10_000 {
            let key = format!("req-{i}");
            let k = key.as_bytes();
            crc.add(check(Some(k), crc32_partition(k, n), n));
            java.add(check(Some(k), murmur2_partition(k, n), n));
        }
        assert_eq!(java.misrouted, 0);
        assert_eq!(java.likely(), Partitioner::Murmur2);
        assert!(!java.crossed(0.01, 100));
        let expected = (n - 1) as f64 / n as f64;
        assert!((crc.share() - expected).abs() < 0.02, "{}", crc.share());
        assert_eq!(crc.on_crc32, crc.misrouted);
        assert_eq!(crc.likely(), Partitioner::ConsistentRandom);
        assert!(crc.crossed(0.01, 100));
        assert!(!crc.crossed(0.01, 20_000), "too few records checked");
    }

    #[test]
    fn a_random_producer_is_unknown() {
        let n = 8;
        let mut t = RoutingTally::default();
        for i in 0..4_000 {
            let key = format!("req-{i}");
            t.add(check(Some(key.as_bytes()), i % n, n));
        }
        assert_eq!(t.likely(), Partitioner::Unknown);
        let both = t.merged(&t);
        assert_eq!(both.checked, 2 * t.checked);
        assert_eq!(both.share(), t.share());
    }
}
