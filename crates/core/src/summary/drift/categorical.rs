//! Drift tests of categorical features, from two [`CategoricalSummary`]s' frequent items.
//!
//! # The table
//! Both summaries' counts over the union of their categories (sorted by name), plus an
//! "other" cell for mass a purged sketch no longer lists. Every test runs on the table after
//! [`pool_sparse`]: categories expected fewer than [`MIN_EXPECTED`] times in the smaller
//! sample are pooled with "other" into one cell (and that cell, if still sparse, into the
//! smallest remaining category). Pearson's χ² and the χ² approximations of the distances'
//! null laws need about five expected per cell; pooling keeps them honest on long tails
//! instead of letting one rare category decide.
//!
//! # Error from the sketches (frequent items, map size 1024)
//! Counts are exact while the sketch never purged (fewer than 768 distinct values seen):
//! every statistic is then the exact one. After a purge each listed count is over-estimated by
//! at most `max_error` ≤ 3.5 / 1024 · N ≈ 0.34 % of the stream, so each proportion by at most
//! ε_f = max_error / N; the tests take it into account as extra sampling noise (effective
//! sizes, see [`calibrate`](super::calibrate)).

use std::collections::BTreeMap;

use super::calibrate::{effective_size, frequent_sigma, harmonic, BinnedDistance};
use super::special::chi2_sf;
use super::{
    distance_result, hellinger_of, jensen_shannon_of, p_result, DriftError, DriftMethod,
    DriftResult, DriftSettings,
};
use crate::summary::CategoricalSummary;

/// Fewest expected values per cell (in the smaller sample) before a category is pooled.
pub const MIN_EXPECTED: f64 = 5.0;

/// Counts of both summaries over the union of their categories (sorted by name), plus an
/// "other" cell when a purged sketch left mass unaccounted for. Not pooled.
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
    let mut table: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let (ri, ci) = (reference.frequent_items(), current.frequent_items());
    for (k, c) in &ri {
        table.entry(k.clone()).or_default().0 = *c as f64;
    }
    for (k, c) in &ci {
        table.entry(k.clone()).or_default().1 = *c as f64;
    }
    let (mut r, mut c): (Vec<f64>, Vec<f64>) = table.into_values().unzip();
    let other = |total: u64, listed: &[(String, u64)]| {
        let listed: u64 = listed.iter().map(|(_, c)| c).sum();
        total.saturating_sub(listed) as f64
    };
    let (ro, co) = (other(reference.count(), &ri), other(current.count(), &ci));
    if ro > 0.0 || co > 0.0 {
        r.push(ro);
        c.push(co);
    }
    Ok((r, c))
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

/// The pooled table and the samples' effective sizes.
fn table(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
) -> Result<(Vec<f64>, Vec<f64>, f64, f64), DriftError> {
    let (r, c) = category_counts(reference, current)?;
    let listed = |s: &CategoricalSummary| {
        s.frequent_items()
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>()
            .min(s.count())
    };
    let other = listed(reference) < reference.count() || listed(current) < current.count();
    let (r, c) = pool_sparse(&r, &c, other);
    let size = |s: &CategoricalSummary| {
        effective_size(s.count(), frequent_sigma(s.max_error(), s.count()))
    };
    Ok((r, c, size(reference), size(current)))
}

/// Pearson's χ² test of homogeneity on the 2 × k table of both samples' counts, as
/// `scipy.stats.chi2_contingency(table, correction=False)`: expected counts from the pooled
/// proportions, k − 1 degrees of freedom. Yates' continuity correction (scipy's default at
/// k = 2) is not applied: it makes the test conservative, and the calibration suite shows the
/// uncorrected test holds its level from 100 values on. Once a sketch purged, the statistic is
/// scaled by n_e' / n_e (effective over actual harmonic size). Drifts when p <
/// `settings.alpha`.
///
/// Sketch error: none while both frequent-items sketches are exact (`max_error` 0, fewer than
/// 768 distinct values seen); after a purge each count is over-estimated by at most
/// `max_error` (≤ 0.34 % of the stream), taken into account by the effective sizes.
pub fn chi_square(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    let (r, c, n, m) = table(reference, current)?;
    let (stat, p) = chi_square_of(&r, &c);
    let actual = harmonic(r.iter().sum(), c.iter().sum());
    let (stat, p) = if actual > 0.0 && harmonic(n, m) < actual {
        let scaled = stat * harmonic(n, m) / actual;
        (scaled, chi2_sf(scaled, (r.len().max(2) - 1) as f64))
    } else {
        (stat, p)
    };
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
/// max(`settings.jensen_shannon`, its null quantile). Sketch error: as for [`chi_square`];
/// each proportion within `max_error / n` of the stream's.
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
/// max(`settings.hellinger`, its null quantile). Sketch error: as for [`chi_square`].
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
