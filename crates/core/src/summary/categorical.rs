//! [`CategoricalSummary`]: count, missing, frequent items and a distinct-count estimate.

use std::borrow::Cow;

use datasketches::frequencies::{ErrorType, FrequentItemsSketch};
use datasketches::hll::{HllSketch, HllType, HllUnion};
use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};

use super::{same_bytes, FREQUENT_LG_MAX, HLL_LG_K};

/// Distinct values counted exactly before a batch is pushed into the sketches.
const STAGING_MAX: usize = 64;

pub(crate) fn new_frequent() -> Option<FrequentItemsSketch<String>> {
    FrequentItemsSketch::new(1usize << FREQUENT_LG_MAX).ok()
}

pub(crate) fn new_hll() -> Option<HllSketch> {
    HllSketch::new(HLL_LG_K, HllType::Hll8).ok()
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

/// Summary of one categorical stream. A monoid: `Default` is empty, [`merge`](Self::merge) is
/// associative (up to the sketches' error bounds once they are in estimation mode).
///
/// Values are first counted exactly in a small staging table; a batch goes into the sketches
/// when the table holds [`STAGING_MAX`] distinct values, or before any read, merge of sketches
/// or serialization. Reads through `&self` see the staged values too (on a flushed copy).
#[derive(Debug, Clone, Default)]
pub struct CategoricalSummary {
    pub(crate) count: u64,
    pub(crate) missing: u64,
    staging: HashMap<Box<str>, u64>,
    /// Created on the first flush, so empty summaries cost no allocation.
    pub(crate) frequent: Option<FrequentItemsSketch<String>>,
    pub(crate) hll: Option<HllSketch>,
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

    /// Pushes staged values into the sketches.
    pub fn flush(&mut self) {
        if self.staging.is_empty() {
            return;
        }
        if self.frequent.is_none() {
            self.frequent = new_frequent();
        }
        if self.hll.is_none() {
            self.hll = new_hll();
        }
        for (value, count) in self.staging.drain() {
            if let Some(hll) = &mut self.hll {
                hll.update(&*value);
            }
            if let Some(f) = &mut self.frequent {
                // Our counts stay below MAX_COUNT-sized totals, so the weight cannot overflow.
                if f.total_weight().checked_add(count).is_some() {
                    f.update_with_count(value.into_string(), count);
                }
            }
        }
    }

    /// This summary with every staged value pushed into the sketches (borrowed when nothing
    /// is staged).
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

    /// Number of (non-missing) values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of missing values.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Estimated number of distinct values (HLL; see the module docs for its error).
    pub fn distinct_estimate(&self) -> f64 {
        self.flushed().hll.as_ref().map_or(0.0, HllSketch::estimate)
    }

    /// Estimated frequency of `value` (never below the true one; at most
    /// [`max_error`](Self::max_error) above it).
    pub fn estimate(&self, value: &str) -> u64 {
        self.flushed()
            .frequent
            .as_ref()
            .map_or(0, |f| f.estimate(value))
    }

    /// Upper bound on the over-estimate of any frequency: 0 while the sketch has never purged.
    pub fn max_error(&self) -> u64 {
        self.flushed()
            .frequent
            .as_ref()
            .map_or(0, FrequentItemsSketch::maximum_error)
    }

    /// Every retained value with its estimated count, most frequent first (ties by value).
    pub fn frequent_items(&self) -> Vec<(String, u64)> {
        let flushed = self.flushed();
        let Some(f) = flushed.frequent.as_ref() else {
            return Vec::new();
        };
        let mut rows: Vec<(String, u64)> = f
            .frequent_items_with_threshold(ErrorType::NoFalseNegatives, 0)
            .into_iter()
            .map(|row| (row.item().clone(), row.estimate()))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }

    /// Whether values are still staged (not yet in the sketches).
    pub fn has_staged(&self) -> bool {
        !self.staging.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_below_capacity() {
        let mut s = CategoricalSummary::new();
        for i in 0..3000u32 {
            s.update(&format!("v{}", i % 100));
        }
        s.update_missing();
        assert_eq!(s.count(), 3000);
        assert_eq!(s.missing(), 1);
        assert_eq!(s.estimate("v7"), 30);
        assert_eq!(s.max_error(), 0);
        let items = s.frequent_items();
        assert_eq!(items.len(), 100);
        assert_eq!(items.iter().map(|(_, c)| c).sum::<u64>(), 3000);
        let d = s.distinct_estimate();
        assert!((d - 100.0).abs() <= 100.0 * 0.05, "{d}");
    }

    #[test]
    fn staged_and_flushed_reads_agree() {
        let mut s = CategoricalSummary::new();
        s.update("a");
        s.update("a");
        s.update("b");
        assert!(s.has_staged());
        let before = s.frequent_items();
        s.flush();
        assert!(!s.has_staged());
        assert_eq!(before, s.frequent_items());
        assert_eq!(before, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
    }

    #[test]
    fn merge_adds_counts_and_unions_distincts() {
        let mut a = CategoricalSummary::new();
        let mut b = CategoricalSummary::new();
        for i in 0..500 {
            a.update(&format!("x{}", i % 50));
            b.update(&format!("x{}", 25 + i % 50));
        }
        b.flush();
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        assert_eq!(a.estimate("x30"), 20);
        assert_eq!(a.estimate("x0"), 10);
        let d = a.distinct_estimate();
        assert!((d - 75.0).abs() <= 75.0 * 0.05, "{d}");
    }

    #[test]
    fn high_cardinality_stays_within_the_error_bound() {
        let mut s = CategoricalSummary::new();
        let n = 20_000u64;
        for i in 0..n {
            // One heavy hitter (25 %) among many singletons.
            if i % 4 == 0 {
                s.update("heavy");
            } else {
                s.update(&format!("id{i}"));
            }
        }
        let est = s.estimate("heavy");
        assert!(est >= n / 4);
        assert!(est - n / 4 <= s.max_error());
        assert!((s.max_error() as f64) <= 3.5 / 1024.0 * n as f64 + 1.0);
        let d = s.distinct_estimate();
        let truth = (n - n / 4 + 1) as f64;
        assert!((d / truth - 1.0).abs() < 3.0 * 0.0163, "{d} vs {truth}");
    }
}
