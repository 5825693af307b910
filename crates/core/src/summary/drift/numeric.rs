//! Drift tests of numeric features, from the distinct-value samples and moments of two
//! [`NumericSummary`]s.
//!
//! # Error from the samples (k = 2048 distinct values)
//! While a sample holds every value (at most k distinct values, and merges thereof) every
//! statistic equals the exact one. Beyond that each sampled CDF is within the DKW bound
//! ε = √(ln(2/0.01) / (2 n')) of the stream's at 99 % confidence, n' the sample's Kish size
//! (≈ 2048 for continuous data: ε ≈ 3.6 %), so:
//! - KS D is within ε_r + ε_c of the samples' D;
//! - each PSI / JS bin proportion within 2ε (a difference of two CDF values);
//! - normed Wasserstein within the 99 % quantile of ∫ |(F̂_r − F_r) − (F̂_c − F_c)| dx / σ_ref,
//!   the two sides' independent Brownian-bridge errors taken jointly
//!   ([`wasserstein_sample_error`]), far below ε · range / σ.
//!
//! The tests account for it through effective sample sizes ([`calibrate`](super::calibrate)).

use super::calibrate::{
    bridge_l1_moments, bridges_l1_moments, effective_size, gamma_null, harmonic, sample_sigma,
    BinnedDistance, W_GRID,
};
use super::special::ks_2samp_p;
use super::{
    distance_result, jensen_shannon_of, p_result, DriftError, DriftMethod, DriftResult,
    DriftSettings,
};
use crate::summary::{NumericSummary, SortedSample};

/// Number of PSI / numeric JS bins.
pub const PSI_BINS: usize = 10;
/// Proportion used for an empty PSI bin.
pub const PSI_EPSILON: f64 = 1e-4;

type View = SortedSample;

/// Both sorted samples and the samples' effective sizes.
struct Sides {
    r: View,
    c: View,
    n: f64,
    m: f64,
}

fn sides(reference: &NumericSummary, current: &NumericSummary) -> Result<Sides, DriftError> {
    if reference.count() == 0 {
        return Err(DriftError::EmptyReference);
    }
    if current.count() == 0 {
        return Err(DriftError::EmptyCurrent);
    }
    let (r, c) = (reference.sorted(), current.sorted());
    if r.is_empty() {
        return Err(DriftError::EmptyReference);
    }
    if c.is_empty() {
        return Err(DriftError::EmptyCurrent);
    }
    Ok(Sides {
        n: numeric_effective_size(reference),
        m: numeric_effective_size(current),
        r,
        c,
    })
}

/// The stream's count as seen through its sample (see [`calibrate`](super::calibrate)).
pub fn numeric_effective_size(s: &NumericSummary) -> f64 {
    effective_size(s.count(), sample_sigma(s.sample_size()))
}

fn quantile(view: &View, rank: f64) -> Option<f64> {
    view.quantile(rank)
}

fn cdf(view: &View, x: f64) -> f64 {
    view.cdf(x)
}

/// Sorted union of both supports, with both CDFs at each point.
fn joint_cdf(r: &View, c: &View) -> Vec<(f64, f64, f64)> {
    let mut points = Vec::with_capacity(r.values().len() + c.values().len());
    points.extend_from_slice(r.values());
    points.extend_from_slice(c.values());
    points.sort_by(f64::total_cmp);
    points.dedup();
    points
        .into_iter()
        .map(|x| (x, cdf(r, x), cdf(c, x)))
        .collect()
}

fn bins_of(r: &View, c: &View) -> (Vec<f64>, Vec<f64>) {
    let mut edges: Vec<f64> = (1..PSI_BINS)
        .filter_map(|i| quantile(r, i as f64 / PSI_BINS as f64))
        .collect();
    edges.dedup();
    let proportions = |v: &View| {
        let mut out = Vec::with_capacity(edges.len() + 1);
        let mut below = 0.0;
        for &e in &edges {
            let f = cdf(v, e);
            out.push((f - below).max(0.0));
            below = f;
        }
        out.push((1.0 - below).max(0.0));
        out
    };
    (proportions(r), proportions(c))
}

/// Reference and current proportions in the PSI bins: cut at the reference's deciles
/// (bin i = (edge_{i−1}, edge_i], duplicate edges dropped).
pub fn decile_bins(
    reference: &NumericSummary,
    current: &NumericSummary,
) -> Result<(Vec<f64>, Vec<f64>), DriftError> {
    let s = sides(reference, current)?;
    Ok(bins_of(&s.r, &s.c))
}

/// Population stability index `Σ (c − r) ln(c / r)` on the reference deciles (empty-bin
/// proportions replaced by [`PSI_EPSILON`]). Drifts when it reaches max(`settings.psi`, its
/// null quantile); p-value from the χ² approximation (see [`calibrate`](super::calibrate)).
///
/// Sample error: each bin proportion within 2ε (ε the sample's DKW bound, 0 while exact);
/// taken into account by the effective sizes. `tests/summary_scipy.rs` states the resulting
/// bound on the statistic.
pub fn psi(
    reference: &NumericSummary,
    current: &NumericSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    let s = sides(reference, current)?;
    let (r, c) = bins_of(&s.r, &s.c);
    let stat = psi_of(&r, &c);
    let (p, q) = BinnedDistance::Psi.null(stat, r.len(), harmonic(s.n, s.m), settings.alpha);
    Ok(distance_result(
        DriftMethod::Psi,
        stat,
        p,
        q,
        settings.psi,
        settings.alpha,
    ))
}

/// PSI of two proportion vectors (empty bins replaced by [`PSI_EPSILON`]).
pub fn psi_of(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| {
            let r = if r > 0.0 { r } else { PSI_EPSILON };
            let c = if c > 0.0 { c } else { PSI_EPSILON };
            (c - r) * (c / r).ln()
        })
        .sum()
}

/// The KS statistic D = sup |F − G| of the sampled CDFs, evaluated on the union of their
/// kept values (the sampled CDFs are step functions jumping only there, so this is their
/// exact sup).
pub fn ks_statistic(
    reference: &NumericSummary,
    current: &NumericSummary,
) -> Result<f64, DriftError> {
    let s = sides(reference, current)?;
    Ok(joint_cdf(&s.r, &s.c)
        .iter()
        .map(|(_, f, g)| (f - g).abs())
        .fold(0.0, f64::max))
}

/// Two-sample Kolmogorov–Smirnov test. The p-value is `scipy.stats.ks_2samp`'s
/// (method "auto": exact below 10 001 values per side, else asymptotic; see
/// [`ks_2samp_p`]) at the streams' effective sizes (their counts while both samples are
/// exact). Drifts when p < `settings.alpha`.
///
/// Sample error: D within ε_r + ε_c of the streams' D (ε the sample's DKW bound, 0 while
/// exact); taken into account by the effective sizes.
pub fn ks(
    reference: &NumericSummary,
    current: &NumericSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    let s = sides(reference, current)?;
    let d = joint_cdf(&s.r, &s.c)
        .iter()
        .map(|(_, f, g)| (f - g).abs())
        .fold(0.0, f64::max);
    let size = |x: f64| (x.round() as u64).max(1);
    let p = ks_2samp_p(d, size(s.n), size(s.m));
    Ok(p_result(
        DriftMethod::KolmogorovSmirnov,
        d,
        p,
        settings.alpha,
    ))
}

/// Jensen–Shannon distance (base 2) on the PSI bins; drifts at max(`settings.jensen_shannon`,
/// its null quantile).
///
/// Sample error: the bins as for [`psi`]; JS, a metric, moves by at most JS(r, r') + JS(c, c')
/// between the exact bins r, c and the sampled r', c'.
pub fn jensen_shannon(
    reference: &NumericSummary,
    current: &NumericSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    let s = sides(reference, current)?;
    let (r, c) = bins_of(&s.r, &s.c);
    let stat = jensen_shannon_of(&r, &c);
    let (p, q) =
        BinnedDistance::JensenShannon.null(stat, r.len(), harmonic(s.n, s.m), settings.alpha);
    Ok(distance_result(
        DriftMethod::JensenShannon,
        stat,
        p,
        q,
        settings.jensen_shannon,
        settings.alpha,
    ))
}

/// Wasserstein-1 distance ∫ |F − G| dx (= ∫₀¹ |F⁻¹ − G⁻¹| du), integrated exactly between
/// consecutive support points, divided by the reference's population standard deviation
/// (floored at 0.001, as Evidently does). Drifts at max(`settings.wasserstein`, its null
/// quantile): the Brownian-bridge limit on the reference's quantile function at the
/// samples' effective sizes (see [`calibrate`](super::calibrate)).
///
/// Sample error: within [`wasserstein_sample_error`] of the streams' statistic (99 %).
pub fn wasserstein(
    reference: &NumericSummary,
    current: &NumericSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    let s = sides(reference, current)?;
    let joint = joint_cdf(&s.r, &s.c);
    let w: f64 = joint
        .windows(2)
        .map(|w| match w {
            [(x0, f, g), (x1, _, _)] => (f - g).abs() * (x1 - x0),
            _ => 0.0,
        })
        .sum();
    let norm = reference.std_dev().unwrap_or(0.0).max(0.001);
    let stat = w / norm;
    let q: Vec<f64> = (0..=W_GRID)
        .map(|i| quantile(&s.r, i as f64 / W_GRID as f64).unwrap_or(0.0))
        .collect();
    let dq: Vec<f64> = q.windows(2).map(|w| (w[1] - w[0]) / norm).collect();
    let (mean, var) = bridge_l1_moments(&dq);
    let scale = (1.0 / s.n + 1.0 / s.m).sqrt();
    let (p, s_q) = gamma_null(stat / scale, mean, var, settings.alpha);
    Ok(distance_result(
        DriftMethod::Wasserstein,
        stat,
        p,
        s_q * scale,
        settings.wasserstein,
        settings.alpha,
    ))
}

/// Bound on how far the normed Wasserstein statistic of two samples lies from the streams'
/// (99 % confidence). |W₁(F̂_r, F̂_c) − W₁(F_r, F_c)| ≤ ∫ |(F̂_r − F_r) − (F̂_c − F_c)| dx, and
/// each sample's CDF error is a Brownian bridge over its own CDF scaled by 1/√n' (n' its
/// effective size; an exact side adds nothing), the two independent: the bound is the 99 %
/// quantile of that integral ([`bridges_l1_moments`], gamma law as in
/// [`calibrate`](super::calibrate)), on a grid of both samples' quantiles. Taking the two
/// errors jointly, rather than as the sum of each side's own quantile, is what makes the
/// bound about 1/√2 of the per-side sum for samples of equal size.
pub fn wasserstein_sample_error(reference: &NumericSummary, current: &NumericSummary) -> f64 {
    let norm = reference.std_dev().unwrap_or(0.0).max(0.001);
    let sampled: Vec<(View, f64)> = [reference, current]
        .into_iter()
        .filter(|s| s.count() > 0 && s.sample_size().is_finite())
        .map(|s| (s.sorted(), s.sample_size()))
        .collect();
    let mut x: Vec<f64> = sampled
        .iter()
        .flat_map(|(v, _)| (0..=W_GRID).filter_map(|i| quantile(v, i as f64 / W_GRID as f64)))
        .collect();
    x.sort_by(f64::total_cmp);
    x.dedup();
    if sampled.is_empty() || x.len() < 2 {
        return 0.0;
    }
    let widths: Vec<f64> = x.windows(2).map(|w| (w[1] - w[0]) / norm).collect();
    let mids: Vec<f64> = x.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
    let sides: Vec<(Vec<f64>, f64)> = sampled
        .iter()
        .map(|(v, n)| (mids.iter().map(|&m| cdf(v, m)).collect(), *n))
        .collect();
    let (mean, var) = bridges_l1_moments(&widths, &sides);
    gamma_null(0.0, mean, var, 0.01).1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn numeric(xs: impl IntoIterator<Item = f64>) -> NumericSummary {
        let mut s = NumericSummary::new();
        for x in xs {
            s.update(x);
        }
        s
    }

    #[test]
    fn identical_samples_show_no_drift() {
        let set = DriftSettings::default();
        let a = numeric((0..5000).map(|i| f64::from(i % 97)));
        let b = numeric((0..5000).map(|i| f64::from((i * 7) % 97)));
        for r in [
            psi(&a, &b, &set).unwrap(),
            ks(&a, &b, &set).unwrap(),
            jensen_shannon(&a, &b, &set).unwrap(),
            wasserstein(&a, &b, &set).unwrap(),
        ] {
            assert!(!r.drifted, "{r:?}");
            assert!(r.p_value.unwrap() > 0.05, "{r:?}");
        }
    }

    #[test]
    fn shifted_samples_drift_on_every_numeric_test() {
        let set = DriftSettings::default();
        let a = numeric((0..5000).map(|i| f64::from(i % 100)));
        let b = numeric((0..5000).map(|i| f64::from(i % 100) + 40.0));
        for r in [
            psi(&a, &b, &set).unwrap(),
            ks(&a, &b, &set).unwrap(),
            jensen_shannon(&a, &b, &set).unwrap(),
            wasserstein(&a, &b, &set).unwrap(),
        ] {
            assert!(r.drifted, "{r:?}");
        }
        // Exactly known for a pure shift: W1 = 40, std of 0..99 = √((100² − 1)/12).
        let w = wasserstein(&a, &b, &set).unwrap().statistic;
        let std = ((100.0f64 * 100.0 - 1.0) / 12.0).sqrt();
        assert!((w - 40.0 / std).abs() < 0.05 * 40.0 / std, "{w}");
    }

    #[test]
    fn exact_mode_ks_matches_hand_computation() {
        // Disjoint samples of 3 and 4: D = 1, and 2 of the C(7, 3) = 35 orderings reach it.
        let a = numeric([1.0, 2.0, 3.0]);
        let b = numeric([4.0, 5.0, 6.0, 7.0]);
        let r = ks(&a, &b, &DriftSettings::default()).unwrap();
        assert_eq!(r.statistic, 1.0);
        assert!((r.p_value.unwrap() - 2.0 / 35.0).abs() < 1e-15);
    }

    #[test]
    fn thresholds_grow_as_samples_shrink_and_keep_the_minimum_effect() {
        let set = DriftSettings::default();
        let big = numeric((0..20_000).map(|i| f64::from(i % 1000)));
        let small = numeric((0..150).map(|i| f64::from((i * 7) % 1000)));
        let large_n = wasserstein(&big, &big, &set).unwrap();
        let small_n = wasserstein(&big, &small, &set).unwrap();
        assert_eq!(large_n.threshold, set.wasserstein, "{large_n:?}");
        assert!(small_n.threshold > set.wasserstein, "{small_n:?}");
        assert_eq!(large_n.min_effect, Some(set.wasserstein));
    }
}
