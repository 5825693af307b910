//! [`DistinctSample`]: the k distinct values of smallest hash, each with its exact count.
//!
//! # Why this sample
//! Verdicts must not depend on how records were batched, flushed and merged (flush timing,
//! worker counts and restarts regroup the partial summaries). A randomized quantile sketch
//! (KLL compacts with a random coin and its result depends on the merge grouping) cannot give
//! that. This sample can: which values it keeps is a function of the *set* of distinct values
//! seen, and each kept value's count is exact, so
//!
//! `merge(summary(A), summary(B)) == summary(A ++ B)`, bit for bit, in any grouping.
//!
//! # Definition
//! Every finite value v (−0.0 taken as 0.0) has the hash h(v) = splitmix64's finalizer of its
//! bits: fixed, seedless, and a bijection on `u64`, so two distinct values never share a hash
//! and hash order is a total order on values. The sample of a stream is the set of its
//! [`SAMPLE_K`] distinct values of smallest hash, each with its number of occurrences in the
//! stream. While a stream has at most `SAMPLE_K` distinct values the sample is the whole
//! stream (*exact*).
//!
//! # Merge
//! Union of both samples (counts added for equal values), then the `SAMPLE_K` smallest hashes.
//! This is the sample of the concatenated stream: a value v among the k smallest hashes of
//! A ∪ B is among the k smallest of A if it occurs in A (fewer values of A than of A ∪ B lie
//! below it), so it is in A's sample with its full count, and likewise for B. A value that a
//! side dropped lies above k kept values of that side, all in the union, so the truncation
//! drops it again. Hence merge is exactly commutative and associative, with the empty sample
//! as identity.
//!
//! # Hot path and canonical form
//! [`update`](DistinctSample::update) hashes the value and, unless the hash lies above the
//! largest kept one of a full sample (such a value can never enter), appends it to an unsorted
//! *pending* buffer. The buffer is folded in (sorted by hash, equal values counted, merged,
//! truncated to k) when it reaches [`PENDING_MAX`] values, and before any read, merge or
//! encoding. The folded form (entries in increasing hash order) is canonical: what is read and
//! encoded does not depend on when the folds happened.
//!
//! # Memory
//! An entry is 24 bytes (hash, value, count), a pending value 16: at most
//! 2048 · 24 + 2048 · 16 = 80 KiB per numeric stream, 0 while empty. Encoded, a value is
//! 8 bytes plus its count as a LEB128 varint (1 byte below 128): ≈ 18 KiB for a full sample,
//! so a partial with 50 full numeric features is about 900 KiB: the topics that carry summaries
//! take records up to 16 MiB (`driftwatch_worker::topics::SUMMARY_MESSAGE_MAX_BYTES`), about
//! 900 full numeric features per model.

use std::borrow::Cow;

/// Distinct values a sample keeps (k).
pub const SAMPLE_K: usize = 2048;

/// Pending values folded into the sample at once.
pub const PENDING_MAX: usize = SAMPLE_K;

/// The sample's hash of a finite, canonical value: splitmix64's finalizer (a bijection).
#[inline]
pub fn value_hash(x: f64) -> u64 {
    let mut z = x.to_bits();
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// −0.0 as 0.0, so equal numbers are one value.
#[inline]
fn canonical(x: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x
    }
}

/// One kept value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// [`value_hash`] of `value`.
    pub hash: u64,
    /// The value (finite, never −0.0).
    pub value: f64,
    /// Its exact number of occurrences (≥ 1).
    pub count: u64,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct DistinctSample {
    /// Strictly increasing hashes, at most [`SAMPLE_K`].
    entries: Vec<Entry>,
    /// (hash, value) not yet folded into `entries`.
    pending: Vec<(u64, f64)>,
    /// Largest hash that may still enter: `entries`' last hash once it holds k values.
    limit: u64,
}

impl Default for DistinctSample {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            pending: Vec::new(),
            limit: u64::MAX,
        }
    }
}

impl PartialEq for DistinctSample {
    /// Equal canonical forms.
    fn eq(&self, other: &Self) -> bool {
        self.folded().entries == other.folded().entries
    }
}

/// Sorted, equal values coalesced with their counts.
fn coalesce(mut pending: Vec<(u64, f64)>) -> Vec<Entry> {
    pending.sort_unstable_by_key(|p| p.0);
    let mut out: Vec<Entry> = Vec::with_capacity(pending.len().min(SAMPLE_K));
    for (hash, value) in pending {
        match out.last_mut() {
            Some(last) if last.hash == hash => last.count = last.count.saturating_add(1),
            _ => out.push(Entry {
                hash,
                value,
                count: 1,
            }),
        }
    }
    out
}

/// The union of two canonical entry lists, counts added, truncated to the k smallest hashes.
fn union(a: &[Entry], b: &[Entry]) -> Vec<Entry> {
    let mut out = Vec::with_capacity((a.len() + b.len()).min(SAMPLE_K));
    let (mut i, mut j) = (0, 0);
    while out.len() < SAMPLE_K {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.hash == y.hash => {
                i += 1;
                j += 1;
                Entry {
                    count: x.count.saturating_add(y.count),
                    ..*x
                }
            }
            (Some(x), Some(y)) if x.hash < y.hash => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (None, None) => break,
        };
        out.push(next);
    }
    out
}

impl DistinctSample {
    /// Adds one finite value (the caller filters NaN and ±∞).
    #[inline]
    pub fn update(&mut self, x: f64) {
        let x = canonical(x);
        let h = value_hash(x);
        if h > self.limit {
            return;
        }
        self.pending.push((h, x));
        if self.pending.len() >= PENDING_MAX {
            self.fold();
        }
    }

    /// Folds the pending values into the canonical entries.
    pub fn fold(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let fresh = coalesce(pending);
        self.entries = union(&self.entries, &fresh);
        self.set_limit();
        // Keep the buffer's allocation for the next values.
        self.pending = Vec::with_capacity(PENDING_MAX.min(fresh.len().max(16)));
    }

    fn set_limit(&mut self) {
        self.limit = match self.entries.last() {
            Some(last) if self.entries.len() >= SAMPLE_K => last.hash,
            _ => u64::MAX,
        };
    }

    /// This sample folded (borrowed when nothing is pending).
    pub fn folded(&self) -> Cow<'_, DistinctSample> {
        if self.pending.is_empty() {
            Cow::Borrowed(self)
        } else {
            let mut owned = self.clone();
            owned.fold();
            Cow::Owned(owned)
        }
    }

    /// Merges `other` into `self` (the sample of both streams, see the module docs).
    pub fn merge(&mut self, other: &DistinctSample) {
        self.fold();
        let other = other.folded();
        if other.entries.is_empty() {
            return;
        }
        self.entries = union(&self.entries, &other.entries);
        self.set_limit();
    }

    /// The canonical entries, in increasing hash order. Fold first: pending values are not
    /// included.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether values are pending (not folded in yet).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Rebuilds a sample from decoded entries; `None` unless they are canonical (at most k,
    /// finite values other than −0.0, strictly increasing hashes, counts ≥ 1).
    pub fn from_entries(entries: Vec<Entry>) -> Option<DistinctSample> {
        if entries.len() > SAMPLE_K {
            return None;
        }
        let mut previous: Option<u64> = None;
        for e in &entries {
            let valid = e.value.is_finite()
                && e.value.to_bits() != (-0.0f64).to_bits()
                && e.hash == value_hash(e.value)
                && e.count >= 1
                && previous.is_none_or(|p| p < e.hash);
            if !valid {
                return None;
            }
            previous = Some(e.hash);
        }
        let mut s = DistinctSample {
            entries,
            ..DistinctSample::default()
        };
        s.set_limit();
        Some(s)
    }

    /// Total count of the kept values (folded entries only).
    pub fn weight(&self) -> u64 {
        self.entries
            .iter()
            .fold(0u64, |acc, e| acc.saturating_add(e.count))
    }

    /// Kish's effective size of the kept values, (Σc)² / Σc²: how many independent values
    /// the weighted sample is worth (its number of entries when every count is 1).
    pub fn kish_size(&self) -> f64 {
        let (s, s2) = self.entries.iter().fold((0.0, 0.0), |(s, s2), e| {
            let c = e.count as f64;
            (s + c, s2 + c * c)
        });
        if s2 > 0.0 {
            s * s / s2
        } else {
            0.0
        }
    }

    /// The kept values in increasing order with their cumulative counts.
    pub fn sorted(&self) -> SortedSample {
        let folded = self.folded();
        let mut pairs: Vec<(f64, u64)> =
            folded.entries.iter().map(|e| (e.value, e.count)).collect();
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut values = Vec::with_capacity(pairs.len());
        let mut cumulative = Vec::with_capacity(pairs.len());
        let mut total = 0u64;
        for (v, c) in pairs {
            total = total.saturating_add(c);
            values.push(v);
            cumulative.push(total);
        }
        SortedSample {
            values,
            cumulative,
            total,
        }
    }
}

/// A sample's values in increasing order, with cumulative counts: its weighted empirical
/// distribution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SortedSample {
    values: Vec<f64>,
    cumulative: Vec<u64>,
    total: u64,
}

impl SortedSample {
    /// The distinct values, increasing.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Total count.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Weighted fraction of values ≤ `x` (0 for NaN).
    pub fn cdf(&self, x: f64) -> f64 {
        if self.total == 0 || x.is_nan() {
            return 0.0;
        }
        let below = self.values.partition_point(|&v| v <= x);
        match below.checked_sub(1) {
            Some(i) => self.cumulative[i] as f64 / self.total as f64,
            None => 0.0,
        }
    }

    /// The smallest value whose cumulative weight reaches `rank · total` (inclusive search,
    /// as DataSketches' quantiles). `None` when empty or `rank` is outside [0, 1].
    pub fn quantile(&self, rank: f64) -> Option<f64> {
        if self.total == 0 || !(0.0..=1.0).contains(&rank) {
            return None;
        }
        let target = rank * self.total as f64;
        let i = self.cumulative.partition_point(|&c| (c as f64) < target);
        self.values.get(i.min(self.values.len() - 1)).copied()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(xs: impl IntoIterator<Item = f64>) -> DistinctSample {
        let mut s = DistinctSample::default();
        for x in xs {
            s.update(x);
        }
        s.fold();
        s
    }

    #[test]
    fn few_distinct_values_are_kept_exactly() {
        let s = sample((0..10_000).map(|i| f64::from(i % 100)));
        assert_eq!(s.entries().len(), 100);
        assert_eq!(s.weight(), 10_000);
        assert!(s.entries().iter().all(|e| e.count == 100));
        assert!((s.kish_size() - 100.0).abs() < 1e-9);
        let sorted = s.sorted();
        assert_eq!(sorted.quantile(0.0), Some(0.0));
        assert_eq!(sorted.quantile(0.5), Some(49.0));
        assert_eq!(sorted.quantile(1.0), Some(99.0));
        assert_eq!(sorted.cdf(49.5), 0.5);
        assert_eq!(sorted.cdf(-1.0), 0.0);
    }

    #[test]
    fn negative_zero_is_zero() {
        let s = sample([0.0, -0.0, -0.0]);
        assert_eq!(s.entries().len(), 1);
        assert_eq!(s.entries()[0].count, 3);
        assert_eq!(s.entries()[0].value.to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn keeps_the_k_smallest_hashes_of_the_whole_stream() {
        let xs: Vec<f64> = (0..20_000).map(|i| f64::from(i) * 0.25).collect();
        let s = sample(xs.iter().copied());
        let mut hashes: Vec<u64> = xs.iter().map(|&x| value_hash(x)).collect();
        hashes.sort_unstable();
        let kept: Vec<u64> = s.entries().iter().map(|e| e.hash).collect();
        assert_eq!(kept, hashes[..SAMPLE_K]);
    }

    #[test]
    fn merge_in_any_grouping_equals_the_whole_stream() {
        let xs: Vec<f64> = (0..30_000u32)
            .map(|i| f64::from((i * 7919) % 9000) * 0.5)
            .collect();
        let whole = sample(xs.iter().copied());
        for parts in [2usize, 3, 7] {
            let chunks: Vec<DistinctSample> = xs
                .chunks(xs.len() / parts + 1)
                .map(|c| sample(c.iter().copied()))
                .collect();
            let mut left = DistinctSample::default();
            for c in &chunks {
                left.merge(c);
            }
            let mut right = DistinctSample::default();
            for c in chunks.iter().rev() {
                let mut next = c.clone();
                next.merge(&right);
                right = next;
            }
            assert_eq!(left.entries(), whole.entries());
            assert_eq!(right.entries(), whole.entries());
        }
    }

    #[test]
    fn pending_values_are_read_and_merged() {
        let mut a = DistinctSample::default();
        a.update(1.0);
        a.update(1.0);
        assert!(a.has_pending());
        assert_eq!(a.sorted().cdf(1.0), 1.0);
        let mut b = DistinctSample::default();
        b.merge(&a);
        assert_eq!(b.entries().len(), 1);
        assert_eq!(b.entries()[0].count, 2);
        assert_eq!(a, b);
    }

    #[test]
    fn non_canonical_entries_are_refused() {
        let e = |value: f64, count| Entry {
            hash: value_hash(value),
            value,
            count,
        };
        assert!(DistinctSample::from_entries(vec![e(1.0, 1)]).is_some());
        assert!(DistinctSample::from_entries(vec![e(1.0, 0)]).is_none());
        assert!(DistinctSample::from_entries(vec![e(-0.0, 1)]).is_none());
        assert!(DistinctSample::from_entries(vec![e(f64::NAN, 1)]).is_none());
        let (a, b) = (e(1.0, 1), e(2.0, 1));
        let (lo, hi) = if a.hash < b.hash { (a, b) } else { (b, a) };
        assert!(DistinctSample::from_entries(vec![lo, hi]).is_some());
        assert!(DistinctSample::from_entries(vec![hi, lo]).is_none());
        assert!(DistinctSample::from_entries(vec![lo, lo]).is_none());
    }
}
