//! The calibration warning: the accuracy estimate of unlabeled predictions (and the
//! `estimated_drop` detector) assumes calibrated scores, and the core reports, per window,
//! whether the scored labeled outcomes bear that out (`scores_calibrated`, 1 or 0). The core
//! only reports; saying so in the log is the shell's job, once per model version for the life
//! of the process: the flag comes with every metrics snapshot, and a warning per snapshot
//! would bury the log.

use std::collections::BTreeSet;

use driftwatch_core::ModelMetrics;
use tracing::warn;

/// The model versions already warned about.
#[derive(Debug, Default)]
pub(crate) struct CalibrationWarnings {
    warned: BTreeSet<(String, String)>,
}

impl CalibrationWarnings {
    /// The snapshots of versions newly found miscalibrated (one per version, its first
    /// such window), remembered so they are not reported again.
    pub(crate) fn newly_miscalibrated<'a>(
        &mut self,
        metrics: &'a [ModelMetrics],
    ) -> Vec<&'a ModelMetrics> {
        metrics
            .iter()
            .filter(|m| {
                m.metrics
                    .iter()
                    .any(|(n, v)| n == "scores_calibrated" && *v == 0.0)
            })
            .filter(|m| {
                self.warned
                    .insert((m.model_id.clone(), m.model_version.clone()))
            })
            .collect()
    }

    /// Logs one warning per version newly found miscalibrated in `metrics`.
    pub(crate) fn warn(&mut self, metrics: &[ModelMetrics]) {
        for m in self.newly_miscalibrated(metrics) {
            let value = |name: &str| {
                m.metrics
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(f64::NAN, |(_, v)| *v)
            };
            warn!(
                model = %m.model_id, version = %m.model_version, window = %m.window,
                mean_score = value("mean_score"), accuracy = value("accuracy"),
                "scores are not calibrated: on labeled outcomes their mean is off the accuracy, so estimated_accuracy (and estimated_drop) are off by as much"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(model: &str, version: &str, window: &str, calibrated: Option<f64>) -> ModelMetrics {
        let mut metrics = vec![("accuracy".to_owned(), 0.8)];
        if let Some(c) = calibrated {
            metrics.push(("scores_calibrated".to_owned(), c));
        }
        ModelMetrics {
            model_id: model.into(),
            model_version: version.into(),
            window: window.into(),
            window_start: 0,
            window_end: 3_600_000,
            predictions: 100,
            labeled: 100,
            label_coverage: 1.0,
            metrics,
            emitted_at: 3_600_000,
            estimated_decay_per_day: None,
            suggested_retrain_interval_ms: None,
        }
    }

    #[test]
    fn a_miscalibrated_version_is_reported_once_not_per_snapshot_or_window() {
        let mut w = CalibrationWarnings::default();
        let first = [
            snapshot("churn", "v1", "15m", Some(1.0)),
            snapshot("churn", "v1", "1h", Some(0.0)),
            snapshot("churn", "v1", "24h", Some(0.0)),
            snapshot("churn", "v2", "1h", None),
            snapshot("fraud", "v1", "1h", Some(0.0)),
        ];
        let got: Vec<(&str, &str, &str)> = w
            .newly_miscalibrated(&first)
            .iter()
            .map(|m| {
                (
                    m.model_id.as_str(),
                    m.model_version.as_str(),
                    m.window.as_str(),
                )
            })
            .collect();
        assert_eq!(got, vec![("churn", "v1", "1h"), ("fraud", "v1", "1h")]);
        // The next snapshots: nothing new, until another version goes off.
        assert!(w.newly_miscalibrated(&first).is_empty());
        let later = [snapshot("churn", "v2", "1h", Some(0.0))];
        assert_eq!(w.newly_miscalibrated(&later).len(), 1);
        assert!(w.newly_miscalibrated(&later).is_empty());
    }
}
