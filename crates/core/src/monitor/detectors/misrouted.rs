//! Misrouted inputs (`misrouted_inputs`), a data-quality check of a model version: the share
//! of the window's inputs that reached the join on another partition than their key's murmur2
//! one. The usual cause is a producer on librdkafka's default partitioner (CRC32) next to Java
//! ones (murmur2): its records land on other partitions than the predictions of their request
//! id, and labels meant to match become orphans.
//!
//! - share = misrouted / inputs over the judged window (`window`, default the one of
//!   `accuracy_drop`), where
//!   misrouted = the version's `misrouted_predictions` + the model's `misrouted_labels`, and
//!   inputs = the version's predictions taken in (`received_predictions`; the resolved ones
//!   from joins that predate it) + the version's resolved `labels` + the labels of the model's
//!   unversioned partials. Labels carry no version: a misrouted label that never met its
//!   prediction (the common case in `join.misrouted = "account"`) sits in the partial of its
//!   model hint with an empty version, which makes no series of its own. The monitor keeps
//!   those per model and bucket, and every version of the model counts them: the check is
//!   about the model's inputs, whichever version they would have joined.
//! - DRIFT when the share is at least `max_share` (default 0.01, as the join's
//!   `misrouted_alert_share`); WARNING at half of it. Abstains below `min_inputs` inputs
//!   (default 100, as `misrouted_min_records`), and while the version has never had a
//!   misrouted input (so a well-routed deployment grows no machines).
//! - On by default, advisory: the default retrain policy lists `accuracy_drop` only; a
//!   retrain does not fix a producer's partitioner.
//!
//! Counts are by event time (a prediction's, a label's), so the verdicts do not depend on
//! when or in which batches the partials arrive.

use serde::{Deserialize, Serialize};

use super::super::window::WindowView;
use super::{Judgement, Level, MISROUTED_INPUTS};

/// Settings of the misrouted-inputs check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MisroutedInputsConfig {
    /// On by default (see the module docs).
    pub enabled: bool,
    /// Window judged, one of `windows`. Default: `accuracy_drop`'s window (`1h` by default),
    /// which every configuration has.
    pub window: Option<String>,
    /// DRIFT when at least this share of the window's inputs came misrouted; WARNING at half.
    /// Default 0.01, as the join's `misrouted_alert_share`.
    pub max_share: f64,
    /// Fewest inputs the window must hold to be judged. Default 100, as the join's
    /// `misrouted_min_records`.
    pub min_inputs: u64,
}

impl Default for MisroutedInputsConfig {
    fn default() -> Self {
        MisroutedInputsConfig {
            enabled: true,
            window: None,
            max_share: 0.01,
            min_inputs: 100,
        }
    }
}

impl MisroutedInputsConfig {
    /// Checks the values; the field and message of the first wrong one. `windows`: the
    /// configured windows, which `window` must be one of (checked only when enabled).
    pub fn validate(&self, windows: &[String]) -> Result<(), (&'static str, String)> {
        if let Some(w) = self.window.as_ref().filter(|_| self.enabled) {
            if !windows.contains(w) {
                return Err((
                    "misrouted_inputs.window",
                    format!("`{w}` is not one of the windows {windows:?}"),
                ));
            }
        }
        if !(self.max_share > 0.0 && self.max_share < 1.0) {
            return Err((
                "misrouted_inputs.max_share",
                format!("{} must be in (0, 1)", self.max_share),
            ));
        }
        if self.min_inputs < 1 {
            return Err(("misrouted_inputs.min_inputs", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// Misrouted labels and all labels of a model's unversioned partials over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnversionedLabels {
    pub misrouted: u64,
    pub labels: u64,
}

/// Judges one window of a version, with the model's unversioned labels over the same span;
/// `None` when it abstains (see the module docs). `seen_before`: the version has had a
/// misrouted input in an earlier judgement (its machine exists).
pub fn judge_misrouted_inputs(
    cfg: &MisroutedInputsConfig,
    window: &WindowView,
    unversioned: UnversionedLabels,
    seen_before: bool,
) -> Option<Judgement> {
    let c = &window.aggregate.counters;
    let predictions = if c.received_predictions > 0 {
        c.received_predictions
    } else {
        c.predictions
    };
    let misrouted = c
        .misrouted_predictions
        .saturating_add(c.misrouted_labels)
        .saturating_add(unversioned.misrouted);
    let inputs = predictions
        .saturating_add(c.labels)
        .saturating_add(unversioned.labels);
    if (misrouted == 0 && !seen_before) || inputs < cfg.min_inputs {
        return None;
    }
    // A misrouted input is also counted among the inputs once it resolves or is taken in;
    // one still queued is not yet: the share is capped at 1.
    let share = (misrouted as f64 / inputs as f64).min(1.0);
    let level = if share >= cfg.max_share {
        Level::Drift
    } else if share >= cfg.max_share / 2.0 {
        Level::Warning
    } else {
        Level::Clean
    };
    Some(Judgement {
        detector: MISROUTED_INPUTS.to_owned(),
        feature: None,
        level,
        statistic: "misrouted_share".to_owned(),
        value: share,
        threshold: cfg.max_share,
        baseline_start: 0,
        baseline_end: 0,
        baseline_samples: 0,
        window_start: window.start,
        window_end: window.end,
        window_samples: inputs,
        // A fully misrouted stream loses (nearly) every join: severity 1 at half the inputs.
        severity: (share * 2.0).clamp(0.0, 1.0),
        onset: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::metrics::Aggregate;

    fn view(received: u64, labels: u64, mis_pred: u64, mis_labels: u64) -> WindowView {
        let mut aggregate = Aggregate::default();
        aggregate.counters.received_predictions = received;
        aggregate.counters.labels = labels;
        aggregate.counters.misrouted_predictions = mis_pred;
        aggregate.counters.misrouted_labels = mis_labels;
        WindowView {
            name: "1h".into(),
            start: 0,
            end: 3_600_000,
            length_ms: 3_600_000,
            aggregate,
        }
    }

    fn level(j: Option<Judgement>) -> Option<Level> {
        j.map(|j| j.level)
    }

    #[test]
    fn fires_at_the_share_and_warns_at_half_of_it() {
        let cfg = MisroutedInputsConfig::default();
        let none = UnversionedLabels::default();
        // 1 000 predictions, 1 000 labels: 20 misrouted is 1 %.
        let j = judge_misrouted_inputs(&cfg, &view(1_000, 1_000, 20, 0), none, false);
        assert_eq!(level(j.clone()), Some(Level::Drift));
        let j = j.unwrap_or_else(|| unreachable!());
        assert!((j.value - 0.01).abs() < 1e-12);
        assert_eq!((j.window_samples, j.feature), (2_000, None));
        assert_eq!(
            level(judge_misrouted_inputs(
                &cfg,
                &view(1_000, 1_000, 10, 0),
                none,
                false
            )),
            Some(Level::Warning)
        );
        assert_eq!(
            level(judge_misrouted_inputs(
                &cfg,
                &view(1_000, 1_000, 9, 0),
                none,
                false
            )),
            Some(Level::Clean)
        );
    }

    #[test]
    fn counts_the_models_unversioned_misrouted_labels() {
        // Account mode with a CRC32 label producer: the version's partials see no misrouted
        // input, the labels that missed their predictions sit in unversioned orphans.
        let cfg = MisroutedInputsConfig::default();
        let orphans = UnversionedLabels {
            misrouted: 750,
            labels: 750,
        };
        let j = judge_misrouted_inputs(&cfg, &view(1_000, 250, 0, 0), orphans, false)
            .unwrap_or_else(|| unreachable!());
        assert_eq!(j.level, Level::Drift);
        assert!((j.value - 750.0 / 2_000.0).abs() < 1e-12);
    }

    #[test]
    fn abstains_with_too_few_inputs_or_before_any_misrouted_one() {
        let cfg = MisroutedInputsConfig::default();
        let none = UnversionedLabels::default();
        assert_eq!(
            judge_misrouted_inputs(&cfg, &view(50, 49, 50, 0), none, false),
            None
        );
        assert_eq!(
            judge_misrouted_inputs(&cfg, &view(1_000, 1_000, 0, 0), none, false),
            None
        );
        // Once a machine exists, a clean window is judged clean: the DRIFT can end.
        assert_eq!(
            level(judge_misrouted_inputs(
                &cfg,
                &view(1_000, 1_000, 0, 0),
                none,
                true
            )),
            Some(Level::Clean)
        );
    }

    #[test]
    fn validation_names_the_field() {
        let windows = vec!["1h".to_owned()];
        let mut c = MisroutedInputsConfig::default();
        assert!(c.validate(&windows).is_ok());
        c.window = Some("2h".into());
        assert_eq!(
            c.validate(&windows).map_err(|e| e.0),
            Err("misrouted_inputs.window")
        );
        c.window = Some("1h".into());
        c.max_share = 1.0;
        assert_eq!(
            c.validate(&windows).map_err(|e| e.0),
            Err("misrouted_inputs.max_share")
        );
        c.max_share = 0.01;
        c.min_inputs = 0;
        assert_eq!(
            c.validate(&windows).map_err(|e| e.0),
            Err("misrouted_inputs.min_inputs")
        );
    }
}
