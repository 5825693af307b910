//! Drift statistics between a reference summary and a current one.
//!
//! Numeric features (from the KLL sketches and moments of two [`NumericSummary`]s):
//! - [`psi`]: population stability index over 10 bins cut at the reference's deciles
//!   (bin i = (edge_{i-1}, edge_i], duplicate edges dropped), empty-bin proportions replaced by
//!   [`PSI_EPSILON`]; `Σ (c − r) ln(c / r)`.
//! - [`ks`]: two-sample Kolmogorov–Smirnov. D = sup |F − G| where F and G are the sketches'
//!   CDFs evaluated on the union of their retained points (F and G are step functions that
//!   only jump there, so this is the exact sup of the sketched CDFs). p-value from the
//!   asymptotic Kolmogorov distribution at √n_eff · D, n_eff = n·m / (n + m) (scipy's
//!   `kstwobign.sf`; scipy's own `ks_2samp` uses the finite-n distribution instead, which
//!   differs by a few percent below n_eff ≈ 100).
//! - [`jensen_shannon`]: Jensen–Shannon *distance* (base 2, in [0, 1]) on the PSI bins.
//! - [`wasserstein`]: Wasserstein-1 distance ∫ |F − G| dx (= ∫₀¹ |F⁻¹ − G⁻¹| du), integrated
//!   exactly between consecutive support points, divided by the reference's population
//!   standard deviation (floored at 0.001, as Evidently does).
//!
//! Categorical features (from two [`CategoricalSummary`]s' frequent items; a purged sketch's
//! unaccounted mass goes to one "other" bucket):
//! - [`chi_square`]: Pearson's χ² of the current counts against the reference proportions
//!   scaled to the current total (Evidently's test), k − 1 degrees of freedom. The p-value uses
//!   the regularized upper incomplete gamma function implemented here (series and continued
//!   fraction), which avoids pulling `statrs` and its linear-algebra dependencies for one
//!   function; the scipy fixtures check it.
//! - [`jensen_shannon_categorical`], [`hellinger`]: distances on the two proportion vectors.
//!
//! # Error from the sketches
//! While a KLL sketch holds all its values (n ≤ k = 256 values, and merges thereof, stay
//! exact) every statistic equals the exact one. Beyond that, each CDF value is within the KLL
//! rank error ε ≈ 1.05 % (99 % confidence), so KS D is within 2ε, and each PSI / JS bin
//! proportion within 2ε (double-sided: ≈ 1.31 % per sketch).
//!
//! # Defaults ([`default_test`])
//! As Evidently's: with a reference of at most [`SMALL_REFERENCE`] = 1000 values, KS (numeric)
//! or χ² (categorical), drift when p < 0.05; above, Wasserstein normed (numeric) drift when
//! ≥ 0.1, or Jensen–Shannon (categorical) drift when ≥ 0.1. PSI, when asked for, drifts at
//! ≥ 0.2 (the common industry rule; Evidently uses 0.1).

use std::collections::BTreeMap;

use datasketches::common::SearchCriteria;
use datasketches::kll::{KllFloat, SortedView};

use super::{CategoricalSummary, FeatureKind, FeatureSummary, NumericSummary};

/// Number of PSI / numeric JS bins.
pub const PSI_BINS: usize = 10;
/// Proportion used for an empty PSI bin.
pub const PSI_EPSILON: f64 = 1e-4;
/// PSI drift threshold.
pub const PSI_THRESHOLD: f64 = 0.2;
/// p-value threshold of KS and χ².
pub const P_VALUE_THRESHOLD: f64 = 0.05;
/// Wasserstein (normed) drift threshold.
pub const WASSERSTEIN_THRESHOLD: f64 = 0.1;
/// Jensen–Shannon distance drift threshold.
pub const JENSEN_SHANNON_THRESHOLD: f64 = 0.1;
/// Hellinger distance drift threshold.
pub const HELLINGER_THRESHOLD: f64 = 0.1;
/// Largest reference (values) for which the default is a p-value test.
pub const SMALL_REFERENCE: u64 = 1000;
/// Most quantile queries used to enumerate a sketch's support points.
const MAX_SUPPORT_QUERIES: u64 = 8192;

/// A drift statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftMethod {
    Psi,
    KolmogorovSmirnov,
    JensenShannon,
    Wasserstein,
    ChiSquare,
    Hellinger,
}

impl DriftMethod {
    /// A short stable name (`psi`, `ks`, `jensen_shannon`, …) for events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftMethod::Psi => "psi",
            DriftMethod::KolmogorovSmirnov => "ks",
            DriftMethod::JensenShannon => "jensen_shannon",
            DriftMethod::Wasserstein => "wasserstein_normed",
            DriftMethod::ChiSquare => "chi_square",
            DriftMethod::Hellinger => "hellinger",
        }
    }
}

/// Outcome of one test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftResult {
    pub method: DriftMethod,
    /// The statistic (D, χ², PSI, a distance).
    pub statistic: f64,
    /// For KS and χ².
    pub p_value: Option<f64>,
    /// The p-value threshold (p-value tests) or the statistic threshold (the others).
    pub threshold: f64,
    /// p < threshold for p-value tests, statistic ≥ threshold for the others.
    pub drifted: bool,
}

/// Why a test could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DriftError {
    #[error("the reference summary has no values")]
    EmptyReference,
    #[error("the current summary has no values")]
    EmptyCurrent,
}

fn distance(method: DriftMethod, statistic: f64, threshold: f64) -> DriftResult {
    DriftResult {
        method,
        statistic,
        p_value: None,
        threshold,
        drifted: statistic >= threshold,
    }
}

fn p_test(method: DriftMethod, statistic: f64, p: f64) -> DriftResult {
    DriftResult {
        method,
        statistic,
        p_value: Some(p),
        threshold: P_VALUE_THRESHOLD,
        drifted: p < P_VALUE_THRESHOLD,
    }
}

// ---------------------------------------------------------------------------------------
// Numeric

type View = SortedView<KllFloat<f64>>;

fn views(reference: &NumericSummary, current: &NumericSummary) -> Result<(View, View), DriftError> {
    let r = reference.sketch().ok_or(DriftError::EmptyReference)?;
    let c = current.sketch().ok_or(DriftError::EmptyCurrent)?;
    if r.is_empty() {
        return Err(DriftError::EmptyReference);
    }
    if c.is_empty() {
        return Err(DriftError::EmptyCurrent);
    }
    Ok((r.sorted_view(), c.sorted_view()))
}

/// The distinct retained values of a sketch: quantiles at the midpoints of `g` equal rank
/// steps. With g = n (n ≤ 8192) every retained value is hit; beyond, a value can be skipped
/// only if its weight is below n / 8192, which moves a CDF by less than 1/8192.
fn support_into(view: &View, out: &mut Vec<f64>) {
    let n = view.total_weight();
    let g = n.min(MAX_SUPPORT_QUERIES);
    for i in 1..=g {
        let rank = (i as f64 - 0.5) / g as f64;
        if let Ok(Some(x)) = view.quantile(rank, SearchCriteria::Inclusive) {
            out.push(x.into_inner());
        }
    }
    for rank in [0.0, 1.0] {
        if let Ok(Some(x)) = view.quantile(rank, SearchCriteria::Inclusive) {
            out.push(x.into_inner());
        }
    }
}

fn cdf(view: &View, x: f64) -> f64 {
    KllFloat::<f64>::new(x)
        .ok()
        .and_then(|item| view.rank(&item, SearchCriteria::Inclusive))
        .unwrap_or(0.0)
}

/// Sorted union of both supports, with both CDFs at each point.
fn joint_cdf(r: &View, c: &View) -> Vec<(f64, f64, f64)> {
    let mut points = Vec::new();
    support_into(r, &mut points);
    support_into(c, &mut points);
    points.sort_by(f64::total_cmp);
    points.dedup();
    points
        .into_iter()
        .map(|x| (x, cdf(r, x), cdf(c, x)))
        .collect()
}

/// Reference and current proportions in the PSI bins (reference deciles).
pub fn decile_bins(
    reference: &NumericSummary,
    current: &NumericSummary,
) -> Result<(Vec<f64>, Vec<f64>), DriftError> {
    let (r, c) = views(reference, current)?;
    let mut edges: Vec<f64> = (1..PSI_BINS)
        .filter_map(|i| {
            r.quantile(i as f64 / PSI_BINS as f64, SearchCriteria::Inclusive)
                .ok()
                .flatten()
                .map(KllFloat::into_inner)
        })
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
    Ok((proportions(&r), proportions(&c)))
}

/// Population stability index on the reference deciles.
pub fn psi(
    reference: &NumericSummary,
    current: &NumericSummary,
) -> Result<DriftResult, DriftError> {
    let (r, c) = decile_bins(reference, current)?;
    Ok(distance(DriftMethod::Psi, psi_of(&r, &c), PSI_THRESHOLD))
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

/// Two-sample Kolmogorov–Smirnov test on the sketched CDFs.
pub fn ks(reference: &NumericSummary, current: &NumericSummary) -> Result<DriftResult, DriftError> {
    let (r, c) = views(reference, current)?;
    let d = joint_cdf(&r, &c)
        .iter()
        .map(|(_, f, g)| (f - g).abs())
        .fold(0.0, f64::max);
    let (n, m) = (r.total_weight() as f64, c.total_weight() as f64);
    let n_eff = n * m / (n + m);
    Ok(p_test(
        DriftMethod::KolmogorovSmirnov,
        d,
        kolmogorov_sf(n_eff.sqrt() * d),
    ))
}

/// Jensen–Shannon distance (base 2) on the PSI bins.
pub fn jensen_shannon(
    reference: &NumericSummary,
    current: &NumericSummary,
) -> Result<DriftResult, DriftError> {
    let (r, c) = decile_bins(reference, current)?;
    Ok(distance(
        DriftMethod::JensenShannon,
        jensen_shannon_of(&r, &c),
        JENSEN_SHANNON_THRESHOLD,
    ))
}

/// Wasserstein-1 distance divided by the reference's standard deviation.
pub fn wasserstein(
    reference: &NumericSummary,
    current: &NumericSummary,
) -> Result<DriftResult, DriftError> {
    let (r, c) = views(reference, current)?;
    let joint = joint_cdf(&r, &c);
    let w: f64 = joint
        .windows(2)
        .map(|w| match w {
            [(x0, f, g), (x1, _, _)] => (f - g).abs() * (x1 - x0),
            _ => 0.0,
        })
        .sum();
    let norm = reference.std_dev().unwrap_or(0.0).max(0.001);
    Ok(distance(
        DriftMethod::Wasserstein,
        w / norm,
        WASSERSTEIN_THRESHOLD,
    ))
}

/// Survival function of the Kolmogorov distribution, P(K > z).
pub fn kolmogorov_sf(z: f64) -> f64 {
    if z.is_nan() || z <= 0.0 {
        return 1.0;
    }
    if z < 1.18 {
        // P(K ≤ z) = √(2π)/z · Σ_{j≥1} exp(−(2j−1)² π² / (8 z²)); converges fast for small z.
        let k = -std::f64::consts::PI * std::f64::consts::PI / (8.0 * z * z);
        let s: f64 = (1..=20)
            .map(|j| {
                let o = f64::from(2 * j - 1);
                (o * o * k).exp()
            })
            .sum();
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / z * s).clamp(0.0, 1.0)
    } else {
        // P(K > z) = 2 Σ_{j≥1} (−1)^{j−1} exp(−2 j² z²).
        let s: f64 = (1..=100)
            .map(|j| {
                let j = f64::from(j);
                let sign = if j as u32 % 2 == 1 { 1.0 } else { -1.0 };
                sign * (-2.0 * j * j * z * z).exp()
            })
            .sum();
        (2.0 * s).clamp(0.0, 1.0)
    }
}

// ---------------------------------------------------------------------------------------
// Categorical

/// Counts of both summaries over the union of their categories (sorted by name), plus an
/// "other" bucket when a purged sketch left mass unaccounted for.
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

fn normalize(v: &[f64]) -> Vec<f64> {
    let total: f64 = v.iter().sum();
    if total > 0.0 {
        v.iter().map(|x| x / total).collect()
    } else {
        v.to_vec()
    }
}

/// Pearson's χ² test of the current counts against the reference proportions.
pub fn chi_square(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
) -> Result<DriftResult, DriftError> {
    let (r, c) = category_counts(reference, current)?;
    let (stat, p) = chi_square_of(&r, &c);
    Ok(p_test(DriftMethod::ChiSquare, stat, p))
}

/// χ² statistic and p-value of `observed` counts against `reference` counts rescaled to the
/// observed total. A category never seen in the reference but observed now gives χ² = ∞.
pub fn chi_square_of(reference: &[f64], observed: &[f64]) -> (f64, f64) {
    let (rt, ot): (f64, f64) = (reference.iter().sum(), observed.iter().sum());
    if rt <= 0.0 || ot <= 0.0 {
        return (0.0, 1.0);
    }
    let scale = ot / rt;
    let mut stat = 0.0;
    for (&r, &o) in reference.iter().zip(observed) {
        let e = r * scale;
        if e > 0.0 {
            stat += (o - e) * (o - e) / e;
        } else if o > 0.0 {
            return (f64::INFINITY, 0.0);
        }
    }
    let dof = reference.len().saturating_sub(1);
    if dof == 0 {
        return (stat, 1.0);
    }
    (stat, gamma_q(dof as f64 / 2.0, stat / 2.0))
}

/// Jensen–Shannon distance (base 2) between the category proportions.
pub fn jensen_shannon_categorical(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
) -> Result<DriftResult, DriftError> {
    let (r, c) = category_counts(reference, current)?;
    Ok(distance(
        DriftMethod::JensenShannon,
        jensen_shannon_of(&r, &c),
        JENSEN_SHANNON_THRESHOLD,
    ))
}

/// Hellinger distance between the category proportions.
pub fn hellinger(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
) -> Result<DriftResult, DriftError> {
    let (r, c) = category_counts(reference, current)?;
    Ok(distance(
        DriftMethod::Hellinger,
        hellinger_of(&r, &c),
        HELLINGER_THRESHOLD,
    ))
}

/// Jensen–Shannon distance (base 2, in [0, 1]) of two non-negative vectors (normalized first).
pub fn jensen_shannon_of(p: &[f64], q: &[f64]) -> f64 {
    let (p, q) = (normalize(p), normalize(q));
    let kl = |a: f64, m: f64| if a > 0.0 { a * (a / m).log2() } else { 0.0 };
    let js: f64 = p
        .iter()
        .zip(&q)
        .map(|(&a, &b)| {
            let m = 0.5 * (a + b);
            0.5 * (kl(a, m) + kl(b, m))
        })
        .sum();
    js.max(0.0).sqrt()
}

/// Hellinger distance (in [0, 1]) of two non-negative vectors (normalized first).
pub fn hellinger_of(p: &[f64], q: &[f64]) -> f64 {
    let (p, q) = (normalize(p), normalize(q));
    let bc: f64 = p.iter().zip(&q).map(|(a, b)| (a * b).sqrt()).sum();
    (1.0 - bc).max(0.0).sqrt()
}

// ---------------------------------------------------------------------------------------
// Defaults

/// Evidently's default for a numeric feature: KS when the reference has at most
/// [`SMALL_REFERENCE`] values, else normed Wasserstein.
pub fn default_numeric_test(
    reference: &NumericSummary,
    current: &NumericSummary,
) -> Result<DriftResult, DriftError> {
    if reference.count() <= SMALL_REFERENCE {
        ks(reference, current)
    } else {
        wasserstein(reference, current)
    }
}

/// Evidently's default for a categorical feature: χ² when the reference has at most
/// [`SMALL_REFERENCE`] values, else Jensen–Shannon.
pub fn default_categorical_test(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
) -> Result<DriftResult, DriftError> {
    if reference.count() <= SMALL_REFERENCE {
        chi_square(reference, current)
    } else {
        jensen_shannon_categorical(reference, current)
    }
}

/// The default test of a feature, by the reference's majority kind. The current window's
/// values of that same kind are compared (values of the other kind show up as
/// [`FeatureSummary::type_mismatches`]).
pub fn default_test(
    reference: &FeatureSummary,
    current: &FeatureSummary,
) -> Result<DriftResult, DriftError> {
    match reference.kind() {
        FeatureKind::Unknown => Err(DriftError::EmptyReference),
        FeatureKind::Numeric => {
            let r = reference.numeric().ok_or(DriftError::EmptyReference)?;
            let c = current.numeric().ok_or(DriftError::EmptyCurrent)?;
            default_numeric_test(r, c)
        }
        FeatureKind::Categorical => {
            let r = reference.categorical().ok_or(DriftError::EmptyReference)?;
            let c = current.categorical().ok_or(DriftError::EmptyCurrent)?;
            default_categorical_test(r, c)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Special functions

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a), a > 0, x ≥ 0.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x.is_nan() || a.is_nan() || a <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // Series for P(a, x): Σ x^n / (a (a+1) … (a+n)).
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut ap = a;
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * log_prefix.exp()).clamp(0.0, 1.0)
    } else {
        // Continued fraction for Q(a, x), modified Lentz.
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }
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
    fn gamma_q_known_identities() {
        // Q(1, x) = e^{−x}; Q(1/2, x) = erfc(√x), erfc(1) = 0.157299207050285.
        for x in [0.1f64, 1.0, 2.5, 10.0] {
            assert!((gamma_q(1.0, x) - (-x).exp()).abs() < 1e-13, "{x}");
        }
        assert!((gamma_q(0.5, 1.0) - 0.157_299_207_050_285).abs() < 1e-12);
        assert_eq!(gamma_q(3.0, 0.0), 1.0);
        // Q(k, x) for integer k = e^{−x} Σ_{i<k} x^i / i!.
        let x: f64 = 4.2;
        let expect = (-x).exp() * (1.0 + x + x * x / 2.0 + x.powi(3) / 6.0);
        assert!((gamma_q(4.0, x) - expect).abs() < 1e-13);
    }

    #[test]
    fn kolmogorov_sf_branches_agree_and_are_monotone() {
        let mut last = 1.0;
        for i in 1..300 {
            let z = f64::from(i) * 0.01;
            let p = kolmogorov_sf(z);
            assert!(p <= last + 1e-12, "not monotone at {z}");
            last = p;
        }
        // Continuity at the branch switch, and a classic value: P(K > 1.3581) ≈ 0.05.
        assert!((kolmogorov_sf(1.18 - 1e-9) - kolmogorov_sf(1.18)).abs() < 1e-9);
        assert!((kolmogorov_sf(1.358_1) - 0.05).abs() < 1e-4);
    }

    #[test]
    fn identical_samples_show_no_drift() {
        let a = numeric((0..5000).map(|i| f64::from(i % 97)));
        let b = numeric((0..5000).map(|i| f64::from((i * 7) % 97)));
        for r in [
            psi(&a, &b).unwrap(),
            ks(&a, &b).unwrap(),
            jensen_shannon(&a, &b).unwrap(),
            wasserstein(&a, &b).unwrap(),
        ] {
            assert!(!r.drifted, "{r:?}");
        }
    }

    #[test]
    fn shifted_samples_drift_on_every_numeric_test() {
        let a = numeric((0..5000).map(|i| f64::from(i % 100)));
        let b = numeric((0..5000).map(|i| f64::from(i % 100) + 40.0));
        for r in [
            psi(&a, &b).unwrap(),
            ks(&a, &b).unwrap(),
            jensen_shannon(&a, &b).unwrap(),
            wasserstein(&a, &b).unwrap(),
        ] {
            assert!(r.drifted, "{r:?}");
        }
        // Exactly known for a pure shift: W1 = 40, std of 0..99 = √((100² − 1)/12).
        let w = wasserstein(&a, &b).unwrap().statistic;
        let std = ((100.0f64 * 100.0 - 1.0) / 12.0).sqrt();
        assert!((w - 40.0 / std).abs() < 0.05 * 40.0 / std, "{w}");
    }

    #[test]
    fn exact_mode_ks_matches_hand_computation() {
        // Disjoint small samples: D = 1.
        let a = numeric([1.0, 2.0, 3.0]);
        let b = numeric([4.0, 5.0, 6.0, 7.0]);
        let r = ks(&a, &b).unwrap();
        assert_eq!(r.statistic, 1.0);
        let n_eff = 3.0 * 4.0 / 7.0;
        assert!((r.p_value.unwrap() - kolmogorov_sf(f64::sqrt(n_eff))).abs() < 1e-15);
    }

    #[test]
    fn categorical_tests() {
        let a = categorical(&[("a", 500), ("b", 300), ("c", 200)]);
        let same = categorical(&[("a", 250), ("b", 150), ("c", 100)]);
        let moved = categorical(&[("a", 100), ("b", 300), ("c", 600)]);
        let r = chi_square(&a, &same).unwrap();
        assert!(r.statistic.abs() < 1e-12 && (r.p_value.unwrap() - 1.0).abs() < 1e-12);
        assert!(!r.drifted);
        assert!(chi_square(&a, &moved).unwrap().drifted);
        assert!(jensen_shannon_categorical(&a, &moved).unwrap().drifted);
        assert!(hellinger(&a, &moved).unwrap().drifted);
        assert!(!hellinger(&a, &same).unwrap().drifted);
        // A category absent from the reference: infinite χ².
        let new = categorical(&[("a", 10), ("z", 1)]);
        let r = chi_square(&a, &new).unwrap();
        assert_eq!(r.statistic, f64::INFINITY);
        assert!(r.drifted);
    }

    #[test]
    fn distances_of_disjoint_distributions_are_one() {
        assert!((jensen_shannon_of(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((hellinger_of(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        assert_eq!(jensen_shannon_of(&[2.0, 2.0], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn default_test_follows_reference_size_and_kind() {
        let small = numeric((0..500).map(f64::from));
        let large = numeric((0..5000).map(f64::from));
        assert_eq!(
            default_numeric_test(&small, &large).unwrap().method,
            DriftMethod::KolmogorovSmirnov
        );
        assert_eq!(
            default_numeric_test(&large, &small).unwrap().method,
            DriftMethod::Wasserstein
        );
        let mut f = FeatureSummary::default();
        f.update_category("x");
        let mut g = FeatureSummary::default();
        g.update_category("y");
        let r = default_test(&f, &g).unwrap();
        assert_eq!(r.method, DriftMethod::ChiSquare);
        assert!(r.drifted);
        assert_eq!(
            default_test(&FeatureSummary::default(), &g),
            Err(DriftError::EmptyReference)
        );
        assert_eq!(
            psi(&NumericSummary::new(), &small),
            Err(DriftError::EmptyReference)
        );
        assert_eq!(
            ks(&small, &NumericSummary::new()),
            Err(DriftError::EmptyCurrent)
        );
    }
}
