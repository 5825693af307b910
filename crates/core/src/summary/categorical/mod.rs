//! [`CategoricalSummary`]: count, missing, exact category counts (or, beyond
//! [`CATEGORY_EXACT_MAX`] distinct values, exact counts per hash bucket), and for display the
//! frequent items and a distinct-count estimate.
//!
//! # Two regimes, one function of the values
//! While the values summarized so far have at most [`CATEGORY_EXACT_MAX`] distinct
//! categories, the summary holds every category with its exact count. Once the distinct set
//! grows past that, it holds instead the exact counts of [`CATEGORY_BUCKETS`] buckets,
//! category `v` going to bucket [`category_bucket`]`(v)` (xxh3 of its bytes, seedless). Both
//! tables are sums of per-value counts, and which one a summary holds depends only on the
//! size of its distinct set (the union of its parts' sets), so the state every verdict reads
//! is a pure function of the multiset of values: merges in any order or grouping, replays at
//! any speed and restarts give the same bytes and the same statistics.
//!
//! Only in the bucketed regime does the summary also keep, for display, a Misra–Gries
//! frequent-items sketch (names of the heavy categories) and an HLL distinct-count estimate:
//! those depend on the update order, and no verdict reads them. Memory: at most
//! [`CATEGORY_EXACT_MAX`] names while exact; 8 KiB of buckets plus the sketches (≈ 40 KiB)
//! once bucketed.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};

use datasketches::frequencies::{ErrorType, FrequentItemsSketch};
use datasketches::hll::{HllSketch, HllType, HllUnion};
use hashbrown::{Equivalent, HashMap};
use xxhash_rust::xxh3::xxh3_64;

use super::{same_bytes, CATEGORY_BUCKETS, CATEGORY_EXACT_MAX, FREQUENT_LG_MAX, HLL_LG_K};

/// Distinct values counted in the staging table before a batch is flushed.
const STAGING_MAX: usize = 64;

pub(crate) fn new_frequent() -> Option<FrequentItemsSketch<String>> {
    FrequentItemsSketch::new(1usize << FREQUENT_LG_MAX).ok()
}

pub(crate) fn new_hll() -> Option<HllSketch> {
    HllSketch::new(HLL_LG_K, HllType::Hll8).ok()
}

/// The bucket of category `value` in the bucketed regime: xxh3 (seed 0) of its UTF-8 bytes
/// modulo [`CATEGORY_BUCKETS`]. Fixed forever: summaries of any process, run or version of
/// this format bucket alike.
#[inline]
pub fn category_bucket(value: &str) -> usize {
    // CATEGORY_BUCKETS is a power of two: the low bits of xxh3 are well mixed.
    (xxh3_64(value.as_bytes()) & (CATEGORY_BUCKETS as u64 - 1)) as usize
}

/// A value looked up in the staging table.
///
/// Why: the table's own `str` equality calls `memcmp`, which costs more than comparing a
/// short category; this compares with [`same_bytes`]. It hashes exactly as the `Box<str>`
/// keys do (`Box<str>` hashes as its `str`), as `Equivalent` requires.
struct Staged<'v>(&'v str);

impl Hash for Staged<'_> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Equivalent<Box<str>> for Staged<'_> {
    #[inline]
    fn equivalent(&self, key: &Box<str>) -> bool {
        same_bytes(self.0.as_bytes(), key.as_bytes())
    }
}

/// The bucketed regime's state: exact counts per bucket (what verdicts read) and, for display
/// only, the frequent items and the distinct-count estimate.
#[derive(Debug, Clone)]
pub(crate) struct Bucketed {
    /// [`CATEGORY_BUCKETS`] counts, bucket [`category_bucket`]`(v)` for value `v`.
    pub(crate) counts: Box<[u64]>,
    /// Misra–Gries (DataSketches) frequent items; order-dependent once it purged.
    pub(crate) frequent: Option<FrequentItemsSketch<String>>,
    pub(crate) hll: Option<HllSketch>,
}

impl Bucketed {
    fn new() -> Self {
        Self {
            counts: vec![0; CATEGORY_BUCKETS].into_boxed_slice(),
            frequent: new_frequent(),
            hll: new_hll(),
        }
    }

    fn add(&mut self, value: &str, count: u64) {
        if let Some(c) = self.counts.get_mut(category_bucket(value)) {
            *c = c.saturating_add(count);
        }
        if let Some(hll) = &mut self.hll {
            hll.update(value);
        }
        if let Some(f) = &mut self.frequent {
            // Counts stay below MAX_COUNT-sized totals, so the weight cannot overflow.
            if count > 0 && f.total_weight().checked_add(count).is_some() {
                f.update_with_count(value.to_owned(), count);
            }
        }
    }

    fn merge(&mut self, other: &Bucketed) {
        for (c, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            *c = c.saturating_add(*o);
        }
        if let Some(of) = &other.frequent {
            match &mut self.frequent {
                Some(f) => {
                    // `merge` panics on a stream-weight overflow; skip instead (unreachable
                    // with MAX_COUNT-bounded inputs).
                    if f.total_weight().checked_add(of.total_weight()).is_some() {
                        f.merge(of);
                    }
                }
                None => self.frequent = Some(of.clone()),
            }
        }
        if let Some(oh) = &other.hll {
            match &self.hll {
                Some(h) => {
                    if let Ok(mut union) = HllUnion::new(HLL_LG_K) {
                        union.update(h);
                        union.update(oh);
                        self.hll = Some(union.to_sketch(HllType::Hll8));
                    }
                }
                None => self.hll = Some(oh.clone()),
            }
        }
    }
}

/// Summary of one categorical stream. A monoid: `Default` is empty, [`merge`](Self::merge) is
/// associative and commutative, exactly for everything a verdict reads (see the module docs).
///
/// Values are first counted exactly in a small staging table; a batch is flushed into the
/// counts when the table holds [`STAGING_MAX`] distinct values, or before any read, merge or
/// serialization. Reads through `&self` see the staged values too (on a flushed copy).
#[derive(Debug, Clone, Default)]
pub struct CategoricalSummary {
    pub(crate) count: u64,
    pub(crate) missing: u64,
    staging: HashMap<Box<str>, u64>,
    /// Every flushed category with its count, while there are at most
    /// [`CATEGORY_EXACT_MAX`]; empty once `bucketed`.
    pub(crate) exact: HashMap<Box<str>, u64>,
    /// Set once the flushed values have more than [`CATEGORY_EXACT_MAX`] distinct categories.
    pub(crate) bucketed: Option<Box<Bucketed>>,
}

impl CategoricalSummary {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value. Allocates only for a value not already staged.
    #[inline]
    pub fn update(&mut self, value: &str) {
        self.count += 1;
        if let Some(c) = self.staging.get_mut(&Staged(value)) {
            *c += 1;
            return;
        }
        self.stage_new(value, 1);
    }

    #[cold]
    fn stage_new(&mut self, value: &str, count: u64) {
        if self.staging.len() >= STAGING_MAX {
            self.flush();
        }
        self.staging.insert(value.into(), count);
    }

    /// Counts one missing (null) value.
    #[inline]
    pub fn update_missing(&mut self) {
        self.missing += 1;
    }

    /// Moves staged values into the counts.
    pub fn flush(&mut self) {
        if self.staging.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.staging);
        for (value, count) in &staged {
            self.add_flushed(value, *count);
        }
        // Keep the staging table's allocation for the next batch.
        self.staging = staged;
        self.staging.clear();
    }

    /// Adds `count` of `value` to the counts, switching to buckets when the distinct set
    /// outgrows [`CATEGORY_EXACT_MAX`].
    fn add_flushed(&mut self, value: &str, count: u64) {
        if let Some(b) = &mut self.bucketed {
            b.add(value, count);
            return;
        }
        if let Some(c) = self.exact.get_mut(value) {
            *c = c.saturating_add(count);
            return;
        }
        self.exact.insert(value.into(), count);
        if self.exact.len() > CATEGORY_EXACT_MAX {
            self.go_bucketed();
        }
    }

    /// Replaces the exact counts by buckets (a no-op once bucketed).
    fn go_bucketed(&mut self) {
        if self.bucketed.is_some() {
            return;
        }
        let mut b = Bucketed::new();
        let mut entries: Vec<(Box<str>, u64)> =
            std::mem::take(&mut self.exact).into_iter().collect();
        // Sorted, so the display sketches see one order whatever the map's.
        entries.sort_unstable();
        for (value, count) in &entries {
            b.add(value, *count);
        }
        self.bucketed = Some(Box::new(b));
    }

    /// This summary with every staged value flushed (borrowed when nothing is staged).
    pub fn flushed(&self) -> Cow<'_, CategoricalSummary> {
        if self.staging.is_empty() {
            Cow::Borrowed(self)
        } else {
            let mut owned = self.clone();
            owned.flush();
            Cow::Owned(owned)
        }
    }

    /// Merges `other` into `self`.
    pub fn merge(&mut self, other: &CategoricalSummary) {
        self.count = self.count.saturating_add(other.count);
        self.missing = self.missing.saturating_add(other.missing);
        for (value, count) in &other.staging {
            if let Some(c) = self.staging.get_mut(&**value) {
                *c += count;
            } else {
                self.stage_new(value, *count);
            }
        }
        match &other.bucketed {
            None => {
                for (value, count) in &other.exact {
                    self.add_flushed(value, *count);
                }
            }
            Some(ob) => {
                // `other` alone has more than CATEGORY_EXACT_MAX categories, so the union too.
                self.go_bucketed();
                if let Some(b) = &mut self.bucketed {
                    b.merge(ob);
                }
            }
        }
    }

    /// Number of (non-missing) values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of missing values.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Whether the counts are per category (at most [`CATEGORY_EXACT_MAX`] distinct values
    /// seen) rather than per bucket.
    pub fn is_exact(&self) -> bool {
        self.flushed().bucketed.is_none()
    }

    /// Every category with its exact count, sorted by name; `None` once bucketed.
    pub fn exact_counts(&self) -> Option<Vec<(String, u64)>> {
        let flushed = self.flushed();
        if flushed.bucketed.is_some() {
            return None;
        }
        let mut rows: Vec<(String, u64)> = flushed
            .exact
            .iter()
            .map(|(v, c)| (v.to_string(), *c))
            .collect();
        rows.sort_unstable();
        Some(rows)
    }

    /// Exact counts per bucket ([`CATEGORY_BUCKETS`] of them, see [`category_bucket`]), in
    /// either regime: a pure function of the values, as the exact counts.
    pub fn bucket_counts(&self) -> Vec<u64> {
        let flushed = self.flushed();
        if let Some(b) = &flushed.bucketed {
            return b.counts.to_vec();
        }
        let mut counts = vec![0u64; CATEGORY_BUCKETS];
        for (v, c) in &flushed.exact {
            if let Some(slot) = counts.get_mut(category_bucket(v)) {
                *slot = slot.saturating_add(*c);
            }
        }
        counts
    }

    /// Number of distinct values: exact while [`is_exact`](Self::is_exact), else the HLL
    /// estimate (see the module docs of `summary` for its error).
    pub fn distinct_estimate(&self) -> f64 {
        let flushed = self.flushed();
        match &flushed.bucketed {
            None => flushed.exact.len() as f64,
            Some(b) => b.hll.as_ref().map_or(0.0, HllSketch::estimate),
        }
    }

    /// Frequency of `value`: exact while [`is_exact`](Self::is_exact); else the frequent-items
    /// estimate (never below the true one; at most [`max_error`](Self::max_error) above it).
    pub fn estimate(&self, value: &str) -> u64 {
        let flushed = self.flushed();
        match &flushed.bucketed {
            None => flushed.exact.get(value).copied().unwrap_or(0),
            Some(b) => b.frequent.as_ref().map_or(0, |f| f.estimate(value)),
        }
    }

    /// Upper bound on the over-estimate of [`estimate`](Self::estimate) and
    /// [`frequent_items`](Self::frequent_items): 0 while exact.
    pub fn max_error(&self) -> u64 {
        self.flushed()
            .bucketed
            .as_ref()
            .and_then(|b| b.frequent.as_ref())
            .map_or(0, FrequentItemsSketch::maximum_error)
    }

    /// Categories with their counts, most frequent first (ties by value): every category with
    /// its exact count while exact, else the frequent-items sketch's retained values with their
    /// estimates (for display: they depend on the update order).
    pub fn frequent_items(&self) -> Vec<(String, u64)> {
        let flushed = self.flushed();
        let mut rows: Vec<(String, u64)> = match &flushed.bucketed {
            None => flushed
                .exact
                .iter()
                .map(|(v, c)| (v.to_string(), *c))
                .collect(),
            Some(b) => b.frequent.as_ref().map_or_else(Vec::new, |f| {
                f.frequent_items_with_threshold(ErrorType::NoFalseNegatives, 0)
                    .into_iter()
                    .map(|row| (row.item().clone(), row.estimate()))
                    .collect()
            }),
        };
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }

    /// Whether values are still staged (not yet flushed into the counts).
    pub fn has_staged(&self) -> bool {
        !self.staging.is_empty()
    }
}

#[cfg(test)]
mod tests;
