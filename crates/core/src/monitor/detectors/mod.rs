//! Performance-decay detectors and the [`Judgement`] every detector hands to the state machine.
//!
//! # Windowed drop vs the baseline (`accuracy_drop`)
//! Classifiers: a one-sided two-proportion z-test of "window accuracy < baseline accuracy"
//! (pooled proportion), and an absolute floor on the drop. Regressors: RMSE against the
//! baseline's with a relative floor; the significance comes from a one-sided Welch z-test on the
//! mean absolute error, the only error whose variance the partials' sums give
//! (`Var|e| = E[e²] − (E|e|)²`). DRIFT needs both significance (`p ≤ p_drift`) and the floor;
//! WARNING needs `p ≤ p_warning` and half the floor. The floor keeps a very busy model from
//! alarming on a drop that is significant but too small to matter; the test keeps a quiet model
//! from alarming on noise. A window is judged only with enough labeled outcomes and label
//! coverage; otherwise the detector abstains (the state machine does not move).
//!
//! # Stream detectors (`adwin`, `page_hinkley`, `ddm`)
//! They watch the stream of *matured* bucket error rates (1 − accuracy), each bucket fed once
//! when it matures, so labels that arrive within the maturity delay are not missed. DDM and
//! Page-Hinkley take the bucket's labeled count as weight (`update_weighted`). ADWIN has no
//! weighted entry point and its bound assumes values in `[0, 1]`, so a bucket fed as one
//! observation (its rate) would need dozens of buckets before any cut is possible; instead a
//! bucket of `n` outcomes with `e` errors is fed as `min(n, max_updates_per_bucket)` 0/1
//! observations with the errors spread evenly (the bucket's error rate, up to rounding when
//! capped). Only increases of the error rate count: an ADWIN cut after which the mean error
//! went down, a model improving, is not drift.
//!
//! A detector fires once and restarts, but the state machine wants a verdict per evaluation, so
//! a firing is *held* for `hold_ms` of event time (matured bucket time): the verdict is DRIFT
//! while the last firing is more recent than that. An evaluation with no newly matured bucket
//! abstains: there is nothing new to judge, and repeating the last verdict would let the
//! evaluation rate, not the data, satisfy the hysteresis.
//!
//! # Estimated drop (`estimated_drop`, off by default)
//! The window's accuracy estimated from the scores of its predictions still without a label
//! (CBPE, see [`estimate`](super::estimate)) against the baseline's realized accuracy, with an
//! absolute floor: a drop that lowers the model's confidence shows before the labels come.
//! Judged window end by window end in event time, like the drop test.
//!
//! # Misrouted inputs (`misrouted_inputs`, data quality)
//! The share of a version's window of inputs (its predictions and labels, and the model's
//! labels without a version) that reached the join off their key's murmur2 partition. See
//! the `misrouted` module.
//!
//! # Extension point
//! Any other detector (data drift over feature sketches, say) produces a [`Judgement`] with its
//! own detector name and feature and submits it through
//! [`Monitor::submit`](super::Monitor::submit); it then goes through the same state machine,
//! event ids and retrain policy.

use serde::{Deserialize, Serialize};

use crate::TimestampMs;

mod drop;
mod estimated;
mod misrouted;
mod stream;
#[cfg(test)]
mod tests;

pub use drop::{judge_accuracy_drop, AccuracyDropConfig};
pub use estimated::{judge_estimated_drop, EstimatedDropConfig};
pub use misrouted::{judge_misrouted_inputs, MisroutedInputsConfig, UnversionedLabels};
pub use stream::{
    default_adwin, default_ddm, default_eddm, default_page_hinkley, StreamDetectorConfig,
    StreamWatch,
};

/// Detector names as they appear in events and configuration.
pub const ACCURACY_DROP: &str = "accuracy_drop";
pub const ADWIN: &str = "adwin";
pub const PAGE_HINKLEY: &str = "page_hinkley";
pub const DDM: &str = "ddm";
/// Name of the EDDM stream detector.
pub const EDDM: &str = "eddm";
/// Name of the drop of the accuracy estimated from scores, before labels.
pub const ESTIMATED_DROP: &str = "estimated_drop";
/// Name of the data-quality check of inputs read off their key's murmur2 partition.
pub const MISROUTED_INPUTS: &str = "misrouted_inputs";

/// An accuracy drop of this many points (or a doubling of RMSE) is severity 1.
pub const FULL_SEVERITY_DROP: f64 = 0.20;

/// One detector's verdict at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Clean,
    Warning,
    Drift,
}

/// A verdict with what an event reports about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Judgement {
    pub detector: String,
    /// `None` for model-level detectors.
    pub feature: Option<String>,
    pub level: Level,
    pub statistic: String,
    pub value: f64,
    pub threshold: f64,
    pub baseline_start: TimestampMs,
    pub baseline_end: TimestampMs,
    pub baseline_samples: u64,
    pub window_start: TimestampMs,
    pub window_end: TimestampMs,
    pub window_samples: u64,
    /// 0 (negligible) to 1 (severe).
    pub severity: f64,
    /// Estimated start of the change when the detector knows better than "the start of the
    /// first drifting window" (ADWIN's cut point).
    pub onset: Option<TimestampMs>,
}

/// Severity from a drop in accuracy points (or a relative RMSE increase scaled to the same
/// range): linear, 0 at no drop, 1 at [`FULL_SEVERITY_DROP`] and beyond.
pub fn severity(drop: f64) -> f64 {
    if drop.is_finite() {
        (drop / FULL_SEVERITY_DROP).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// `P(Z ≥ z)` for a standard normal `Z`.
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function; a Chebyshev fit with fractional error below 1.2e-7 everywhere
/// (Numerical Recipes' `erfcc`), plenty for p-values compared with thresholds like 0.01.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// One-sided two-proportion z-test of `p_current < p_baseline` with the pooled proportion.
/// Returns `(z, p_value)`; `None` when a sample is empty or the pooled variance is zero.
pub fn two_proportion_z(
    baseline_successes: u64,
    baseline_n: u64,
    current_successes: u64,
    current_n: u64,
) -> Option<(f64, f64)> {
    if baseline_n == 0 || current_n == 0 {
        return None;
    }
    let (n0, n1) = (baseline_n as f64, current_n as f64);
    let p0 = baseline_successes as f64 / n0;
    let p1 = current_successes as f64 / n1;
    let pooled = (baseline_successes as f64 + current_successes as f64) / (n0 + n1);
    let se = (pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return None;
    }
    let z = (p0 - p1) / se;
    Some((z, normal_sf(z)))
}

/// The z with P(Z ≥ z) = `p` (0 < p < 1), by bisection on [`normal_sf`].
pub fn normal_isf(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let (mut lo, mut hi) = (-40.0, 40.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if normal_sf(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}
