//! The estimated drop (`estimated_drop`): the window's accuracy *estimated* from the scores
//! of its predictions still without a label (see [`estimate`](super::super::estimate))
//! against the baseline's realized accuracy. Labels often come days after their predictions;
//! this detector sees a drop that lowers the model's confidence while `accuracy_drop` still
//! waits for the labels.
//!
//! - DRIFT: the estimate lies more than `max_drop` below the baseline's accuracy; WARNING:
//!   more than half of it. No significance test: under calibration the estimate is an
//!   expectation (the mean of the scores), whose spread over windows of a few hundred
//!   predictions is a fraction of a point; the floor is what matters.
//! - Abstains without a ready baseline with classification outcomes, with fewer than
//!   `min_predictions` unlabeled scored predictions in the window, or when the baseline's own
//!   scored outcomes show the scores miscalibrated (the calibration check of
//!   [`estimate`](super::super::estimate)): an estimate from such scores is off by as much
//!   as their miscalibration, and the worker warns about it.
//! - Off by default: it is only as good as the calibration, and only classifiers that send
//!   the score of their predicted class feed it.

use serde::{Deserialize, Serialize};

use super::super::baseline::Baseline;
use super::super::estimate;
use super::super::metrics::Metrics;
use super::super::window::WindowView;
use super::{severity, Judgement, Level, ESTIMATED_DROP};

/// Settings of the estimated drop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EstimatedDropConfig {
    /// Off by default (see the module docs).
    pub enabled: bool,
    /// Window judged, one of `windows`. Default `1h`, as `accuracy_drop`'s.
    pub window: String,
    /// DRIFT when the estimate is more than this (absolute, 0.05 = five points) below the
    /// baseline's accuracy; WARNING at half. Default 0.05, as `accuracy_drop.min_drop`.
    pub max_drop: f64,
    /// Fewest unlabeled scored predictions the window's estimate must cover to be judged.
    /// Default 200: the mean of 200 scores spread by 0.15 moves by about a point.
    pub min_predictions: u64,
}

impl Default for EstimatedDropConfig {
    fn default() -> Self {
        EstimatedDropConfig {
            enabled: false,
            window: "1h".to_owned(),
            max_drop: 0.05,
            min_predictions: 200,
        }
    }
}

impl EstimatedDropConfig {
    /// Whether the window of `m` shows an estimated drop of more than `max_drop` against
    /// `baseline_accuracy`.
    pub fn fires(&self, baseline_accuracy: f64, m: &Metrics) -> bool {
        self.drop(baseline_accuracy, m)
            .is_some_and(|d| d > self.max_drop)
    }

    /// The estimated drop of `m` below `baseline_accuracy`; `None` when the estimate covers
    /// fewer than `min_predictions`.
    fn drop(&self, baseline_accuracy: f64, m: &Metrics) -> Option<f64> {
        let est = m.estimated_accuracy?;
        (m.unlabeled_scored >= self.min_predictions).then_some(baseline_accuracy - est)
    }

    /// Checks the values; the field and message of the first wrong one. `windows`: the
    /// configured windows, which `window` must be one of (checked only when enabled).
    pub fn validate(&self, windows: &[String]) -> Result<(), (&'static str, String)> {
        if self.enabled && !windows.contains(&self.window) {
            return Err((
                "estimated_drop.window",
                format!("`{}` is not one of the windows {windows:?}", self.window),
            ));
        }
        if !(self.max_drop > 0.0 && self.max_drop <= 1.0) {
            return Err((
                "estimated_drop.max_drop",
                format!("{} must be in (0, 1]", self.max_drop),
            ));
        }
        if self.min_predictions < 1 {
            return Err((
                "estimated_drop.min_predictions",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Judges one window's estimate against the baseline; `None` when it abstains (see the
/// module docs).
pub fn judge_estimated_drop(
    cfg: &EstimatedDropConfig,
    baseline: &Baseline,
    window: &WindowView,
) -> Option<Judgement> {
    if !baseline.is_ready() {
        return None;
    }
    let base = baseline.aggregate();
    let n0 = base.classified();
    if n0 == 0 || estimate::scores_calibrated(base) == Some(false) {
        return None;
    }
    let a0 = base.correct() as f64 / n0 as f64;
    let m = Metrics::compute(&window.aggregate, window.length_ms);
    let drop = cfg.drop(a0, &m)?;
    let est = m.estimated_accuracy?;
    let level = if drop > cfg.max_drop {
        Level::Drift
    } else if drop > cfg.max_drop / 2.0 {
        Level::Warning
    } else {
        Level::Clean
    };
    let (baseline_start, baseline_end) = baseline.bounds();
    Some(Judgement {
        detector: ESTIMATED_DROP.to_owned(),
        feature: None,
        level,
        statistic: "estimated_accuracy".to_owned(),
        value: est,
        threshold: a0 - cfg.max_drop,
        baseline_start,
        baseline_end,
        baseline_samples: n0,
        window_start: window.start,
        window_end: window.end,
        window_samples: m.unlabeled_scored,
        severity: severity(drop),
        onset: None,
    })
}
