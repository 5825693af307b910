//! [`NumericSummary`]: count, missing, min, max, mean, variance and a KLL quantile sketch.

use std::borrow::Cow;

use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, KllSketch};

use super::KLL_K;

/// The KLL sketch type of numeric summaries.
pub type Kll = KllSketch<KllFloat<f64>>;

/// Values collected in the small batch sketch before it is merged into the main one.
const BATCH: u64 = 4096;

/// Summary of one numeric stream. A monoid: `Default` is empty, [`merge`](Self::merge) is
/// associative. Mean and variance are kept as (count, mean, M2) and merged with Chan et al.'s
/// parallel formula, which stays accurate where naive sums of squares cancel.
///
/// Values first go into a small *batch* KLL sketch that is merged into the main one every
/// [`BATCH`] values. A KLL sketch compacts its level 0 whenever the sketch is full, and the
/// level-0 capacity shrinks as levels are added (to 8 items for a long stream), so feeding a
/// long-lived sketch directly compacts (sort, merge, allocate) every few values. The batch
/// sketch has few levels, so it compacts every ~50–250 values, and its merge into the main
/// sketch moves whole levels at once. KLL merges keep the same error guarantee. Call
/// [`flush`](Self::flush) (or [`SignatureSummary::flush`](super::SignatureSummary::flush))
/// before reading quantiles repeatedly.
#[derive(Debug, Clone, Default)]
pub struct NumericSummary {
    pub(crate) count: u64,
    pub(crate) missing: u64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
    /// Sum of squared deviations from the mean.
    pub(crate) m2: f64,
    /// Created on the first value, so empty summaries cost no allocation.
    pub(crate) kll: Option<Kll>,
    /// The batch sketch (see the type docs).
    pub(crate) batch: Option<Kll>,
}

pub(crate) fn new_kll() -> Option<Kll> {
    KllSketch::new(KLL_K).ok()
}

impl NumericSummary {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value. NaN and ±∞ count as missing.
    #[inline]
    pub fn update(&mut self, x: f64) {
        if !x.is_finite() {
            self.missing += 1;
            return;
        }
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        // Welford's update.
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        if self.batch.is_none() {
            self.batch = new_kll();
        }
        if let (Some(batch), Ok(item)) = (&mut self.batch, KllFloat::<f64>::new(x)) {
            batch.update(item);
            if batch.n() >= BATCH {
                self.flush();
            }
        }
    }

    /// Merges the batch sketch into the main one.
    pub fn flush(&mut self) {
        let Some(batch) = &mut self.batch else {
            return;
        };
        if batch.is_empty() {
            return;
        }
        match &mut self.kll {
            Some(main) => {
                // Fails only on a stream-weight overflow (impossible below MAX_COUNT-sized
                // inputs) and leaves the sketch unchanged then.
                let _ = main.merge(batch);
                batch.reset();
            }
            None => self.kll = self.batch.take(),
        }
    }

    /// The quantile sketch of every value so far (the main sketch, merged with the batch
    /// sketch on a copy when the batch is not empty). `None` while empty.
    ///
    /// KLL compaction is randomized, so while values are still batched two reads may differ
    /// (each within the error bound); after [`flush`](Self::flush) reads are stable.
    pub fn sketch(&self) -> Option<Cow<'_, Kll>> {
        let batch = self.batch.as_ref().filter(|b| !b.is_empty());
        match (&self.kll, batch) {
            (None, None) => None,
            (Some(main), None) => Some(Cow::Borrowed(main)),
            (None, Some(b)) => Some(Cow::Borrowed(b)),
            (Some(main), Some(b)) => {
                let mut all = main.clone();
                let _ = all.merge(b);
                Some(Cow::Owned(all))
            }
        }
    }

    /// Counts one missing (null) value.
    #[inline]
    pub fn update_missing(&mut self) {
        self.missing += 1;
    }

    /// Merges `other` into `self`.
    pub fn merge(&mut self, other: &NumericSummary) {
        self.missing = self.missing.saturating_add(other.missing);
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            let missing = self.missing;
            *self = other.clone();
            self.missing = missing;
            self.flush();
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * (nb / n);
        self.m2 += other.m2 + delta * delta * (na * nb / n);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count = self.count.saturating_add(other.count);
        self.flush();
        for theirs in [&other.kll, &other.batch].into_iter().flatten() {
            if theirs.is_empty() {
                continue;
            }
            match &mut self.kll {
                // Fails only on a stream-weight overflow (impossible below MAX_COUNT-sized
                // inputs) and leaves the sketch unchanged then.
                Some(mine) => {
                    let _ = mine.merge(theirs);
                }
                None => self.kll = Some(theirs.clone()),
            }
        }
    }

    /// Number of (finite) values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of missing values (nulls and non-finite numbers).
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Smallest value.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest value.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Arithmetic mean.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// Population variance (divides by n).
    pub fn variance(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.m2 / self.count as f64).max(0.0))
    }

    /// Sample variance (divides by n − 1).
    pub fn sample_variance(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.m2 / (self.count - 1) as f64).max(0.0))
    }

    /// Population standard deviation.
    pub fn std_dev(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }

    /// The approximate value at normalized `rank` ∈ [0, 1] (inclusive search: the smallest
    /// retained value whose cumulative weight reaches `rank · n`). `None` when empty or when
    /// `rank` is out of range.
    pub fn quantile(&self, rank: f64) -> Option<f64> {
        self.sketch()?
            .quantile(rank, SearchCriteria::Inclusive)
            .ok()
            .flatten()
            .map(KllFloat::into_inner)
    }

    /// The approximate fraction of values ≤ `x`. `None` when empty or `x` is NaN.
    pub fn rank(&self, x: f64) -> Option<f64> {
        let item = KllFloat::<f64>::new(x).ok()?;
        self.sketch()?.rank(&item, SearchCriteria::Inclusive)
    }

    /// The sketch's single-sided normalized rank error (99 % confidence) for the k in use.
    pub fn normalized_rank_error(&self) -> f64 {
        self.sketch()
            .map_or(KLL_RANK_ERROR, |k| k.normalized_rank_error())
    }
}

/// Single-sided normalized rank error of KLL at k = 256 (DataSketches: 2.296 / k^0.9723).
pub const KLL_RANK_ERROR: f64 = 0.010_46;

/// Double-sided (PMF) normalized rank error of KLL at k = 256 (2.446 / k^0.9433).
pub const KLL_PMF_ERROR: f64 = 0.013_09;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn summarize(xs: &[f64]) -> NumericSummary {
        let mut s = NumericSummary::new();
        for &x in xs {
            s.update(x);
        }
        s
    }

    #[test]
    fn moments_match_two_pass_formulas() {
        let xs: Vec<f64> = (0..1000)
            .map(|i| (i as f64 * 0.37).sin() * 10.0 + 3.0)
            .collect();
        let s = summarize(&xs);
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        assert_eq!(s.count(), 1000);
        assert!((s.mean().unwrap() - mean).abs() < 1e-12);
        assert!((s.variance().unwrap() - var).abs() < 1e-9);
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(s.min(), Some(min));
    }

    #[test]
    fn non_finite_values_are_missing() {
        let s = summarize(&[1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 3.0]);
        assert_eq!(s.count(), 2);
        assert_eq!(s.missing(), 3);
        assert_eq!(s.mean(), Some(2.0));
        assert_eq!(s.max(), Some(3.0));
    }

    #[test]
    fn empty_summary_answers_none() {
        let s = NumericSummary::new();
        assert_eq!(s.mean(), None);
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.rank(1.0), None);
        assert_eq!(s.sample_variance(), None);
    }

    #[test]
    fn merge_equals_whole_and_identity_is_neutral() {
        let xs: Vec<f64> = (0..5000).map(|i| ((i * 7919) % 1000) as f64).collect();
        let whole = summarize(&xs);
        let mut left = summarize(&xs[..1234]);
        left.merge(&summarize(&xs[1234..]));
        assert_eq!(left.count(), whole.count());
        assert!((left.mean().unwrap() - whole.mean().unwrap()).abs() < 1e-9);
        assert!((left.variance().unwrap() / whole.variance().unwrap() - 1.0).abs() < 1e-9);
        let median = left.quantile(0.5).unwrap();
        let true_rank = xs.iter().filter(|&&x| x <= median).count() as f64 / xs.len() as f64;
        assert!(
            (true_rank - 0.5).abs() <= KLL_RANK_ERROR + 1e-3,
            "{true_rank}"
        );

        let mut id = NumericSummary::new();
        id.merge(&whole);
        assert_eq!(id.count(), whole.count());
        assert_eq!(id.mean(), whole.mean());
    }

    #[test]
    fn documented_rank_error_matches_the_sketch() {
        let s = summarize(&[1.0, 2.0]);
        assert!((s.normalized_rank_error() - KLL_RANK_ERROR).abs() < 1e-4);
        let pmf = s.sketch().unwrap().normalized_pmf_error();
        assert!((pmf - KLL_PMF_ERROR).abs() < 1e-4);
    }
}
