//! Drift tests between a reference summary and a current one.
//!
//! Every test compares **two samples**: the reference is a sample too, not the truth, and
//! every null distribution accounts for both sizes and for the sketches' error
//! ([`calibrate`]). Every test reports a p-value, so a caller judging many features at once
//! can control false alarms across them ([`calibrate::benjamini_hochberg`]).
//!
//! | method | kind | statistic | drifts when |
//! |---|---|---|---|
//! | [`ks`] | numeric | Kolmogorov–Smirnov D | p < α (p as `scipy.stats.ks_2samp`, method "auto") |
//! | [`wasserstein`] | numeric | W₁ / σ_ref | W ≥ max(minimum effect, null (1 − α) quantile) |
//! | [`psi`] | numeric | PSI on reference deciles | same, PSI |
//! | [`jensen_shannon`] | numeric | JS distance (base 2) on reference deciles | same, JS |
//! | [`chi_square`] | categorical | Pearson χ² on the 2 × k table (`chi2_contingency`, no Yates) | p < α |
//! | [`jensen_shannon_categorical`] | categorical | JS distance on category shares | same as the distances |
//! | [`hellinger`] | categorical | Hellinger distance on category shares | same as the distances |
//!
//! A distance test's threshold is max(configured minimum effect, the statistic's (1 − α)
//! quantile under "no change" at the actual reference and current sizes): the configured
//! value (Wasserstein 0.1, JS 0.1, Hellinger 0.1, PSI 0.2) stays the smallest change worth
//! reporting, and a sample too small to tell that change from noise raises the bar instead of
//! firing on noise. Equivalently: p < α *and* statistic ≥ minimum effect.
//!
//! Per-summary error bounds and how they enter: see [`numeric`] (the distinct-value sample)
//! and [`categorical`] (exact category or bucket counts).
//!
//! # Defaults ([`default_test`])
//! Evidently's choice of test, which users know: with a reference of at most
//! [`SMALL_REFERENCE`] = 1000 values, KS (numeric) or χ² (categorical); above, normed
//! Wasserstein (numeric) or Jensen–Shannon (categorical); all at α = 0.05 and the minimum
//! effects above ([`DriftSettings::default`]).

pub mod calibrate;
pub mod categorical;
pub mod numeric;
pub mod special;

use serde::{Deserialize, Serialize};

pub use categorical::{
    category_counts, chi_square, chi_square_of, hellinger, jensen_shannon_categorical, pool_sparse,
};
pub use numeric::{
    decile_bins, jensen_shannon, ks, ks_statistic, numeric_effective_size, psi, psi_of,
    wasserstein, wasserstein_sample_error, PSI_BINS, PSI_EPSILON,
};
pub use special::{gamma_q, kolmogorov_sf, ks_2samp_p, kstwo_sf};

use super::{FeatureKind, FeatureSummary};
use crate::summary::{CategoricalSummary, NumericSummary};

/// Default minimum PSI.
pub const PSI_THRESHOLD: f64 = 0.2;
/// Default significance level.
pub const P_VALUE_THRESHOLD: f64 = 0.05;
/// Default minimum normed Wasserstein distance.
pub const WASSERSTEIN_THRESHOLD: f64 = 0.1;
/// Default minimum Jensen–Shannon distance.
pub const JENSEN_SHANNON_THRESHOLD: f64 = 0.1;
/// Default minimum Hellinger distance.
pub const HELLINGER_THRESHOLD: f64 = 0.1;
/// Largest reference (values) for which the default is a p-value test.
pub const SMALL_REFERENCE: u64 = 1000;

/// Significance level and minimum effects of the tests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftSettings {
    /// Significance level of one test. Default 0.05.
    pub alpha: f64,
    /// Smallest normed Wasserstein distance reported. Default 0.1 (Evidently's).
    pub wasserstein: f64,
    /// Smallest Jensen–Shannon distance reported. Default 0.1 (Evidently's).
    pub jensen_shannon: f64,
    /// Smallest PSI reported. Default 0.2 (the industry's "significant").
    pub psi: f64,
    /// Smallest Hellinger distance reported. Default 0.1.
    pub hellinger: f64,
    /// The default test is a p-value test up to this many reference values. Default 1000.
    pub small_reference: u64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            alpha: P_VALUE_THRESHOLD,
            wasserstein: WASSERSTEIN_THRESHOLD,
            jensen_shannon: JENSEN_SHANNON_THRESHOLD,
            psi: PSI_THRESHOLD,
            hellinger: HELLINGER_THRESHOLD,
            small_reference: SMALL_REFERENCE,
        }
    }
}

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

    /// Whether the verdict is a p-value test (KS, χ²) rather than a distance with a minimum.
    pub fn is_p_value_test(self) -> bool {
        matches!(
            self,
            DriftMethod::KolmogorovSmirnov | DriftMethod::ChiSquare
        )
    }
}

/// Outcome of one test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftResult {
    pub method: DriftMethod,
    /// The statistic (D, χ², PSI, a distance).
    pub statistic: f64,
    /// The p-value under "no change" (every test; `Option` for compatibility, always set).
    pub p_value: Option<f64>,
    /// p-value tests: the significance level α. Distances: the statistic's threshold,
    /// max(minimum effect, null (1 − α) quantile at these sample sizes).
    pub threshold: f64,
    /// Distances: the configured minimum effect; `None` for p-value tests.
    pub min_effect: Option<f64>,
    /// The significance level used.
    pub alpha: f64,
    /// p < α, and for distances also statistic ≥ minimum effect.
    pub drifted: bool,
}

impl DriftResult {
    /// The verdict at another significance level (for a level adjusted across features):
    /// p < `alpha`, and for distances also statistic ≥ minimum effect.
    pub fn drifted_at(&self, alpha: f64) -> bool {
        let p = self.p_value.unwrap_or(1.0);
        p < alpha && self.min_effect.is_none_or(|e| self.statistic >= e)
    }
}

/// Why a test could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DriftError {
    #[error("the reference summary has no values")]
    EmptyReference,
    #[error("the current summary has no values")]
    EmptyCurrent,
}

/// A distance's result: `p` and null quantile `q` at α, with minimum effect `min`.
pub(crate) fn distance_result(
    method: DriftMethod,
    statistic: f64,
    p: f64,
    q: f64,
    min: f64,
    alpha: f64,
) -> DriftResult {
    let threshold = if q.is_nan() { min } else { q.max(min) };
    let r = DriftResult {
        method,
        statistic,
        p_value: Some(p),
        threshold,
        min_effect: Some(min),
        alpha,
        drifted: false,
    };
    DriftResult {
        drifted: r.drifted_at(alpha),
        ..r
    }
}

pub(crate) fn p_result(method: DriftMethod, statistic: f64, p: f64, alpha: f64) -> DriftResult {
    DriftResult {
        method,
        statistic,
        p_value: Some(p),
        threshold: alpha,
        min_effect: None,
        alpha,
        drifted: p < alpha,
    }
}

// ---------------------------------------------------------------------------------------
// Distances on proportion vectors

fn normalize(v: &[f64]) -> Vec<f64> {
    let total: f64 = v.iter().sum();
    if total > 0.0 {
        v.iter().map(|x| x / total).collect()
    } else {
        v.to_vec()
    }
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

/// The default numeric test: KS when the reference has at most `settings.small_reference`
/// values, else normed Wasserstein.
pub fn default_numeric_test_with(
    reference: &NumericSummary,
    current: &NumericSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    if reference.count() <= settings.small_reference {
        ks(reference, current, settings)
    } else {
        wasserstein(reference, current, settings)
    }
}

/// The default categorical test: χ² when the reference has at most
/// `settings.small_reference` values, else Jensen–Shannon.
pub fn default_categorical_test_with(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    if reference.count() <= settings.small_reference {
        chi_square(reference, current, settings)
    } else {
        jensen_shannon_categorical(reference, current, settings)
    }
}

/// [`default_numeric_test_with`] at the default settings.
pub fn default_numeric_test(
    reference: &NumericSummary,
    current: &NumericSummary,
) -> Result<DriftResult, DriftError> {
    default_numeric_test_with(reference, current, &DriftSettings::default())
}

/// [`default_categorical_test_with`] at the default settings.
pub fn default_categorical_test(
    reference: &CategoricalSummary,
    current: &CategoricalSummary,
) -> Result<DriftResult, DriftError> {
    default_categorical_test_with(reference, current, &DriftSettings::default())
}

/// The default test of a feature at `settings`, by the reference's majority kind. The current
/// window's values of that same kind are compared (values of the other kind show up as
/// [`FeatureSummary::type_mismatches`]).
pub fn default_test_with(
    reference: &FeatureSummary,
    current: &FeatureSummary,
    settings: &DriftSettings,
) -> Result<DriftResult, DriftError> {
    match reference.kind() {
        FeatureKind::Unknown => Err(DriftError::EmptyReference),
        FeatureKind::Numeric => {
            let r = reference.numeric().ok_or(DriftError::EmptyReference)?;
            let c = current.numeric().ok_or(DriftError::EmptyCurrent)?;
            default_numeric_test_with(r, c, settings)
        }
        FeatureKind::Categorical => {
            let r = reference.categorical().ok_or(DriftError::EmptyReference)?;
            let c = current.categorical().ok_or(DriftError::EmptyCurrent)?;
            default_categorical_test_with(r, c, settings)
        }
    }
}

/// The monitor's default test of a feature at default settings (see the module docs).
pub fn default_test(
    reference: &FeatureSummary,
    current: &FeatureSummary,
) -> Result<DriftResult, DriftError> {
    default_test_with(reference, current, &DriftSettings::default())
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
        let mut g = FeatureSummary::default();
        for _ in 0..20 {
            f.update_category("x");
            g.update_category("y");
        }
        let r = default_test(&f, &g).unwrap();
        assert_eq!(r.method, DriftMethod::ChiSquare);
        assert!(r.drifted, "{r:?}");
        assert_eq!(
            default_test(&FeatureSummary::default(), &g),
            Err(DriftError::EmptyReference)
        );
        let set = DriftSettings::default();
        assert_eq!(
            psi(&NumericSummary::new(), &small, &set),
            Err(DriftError::EmptyReference)
        );
        assert_eq!(
            ks(&small, &NumericSummary::new(), &set),
            Err(DriftError::EmptyCurrent)
        );
    }

    #[test]
    fn same_inputs_same_verdict_bit_for_bit() {
        let a = numeric((0..3000).map(|i| f64::from((i * 37) % 1001)));
        let b = numeric((0..2000).map(|i| f64::from((i * 91) % 997)));
        let x = wasserstein(&a, &b, &DriftSettings::default()).unwrap();
        let y = wasserstein(&a.clone(), &b.clone(), &DriftSettings::default()).unwrap();
        assert_eq!(x.statistic.to_bits(), y.statistic.to_bits());
        assert_eq!(x.threshold.to_bits(), y.threshold.to_bits());
        assert_eq!(x.p_value.unwrap().to_bits(), y.p_value.unwrap().to_bits());
    }
}
