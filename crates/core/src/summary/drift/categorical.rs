//! Drift tests of categorical features, from two [`CategoricalSummary`]s' exact counts.
//!
//! # The table
//! While both summaries are exact (at most [`CATEGORY_EXACT_MAX`](crate::summary::CATEGORY_EXACT_MAX) distinct categories each),
//! the table is both summaries' counts over the union of their categories (sorted by name).
//! Once either is bucketed, it is both summaries' counts per hash bucket
//! ([`category_bucket`](crate::summary::category_bucket), the exact side bucketed the same way), buckets empty on both sides
//! left out: a coarsening of the category table (categories sharing a bucket add up), so
//! still a valid two-sample test of the same null hypothesis, with less power only against
//! shifts between categories of one bucket. Either way every count is exact and a pure
//! function of the values, so the verdict does not depend on merge order, batching or
//! restarts.
//!
//! Every test runs on the table after [`pool_sparse`]: categories expected fewer than
//! [`MIN_EXPECTED`] times in the smaller sample are pooled into one cell (and that cell, if
//! still sparse, into the smallest remaining category). Pearson's χ² and the χ² approximations
//! of the distances' null laws need about five expected per cell; pooling keeps them honest on
//! long tails instead of letting one rare category decide.

use std::collections::BTreeMap;

use super::calibrate::{harmonic, BinnedDistance};
use super::special::chi2_sf;
use super::{
    distance_result, hellinger_of, jensen_shannon_of, p_result, DriftError, DriftMethod,
    DriftResult, DriftSettings,
};
use crate::summary::CategoricalSummary;

/// Fewest expected values per cell (in the smaller sample) before a category is pooled.
pub const MIN_EXPECTED: f64 = 5.0;

/// Counts of both summaries per category (both exact: the union of their categories, sorted
/// by name) or per non-empty hash bucket (either bucketed). Not pooled.
pub fn category_counts(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
) -> Result<(Vec<f64>, Vec<f64>), DriftError> {
    if reference.count() == 0 {
        return Err(DriftError::EmptyReference);
    }
    if current.count() == 0 {
        return Err(DriftError::EmptyCurrent);
    }
    if let (Some(ri), Some(ci)) = (reference.exact_counts(), current.exact_counts()) {
        let mut table: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for (k, c) in ri {
            table.entry(k).or_default().0 = c as f64;
        }
        for (k, c) in ci {
            table.entry(k).or_default().1 = c as f64;
        }
        return Ok(table.into_values().unzip());
    }
    let (rb, cb) = (reference.bucket_counts(), current.bucket_counts());
    Ok(rb
        .iter()
        .zip(&cb)
        .filter(|(r, c)| **r > 0 || **c > 0)
        .map(|(r, c)| (*r as f64, *c as f64))
        .unzip())
}

/// Pools sparse cells (see the module docs). `other_last`: the last cell is "other", always
/// pooled. Keeps the order of the cells that stay; the pooled cell comes last.
pub fn pool_sparse(r: &[f64], c: &[f64], other_last: bool) -> (Vec<f64>, Vec<f64>) {
    let (rt, ct): (f64, f64) = (r.iter().sum(), c.iter().sum());
    let total = rt + ct;
    let smaller = rt.min(ct);
    let (mut kr, mut kc) = (Vec::new(), Vec::new());
    let (mut pr, mut pc) = (0.0, 0.0);
    let last = r.len().saturating_sub(1);
    for (i, (&a, &b)) in r.iter().zip(c).enumerate() {
        let expected = smaller * (a + b) / total;
        if expected < MIN_EXPECTED || (other_last && i == last) {
            pr += a;
            pc += b;
        } else {
            kr.push(a);
            kc.push(b);
        }
    }
    if pr + pc > 0.0 {
        if smaller * (pr + pc) / total >= MIN_EXPECTED || kr.is_empty() {
            kr.push(pr);
            kc.push(pc);
        } else {
            // Still sparse: fold into the smallest category left.
            let mut smallest = 0;
            for i in 1..kr.len() {
                if kr[i] + kc[i] < kr[smallest] + kc[smallest] {
                    smallest = i;
                }
            }
            kr[smallest] += pr;
            kc[smallest] += pc;
        }
    }
    (kr, kc)
}

/// The pooled table and the samples' sizes.
fn table(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
) -> Result<(Vec<f64>, Vec<f64>, f64, f64), DriftError> {
    let (r, c) = category_counts(reference, current)?;
    let (r, c) = pool_sparse(&r, &c, false);
    Ok((r, c, reference.count() as f64, current.count() as f64))
}

/// Pearson's χ² test of homogeneity on the 2 × k table of both samples' counts, as
/// `scipy.stats.chi2_contingency(table, correction=False)`: expected counts from the pooled
/// proportions, k − 1 degrees of freedom. Yates' continuity correction (scipy's default at
/// k = 2) is not applied: it makes the test conservative, and the calibration suite shows the
/// uncorrected test holds its level from 100 values on. Drifts when p < `settings.alpha`.
///
/// Exact on the category table while both summaries are exact, on the bucket table otherwise
/// (see the module docs): never an estimate.
pub fn chi_square(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    let (r, c, _, _) = table(reference, current)?;
    let (stat, p) = chi_square_of(&r, &c);
    Ok(p_result(DriftMethod::ChiSquare, stat, p, settings.alpha))
}

/// χ² statistic and p-value of the 2 × k contingency table `reference` / `observed`
/// (no pooling, no correction). 0 and 1 with fewer than two non-empty categories.
pub fn chi_square_of(reference: &[f64], observed: &[f64]) -> (f64, f64) {
    let (rt, ot): (f64, f64) = (reference.iter().sum(), observed.iter().sum());
    if rt <= 0.0 || ot <= 0.0 {
        return (0.0, 1.0);
    }
    let total = rt + ot;
    let mut stat = 0.0;
    let mut k = 0usize;
    for (&r, &o) in reference.iter().zip(observed) {
        let t = r + o;
        if t <= 0.0 {
            continue;
        }
        k += 1;
        let (er, eo) = (rt * t / total, ot * t / total);
        stat += (r - er) * (r - er) / er + (o - eo) * (o - eo) / eo;
    }
    if k < 2 {
        return (0.0, 1.0);
    }
    (stat, chi2_sf(stat, (k - 1) as f64))
}

/// Jensen–Shannon distance (base 2) between the pooled category proportions; drifts at
/// max(`settings.jensen_shannon`, its null quantile). On the table of [`chi_square`].
pub fn jensen_shannon_categorical(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    let (r, c, n, m) = table(reference, current)?;
    let stat = jensen_shannon_of(&r, &c);
    let (p, q) = BinnedDistance::JensenShannon.null(stat, r.len(), harmonic(n, m), settings.alpha);
    Ok(distance_result(
        DriftMethod::JensenShannon,
        stat,
        p,
        q,
        settings.jensen_shannon,
        settings.alpha,
    ))
}

/// Hellinger distance between the pooled category proportions; drifts at
/// max(`settings.hellinger`, its null quantile). On the table of [`chi_square`].
pub fn hellinger(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    let (r, c, n, m) = table(reference, current)?;
    let stat = hellinger_of(&r, &c);
    let (p, q) = BinnedDistance::Hellinger.null(stat, r.len(), harmonic(n, m), settings.alpha);
    Ok(distance_result(
        DriftMethod::Hellinger,
        stat,
        p,
        q,
        settings.hellinger,
        settings.alpha,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn categorical(pairs: &[(&str, usize)]) -> CategoricalSummary {
        let mut s = CategoricalSummary::new();
        for (v, n) in pairs {
            for _ in 0..*n {
                s.update(v);
            }
        }
        s
    }

    #[test]
    fn categorical_tests() {
        let set = DriftSettings::default();
        let a = categorical(&[("a", 500), ("b", 300), ("c", 200)]);
        let same = categorical(&[("a", 250), ("b", 150), ("c", 100)]);
        let moved = categorical(&[("a", 100), ("b", 300), ("c", 600)]);
        let r = chi_square(&a, &same, &set).unwrap();
        assert!(r.statistic.abs() < 1e-12 && (r.p_value.unwrap() - 1.0).abs() < 1e-12);
        assert!(!r.drifted);
        assert!(chi_square(&a, &moved, &set).unwrap().drifted);
        assert!(
            jensen_shannon_categorical(&a, &moved, &set)
                .unwrap()
                .drifted
        );
        assert!(hellinger(&a, &moved, &set).unwrap().drifted);
        assert!(!hellinger(&a, &same, &set).unwrap().drifted);
        // A category absent from the reference is a cell of the table, not an infinite χ².
        let new = categorical(&[("a", 400), ("z", 100)]);
        let r = chi_square(&a, &new, &set).unwrap();
        assert!(r.statistic.is_finite() && r.drifted, "{r:?}");
    }

    #[test]
    fn two_sample_chi_square_matches_a_hand_computed_table() {
        // 2 × 2 table [[30, 70], [50, 50]]: expected [[40, 60], [40, 60]],
        // χ² = 100/40 + 100/60 + 100/40 + 100/60 = 8.3333…, 1 dof.
        let (stat, p) = chi_square_of(&[30.0, 70.0], &[50.0, 50.0]);
        assert!((stat - 25.0 / 3.0).abs() < 1e-12);
        assert!((p - 0.003_892_417_228_382_3).abs() < 1e-9, "{p}");
    }

    #[test]
    fn sparse_categories_are_pooled() {
        // Smaller sample 102 of 722: a cell needs 36 values in total (5 expected) to stay.
        let r = [500.0, 400.0, 60.0, 30.0, 30.0];
        let c = [50.0, 40.0, 6.0, 3.0, 3.0];
        let (pr, pc) = pool_sparse(&r, &c, false);
        assert_eq!(pr, vec![500.0, 400.0, 60.0, 60.0]);
        assert_eq!(pc, vec![50.0, 40.0, 6.0, 6.0]);
        // The pooled cell itself too sparse: folded into the smallest remaining category.
        let (pr, pc) = pool_sparse(&[500.0, 400.0, 3.0], &[50.0, 40.0, 1.0], false);
        assert_eq!((pr, pc), (vec![500.0, 403.0], vec![50.0, 41.0]));
    }
}
