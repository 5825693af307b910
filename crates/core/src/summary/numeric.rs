//! [`NumericSummary`]: count, missing, min, max, mean, variance and a distinct-value sample.

use std::borrow::Cow;

use super::sample::{DistinctSample, SortedSample};

/// z of a two-sided 99 % DKW band: √(ln(2 / 0.01) / 2).
const DKW99: f64 = 1.627_59;

/// Summary of one numeric stream. A monoid: `Default` is empty, [`merge`](Self::merge) is
/// associative and commutative. Mean and variance are kept as (count, mean, M2) and merged
/// with Chan et al.'s parallel formula, which stays accurate where naive sums of squares
/// cancel (equal across groupings up to rounding). The distribution is kept as a
/// [`DistinctSample`]: the same in every grouping, bit for bit.
///
/// Values first go into the sample's pending buffer; call [`flush`](Self::flush) (or
/// [`SignatureSummary::flush`](super::SignatureSummary::flush)) before reading quantiles
/// repeatedly. Reads through `&self` fold a copy, with the same result.
#[derive(Debug, Clone, Default)]
pub struct NumericSummary {
    pub(crate) count: u64,
    pub(crate) missing: u64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
    /// Sum of squared deviations from the mean.
    pub(crate) m2: f64,
    pub(crate) sample: DistinctSample,
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
        self.sample.update(x);
    }

    /// Folds the pending values into the sample.
    pub fn flush(&mut self) {
        self.sample.fold();
    }

    /// The sample of the values so far, folded (borrowed when nothing is pending).
    pub fn sample(&self) -> Cow<'_, DistinctSample> {
        self.sample.folded()
    }

    /// The sample's weighted empirical distribution, values increasing.
    pub fn sorted(&self) -> SortedSample {
        self.sample.sorted()
    }

    /// Whether the sample holds every value (at most [`SAMPLE_K`](super::SAMPLE_K) distinct
    /// values so far): its distribution is then the stream's own.
    pub fn is_exact(&self) -> bool {
        self.sample().weight() == self.count
    }

    /// How many independent values the sample's distribution is worth as an estimate of the
    /// stream's: infinite while exact, else Kish's (Σc)² / Σc² over the kept counts.
    pub fn sample_size(&self) -> f64 {
        let sample = self.sample();
        if sample.weight() == self.count {
            f64::INFINITY
        } else {
            sample.kish_size()
        }
    }

    /// Half-width of a 99 % band around the stream's CDF that the sample's CDF lies in
    /// (Dvoretzky–Kiefer–Wolfowitz at [`sample_size`](Self::sample_size)): 0 while exact.
    pub fn rank_error(&self) -> f64 {
        dkw_bound(self.sample_size())
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
        self.sample.merge(&other.sample);
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

    /// The sample's value at normalized `rank` ∈ [0, 1] (inclusive search: the smallest kept
    /// value whose cumulative weight reaches `rank · n`). `None` when empty or when `rank` is
    /// out of range.
    pub fn quantile(&self, rank: f64) -> Option<f64> {
        self.sorted().quantile(rank)
    }

    /// The sample's fraction of values ≤ `x`. `None` when empty or `x` is NaN.
    pub fn rank(&self, x: f64) -> Option<f64> {
        if self.count == 0 || x.is_nan() {
            return None;
        }
        Some(self.sorted().cdf(x))
    }
}

/// The 99 % DKW half-width ε = √(ln(2 / 0.01) / (2 n)) at effective size `n` (0 for an
/// infinite one, 1 for none).
pub fn dkw_bound(n: f64) -> f64 {
    if n.is_infinite() {
        0.0
    } else if n > 0.0 {
        (DKW99 / n.sqrt()).min(1.0)
    } else {
        1.0
    }
}

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
        // 1000 distinct values: the sample is exact, so the median is the true one.
        assert!(left.is_exact());
        assert_eq!(left.rank_error(), 0.0);
        assert_eq!(left.quantile(0.5), Some(499.0));
        assert_eq!(left.sample().entries(), whole.sample().entries());

        let mut id = NumericSummary::new();
        id.merge(&whole);
        assert_eq!(id.count(), whole.count());
        assert_eq!(id.mean(), whole.mean());
    }

    #[test]
    fn many_distinct_values_give_a_sample_and_its_error_bound() {
        let xs: Vec<f64> = (0..100_000).map(|i| f64::from(i) * 0.001).collect();
        let s = summarize(&xs);
        assert!(!s.is_exact());
        assert_eq!(s.sample().entries().len(), crate::summary::SAMPLE_K);
        let n = s.sample_size();
        assert!((n - crate::summary::SAMPLE_K as f64).abs() < 1e-6, "{n}");
        let eps = s.rank_error();
        assert!((eps - DKW99 / n.sqrt()).abs() < 1e-12);
        let median = s.quantile(0.5).unwrap();
        let true_rank = xs.iter().filter(|&&x| x <= median).count() as f64 / xs.len() as f64;
        assert!((true_rank - 0.5).abs() <= eps, "{true_rank} vs ± {eps}");
    }
}
