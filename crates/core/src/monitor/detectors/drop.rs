//! The windowed drop test against the baseline (`accuracy_drop`; see the module docs of
//! [`detectors`](super)).

use serde::{Deserialize, Serialize};

use super::super::baseline::Baseline;
use super::super::metrics::{Aggregate, Metrics};
use super::super::window::WindowView;
use super::{
    normal_isf, normal_sf, severity, two_proportion_z, Judgement, Level, ACCURACY_DROP,
    FULL_SEVERITY_DROP,
};

/// One-sided Welch z-test of "mean absolute error grew", from regression sums.
fn abs_error_z(base: &Aggregate, cur: &Aggregate) -> Option<(f64, f64)> {
    let moments = |a: &Aggregate| {
        let n = a.regression.count as f64;
        let m = a.regression.abs_error_sum / n;
        let v = (a.regression.squared_error_sum / n - m * m).max(0.0);
        (n, m, v)
    };
    if base.regression.count < 2 || cur.regression.count < 2 {
        return None;
    }
    let (n0, m0, v0) = moments(base);
    let (n1, m1, v1) = moments(cur);
    let se = (v0 / n0 + v1 / n1).sqrt();
    if se.is_nan() || se <= 0.0 {
        return None;
    }
    let z = (m1 - m0) / se;
    Some((z, normal_sf(z)))
}

/// Settings of the windowed drop test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccuracyDropConfig {
    pub enabled: bool,
    /// Window judged (and whose labeled count and metrics the retrain policy uses). Default `1h`: at tens of labels a minute it holds thousands of outcomes,
    /// so a 5-point drop is significant, while reacting within the hour.
    pub window: String,
    /// DRIFT needs a p-value at most this. Default 0.01: evaluations repeat, so the per-test
    /// false-alarm rate must be small (and the hysteresis asks for it twice in a row).
    pub p_drift: f64,
    /// WARNING needs a p-value at most this. Default 0.05.
    pub p_warning: f64,
    /// DRIFT needs accuracy to drop by at least this (absolute). Default 0.05: five points is
    /// a drop people act on; less is usually seasonality. WARNING needs half.
    pub min_drop: f64,
    /// Regressors: DRIFT needs RMSE to grow by at least this fraction. Default 0.2.
    pub min_relative_increase: f64,
    /// A window is judged only with at least this many labeled outcomes. Default 200: the
    /// normal approximation is good and a 5-point drop from 90 % can reach p ≤ 0.01.
    pub min_labeled: u64,
    /// … and at least this label coverage (matched / the window's predictions, pending ones
    /// included). Default 0.5: with fewer labels the labeled part may not represent the traffic.
    pub min_coverage: f64,
    /// One-sided confidence of the baseline's bound the floors are measured from. Default 0.95:
    /// 1.6 standard errors of the baseline (≈ 1.6 points for 1 000 outcomes at 90 %, 0.5 for
    /// 10 000).
    pub baseline_confidence: f64,
    /// Once in WARNING or DRIFT, a window whose drop is at least this share of the warning
    /// floor (`min_drop / 2`) keeps the WARNING level. Default 0.5.
    pub hold_ratio: f64,
}

impl Default for AccuracyDropConfig {
    fn default() -> Self {
        AccuracyDropConfig {
            enabled: true,
            window: "1h".to_owned(),
            p_drift: 0.01,
            p_warning: 0.05,
            min_drop: 0.05,
            min_relative_increase: 0.2,
            min_labeled: 200,
            min_coverage: 0.5,
            baseline_confidence: 0.95,
            hold_ratio: 0.5,
        }
    }
}

/// Judges one window against the baseline; `None` when it abstains (no ready baseline, too
/// few labels, low coverage, or a model kind the baseline does not share). `held`: the
/// detector's machine is in WARNING or DRIFT (see the module docs).
pub fn judge_accuracy_drop(
    cfg: &AccuracyDropConfig,
    baseline: &Baseline,
    window: &WindowView,
    held: bool,
) -> Option<Judgement> {
    if !baseline.is_ready() {
        return None;
    }
    let cur = &window.aggregate;
    let base = baseline.aggregate();
    let labeled = cur.labeled();
    if labeled < cfg.min_labeled {
        return None;
    }
    let coverage = Metrics::compute(cur, window.length_ms).label_coverage?;
    if coverage < cfg.min_coverage {
        return None;
    }
    let z_b = normal_isf(1.0 - cfg.baseline_confidence).max(0.0);
    let (statistic, value, threshold, drop_for_severity, significant_p, floor_ratio) =
        if cur.is_regressor() {
            if !base.is_regressor() {
                return None;
            }
            let rmse =
                |a: &Aggregate| (a.regression.squared_error_sum / a.regression.count as f64).sqrt();
            let (r0, r1) = (rmse(base), rmse(cur));
            let (_, p) = abs_error_z(base, cur)?;
            // The baseline's error level at its upper bound: RMSE scaled by the bound on the
            // mean absolute error, the one whose standard error the sums give.
            let n0 = base.regression.count as f64;
            let m0 = base.regression.abs_error_sum / n0;
            let v0 = (base.regression.squared_error_sum / n0 - m0 * m0).max(0.0);
            let widen = if m0 > 0.0 {
                1.0 + z_b * (v0 / n0).sqrt() / m0
            } else {
                1.0
            };
            let r0_bound = r0 * widen;
            let rel = if r0_bound > 0.0 {
                r1 / r0_bound - 1.0
            } else {
                f64::INFINITY
            };
            let floor_ratio = rel / cfg.min_relative_increase;
            // A doubling of RMSE maps to the severity of a full-severity accuracy drop.
            (
                "rmse",
                r1,
                r0_bound * (1.0 + cfg.min_relative_increase),
                rel * FULL_SEVERITY_DROP,
                p,
                floor_ratio,
            )
        } else {
            let (n0, n1) = (base.classified(), cur.classified());
            let (c0, c1) = (base.correct(), cur.correct());
            let (_, p) = two_proportion_z(c0, n0, c1, n1)?;
            let a0 = c0 as f64 / n0 as f64;
            let a1 = c1 as f64 / n1 as f64;
            let a0_bound = a0 - z_b * (a0 * (1.0 - a0) / n0 as f64).sqrt();
            let drop = a0_bound - a1;
            (
                "accuracy",
                a1,
                a0_bound - cfg.min_drop,
                drop,
                p,
                drop / cfg.min_drop,
            )
        };
    let level = if significant_p <= cfg.p_drift && floor_ratio >= 1.0 {
        Level::Drift
    } else if significant_p <= cfg.p_warning && floor_ratio >= 0.5
        || held && floor_ratio >= 0.5 * cfg.hold_ratio
    {
        Level::Warning
    } else {
        Level::Clean
    };
    let (baseline_start, baseline_end) = baseline.bounds();
    Some(Judgement {
        detector: ACCURACY_DROP.to_owned(),
        feature: None,
        level,
        statistic: statistic.to_owned(),
        value,
        threshold,
        baseline_start,
        baseline_end,
        baseline_samples: baseline.labeled(),
        window_start: window.start,
        window_end: window.end,
        window_samples: labeled,
        severity: severity(drop_for_severity),
        onset: None,
    })
}
