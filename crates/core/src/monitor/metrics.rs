//! Model metrics from merged partials.
//!
//! A window is the sum of its buckets' partials. Partials of different buckets have different
//! keys, so instead of re-keying `ModelPartial`s the window folds them into an [`Aggregate`]
//! (the same sums, without a bucket key), and [`Metrics`] are derived from that.
//!
//! Definitions (every mean is over the outcomes that carry what it needs):
//! - `accuracy` = Σ diagonal cells / Σ cells (classification outcomes with both classes known);
//! - per class `c`: precision = TP/(TP+FP), recall = TP/(TP+FN), F1 their harmonic mean; a class
//!   with no prediction (or no actual) has precision (or recall) 0, as in scikit-learn's
//!   `zero_division=0`; macro averages are over classes seen as predicted or actual;
//! - `log_loss`, `brier` = sums / scored outcomes;
//! - `mae`, `rmse`, `bias` (mean of predicted − actual) over regression outcomes, `mape` over
//!   those whose actual is not zero;
//! - `predictions` = the window's predictions, resolved or still waiting for a label: the
//!   join's `received_predictions` (distinct predictions, counted when taken in). Partials of
//!   a join that predates that counter carry 0 there; a window without any is counted as
//!   before it, by the resolved predictions (`counters.predictions`);
//! - `label_coverage` = matched / `predictions`: a window whose labels are still on their
//!   way shows low coverage rather than the coverage of the few resolved predictions;
//! - `prediction_rate` = `predictions` per second of window length;
//! - `estimated_accuracy`, `blended_accuracy`, `mean_score`, `scores_calibrated`: from the
//!   scores of a classifier's predictions, before their labels (see [`super::estimate`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::estimate;
use crate::{ClassScores, JoinCounters, ModelPartial, RegressionSums};

/// The sums of any number of partials of one model version, whatever their buckets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub counters: JoinCounters,
    /// predicted → actual → count. Nested so that adding a cell that already exists looks it up
    /// by `&str` and allocates nothing.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
    pub regression: RegressionSums,
    pub log_loss_sum: f64,
    pub brier_sum: f64,
    pub scored: u64,
    pub label_delay_sum_ms: i64,
    #[serde(default)]
    pub received_scored: u64,
    #[serde(default)]
    pub received_score_sum: f64,
    #[serde(default)]
    pub scored_score_sum: f64,
    #[serde(default)]
    pub scored_correct: u64,
    /// The score sums per predicted class (see [`ClassScores`]).
    #[serde(default)]
    pub class_scores: BTreeMap<String, ClassScores>,
}

impl Aggregate {
    /// The aggregate of one partial.
    pub fn from_partial(p: &ModelPartial) -> Self {
        let mut a = Self::default();
        a.add(p);
        a
    }

    /// Adds one partial.
    pub fn add(&mut self, p: &ModelPartial) {
        self.counters = self.counters.merged(&p.counters);
        for cell in &p.confusion {
            self.add_cell(&cell.predicted, &cell.actual, cell.count);
        }
        self.regression = self.regression.merged(&p.regression);
        self.log_loss_sum += p.log_loss_sum;
        self.brier_sum += p.brier_sum;
        self.scored = self.scored.saturating_add(p.scored);
        self.label_delay_sum_ms = self.label_delay_sum_ms.saturating_add(p.label_delay_sum_ms);
        self.received_scored = self.received_scored.saturating_add(p.received_scored);
        self.received_score_sum += p.received_score_sum;
        self.scored_score_sum += p.scored_score_sum;
        self.scored_correct = self.scored_correct.saturating_add(p.scored_correct);
        self.add_class_scores(&p.class_scores);
    }

    fn add_class_scores<'a>(&mut self, scores: impl IntoIterator<Item = &'a ClassScores>) {
        for c in scores {
            match self.class_scores.get_mut(&c.class) {
                Some(mine) => mine.add(c),
                None => {
                    self.class_scores.insert(c.class.clone(), c.clone());
                }
            }
        }
    }

    /// Adds another aggregate.
    pub fn add_aggregate(&mut self, o: &Aggregate) {
        self.counters = self.counters.merged(&o.counters);
        for (p, row) in &o.confusion {
            for (a, &n) in row {
                self.add_cell(p, a, n);
            }
        }
        self.regression = self.regression.merged(&o.regression);
        self.log_loss_sum += o.log_loss_sum;
        self.brier_sum += o.brier_sum;
        self.scored = self.scored.saturating_add(o.scored);
        self.label_delay_sum_ms = self.label_delay_sum_ms.saturating_add(o.label_delay_sum_ms);
        self.received_scored = self.received_scored.saturating_add(o.received_scored);
        self.received_score_sum += o.received_score_sum;
        self.scored_score_sum += o.scored_score_sum;
        self.scored_correct = self.scored_correct.saturating_add(o.scored_correct);
        self.add_class_scores(o.class_scores.values());
    }

    fn add_cell(&mut self, predicted: &str, actual: &str, n: u64) {
        let row = match self.confusion.get_mut(predicted) {
            Some(row) => row,
            None => self.confusion.entry(predicted.to_owned()).or_default(),
        };
        match row.get_mut(actual) {
            Some(v) => *v = v.saturating_add(n),
            None => {
                row.insert(actual.to_owned(), n);
            }
        }
    }

    /// Confusion cells as (predicted, actual, count), sorted.
    pub fn cells(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.confusion
            .iter()
            .flat_map(|(p, row)| row.iter().map(move |(a, &n)| (p.as_str(), a.as_str(), n)))
    }

    /// Classification outcomes with both classes known.
    pub fn classified(&self) -> u64 {
        self.cells().map(|(_, _, n)| n).sum()
    }

    /// Classification outcomes whose prediction was right.
    pub fn correct(&self) -> u64 {
        self.cells()
            .filter(|(p, a, _)| p == a)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// Labeled outcomes the performance metrics are computed on (classification or
    /// regression, whichever the model is).
    pub fn labeled(&self) -> u64 {
        self.classified().saturating_add(self.regression.count)
    }

    /// Whether the model looks like a regressor: it has regression outcomes and no
    /// classification ones.
    pub fn is_regressor(&self) -> bool {
        self.regression.count > 0 && self.confusion.is_empty()
    }
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Outcomes whose actual class is this one.
    pub support: u64,
}

/// Metrics of one aggregate. `None` when the metric has no outcome to be computed on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Predictions of the window, labeled, expired or pending (see the module docs).
    pub predictions: u64,
    /// Predictions matched with a label (the numerator of `label_coverage`).
    pub matched: u64,
    /// Matched outcomes the performance metrics are computed on (both sides usable).
    pub labeled: u64,
    pub label_coverage: Option<f64>,
    pub prediction_rate: Option<f64>,
    pub accuracy: Option<f64>,
    pub per_class: Vec<ClassMetrics>,
    pub precision_macro: Option<f64>,
    pub recall_macro: Option<f64>,
    pub f1_macro: Option<f64>,
    pub log_loss: Option<f64>,
    pub brier: Option<f64>,
    pub mae: Option<f64>,
    pub rmse: Option<f64>,
    pub bias: Option<f64>,
    pub mape: Option<f64>,
    pub mean_label_delay_ms: Option<f64>,
    /// Scored predictions without a label (yet, or ever): what `estimated_accuracy` is over.
    pub unlabeled_scored: u64,
    /// Expected accuracy of the scored predictions still without a label: their mean score
    /// (see [`estimate`](super::estimate)).
    pub estimated_accuracy: Option<f64>,
    /// Expected F1 of each class over the same predictions, for a binary classifier (class,
    /// F1), sorted by class.
    pub estimated_f1: Vec<(String, f64)>,
    /// Accuracy of all scored predictions of the window: realized where labeled, estimated
    /// where not.
    pub blended_accuracy: Option<f64>,
    /// Mean score of the scored labeled outcomes, to set beside their accuracy.
    pub mean_score: Option<f64>,
    /// The calibration check on the scored labeled outcomes; `None` with too few of them.
    pub scores_calibrated: Option<bool>,
}

fn ratio(num: f64, den: u64) -> Option<f64> {
    (den > 0).then(|| num / den as f64)
}

impl Metrics {
    /// Metrics of one (merged) partial; `window_ms` is the time it spans (its bucket width for
    /// a single partial), used for the prediction rate.
    pub fn from_partial(p: &ModelPartial, window_ms: i64) -> Self {
        Self::compute(&Aggregate::from_partial(p), window_ms)
    }

    /// Metrics of an aggregate spanning `window_ms` milliseconds.
    pub fn compute(a: &Aggregate, window_ms: i64) -> Self {
        let c = &a.counters;
        let predictions = if c.received_predictions > 0 {
            c.received_predictions
        } else {
            c.predictions
        };
        let matched = c.matched;
        let classified = a.classified();
        let correct = a.correct();

        // Per-class counts: TP, predicted, actual.
        let mut classes: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
        for (p, act, n) in a.cells() {
            let e = classes.entry(p).or_default();
            e.1 += n;
            if p == act {
                e.0 += n;
            }
            classes.entry(act).or_default().2 += n;
        }
        let per_class: Vec<ClassMetrics> = classes
            .into_iter()
            .map(|(class, (tp, predicted, actual))| {
                let precision = ratio(tp as f64, predicted).unwrap_or(0.0);
                let recall = ratio(tp as f64, actual).unwrap_or(0.0);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    class: class.to_owned(),
                    precision,
                    recall,
                    f1,
                    support: actual,
                }
            })
            .collect();
        let n_classes = per_class.len() as u64;
        let macro_avg =
            |f: fn(&ClassMetrics) -> f64| ratio(per_class.iter().map(f).sum::<f64>(), n_classes);
        let r = &a.regression;
        Metrics {
            predictions,
            matched,
            labeled: a.labeled(),
            label_coverage: ratio(matched as f64, predictions).map(|c| c.min(1.0)),
            prediction_rate: (window_ms > 0)
                .then(|| predictions as f64 / (window_ms as f64 / 1000.0)),
            accuracy: ratio(correct as f64, classified),
            precision_macro: macro_avg(|c| c.precision),
            recall_macro: macro_avg(|c| c.recall),
            f1_macro: macro_avg(|c| c.f1),
            per_class,
            log_loss: ratio(a.log_loss_sum, a.scored),
            brier: ratio(a.brier_sum, a.scored),
            mae: ratio(r.abs_error_sum, r.count),
            rmse: ratio(r.squared_error_sum, r.count).map(f64::sqrt),
            bias: ratio(r.error_sum, r.count),
            mape: ratio(r.abs_pct_error_sum, r.pct_count),
            mean_label_delay_ms: ratio(a.label_delay_sum_ms as f64, matched),
            unlabeled_scored: estimate::unlabeled_scored(a),
            estimated_accuracy: estimate::estimated_accuracy(a),
            estimated_f1: estimate::estimated_f1(a),
            blended_accuracy: estimate::blended_accuracy(a),
            mean_score: ratio(a.scored_score_sum, a.scored),
            scores_calibrated: estimate::scores_calibrated(a),
        }
    }

    /// Name → value pairs of the metrics that could be computed, in a fixed order, as carried
    /// by `ModelMetrics` and `RetrainEvent` (per-class values as `precision[<class>]`, …).
    pub fn to_pairs(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        let mut push = |name: &str, v: Option<f64>| {
            if let Some(v) = v {
                out.push((name.to_owned(), v));
            }
        };
        push("label_coverage", self.label_coverage);
        push("prediction_rate", self.prediction_rate);
        push("accuracy", self.accuracy);
        push("precision_macro", self.precision_macro);
        push("recall_macro", self.recall_macro);
        push("f1_macro", self.f1_macro);
        push("log_loss", self.log_loss);
        push("brier", self.brier);
        push("mae", self.mae);
        push("rmse", self.rmse);
        push("bias", self.bias);
        push("mape", self.mape);
        push("mean_label_delay_ms", self.mean_label_delay_ms);
        push("estimated_accuracy", self.estimated_accuracy);
        if self.estimated_accuracy.is_some() {
            push("unlabeled_scored", Some(self.unlabeled_scored as f64));
        }
        push("blended_accuracy", self.blended_accuracy);
        push("mean_score", self.mean_score);
        push(
            "scores_calibrated",
            self.scores_calibrated.map(|c| if c { 1.0 } else { 0.0 }),
        );
        for (class, f1) in &self.estimated_f1 {
            out.push((format!("estimated_f1[{class}]"), *f1));
        }
        for c in &self.per_class {
            out.push((format!("precision[{}]", c.class), c.precision));
            out.push((format!("recall[{}]", c.class), c.recall));
            out.push((format!("f1[{}]", c.class), c.f1));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::join::partial::empty_partial;
    use crate::ConfusionCell;

    fn cell(p: &str, a: &str, n: u64) -> ConfusionCell {
        ConfusionCell {
            predicted: p.into(),
            actual: a.into(),
            count: n,
        }
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.unwrap();
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn classification_metrics_match_hand_computation() {
        // Confusion (predicted, actual): a,a 5; a,b 2; b,a 1; b,b 2; c,c 0 absent.
        let mut p = empty_partial("m", "v", 0, 60_000, 0);
        p.confusion = vec![
            cell("a", "a", 5),
            cell("a", "b", 2),
            cell("b", "a", 1),
            cell("b", "b", 2),
        ];
        p.counters.predictions = 20;
        p.counters.matched = 10;
        p.log_loss_sum = 4.0;
        p.brier_sum = 1.5;
        p.scored = 8;
        p.label_delay_sum_ms = 5_000;
        let m = Metrics::from_partial(&p, 60_000);
        close(m.accuracy, 7.0 / 10.0);
        // a: TP 5, predicted 7, actual 6. b: TP 2, predicted 3, actual 4.
        let (pa, ra) = (5.0 / 7.0, 5.0 / 6.0);
        let (pb, rb) = (2.0 / 3.0, 2.0 / 4.0);
        let fa = 2.0 * pa * ra / (pa + ra);
        let fb = 2.0 * pb * rb / (pb + rb);
        assert_eq!(m.per_class.len(), 2);
        close(Some(m.per_class[0].precision), pa);
        close(Some(m.per_class[0].recall), ra);
        close(Some(m.per_class[1].f1), fb);
        assert_eq!(m.per_class[1].support, 4);
        close(m.precision_macro, (pa + pb) / 2.0);
        close(m.recall_macro, (ra + rb) / 2.0);
        close(m.f1_macro, (fa + fb) / 2.0);
        close(m.log_loss, 0.5);
        close(m.brier, 1.5 / 8.0);
        close(m.label_coverage, 0.5);
        close(m.prediction_rate, 20.0 / 60.0);
        close(m.mean_label_delay_ms, 500.0);
        assert_eq!((m.matched, m.labeled), (10, 10));
        assert!(m.mae.is_none() && m.rmse.is_none());
    }

    /// The window of the report: 1 800 predictions, 1 650 resolved (1 617 labeled, 33
    /// expired), 150 still waiting. Coverage is 1 617 / 1 800, not 1 617 / 1 650.
    #[test]
    fn coverage_counts_predictions_still_waiting_for_a_label() {
        let mut p = empty_partial("m", "v", 0, 60_000, 0);
        p.counters.received_predictions = 1_800;
        p.counters.matched = 1_617;
        p.counters.expired_unlabeled = 33;
        p.counters.predictions = 1_650;
        let m = Metrics::from_partial(&p, 60_000);
        assert_eq!((m.predictions, m.matched), (1_800, 1_617));
        close(m.label_coverage, 1_617.0 / 1_800.0);
        close(m.prediction_rate, 30.0);
        // A partial of a join without the received count: the resolved ones, as before.
        p.counters.received_predictions = 0;
        let m = Metrics::from_partial(&p, 60_000);
        assert_eq!(m.predictions, 1_650);
        close(m.label_coverage, 1_617.0 / 1_650.0);
    }

    #[test]
    fn class_never_predicted_has_zero_precision() {
        let mut p = empty_partial("m", "v", 0, 60_000, 0);
        p.confusion = vec![cell("a", "a", 3), cell("a", "b", 1)];
        let m = Metrics::from_partial(&p, 60_000);
        let b = m.per_class.iter().find(|c| c.class == "b").unwrap();
        assert_eq!((b.precision, b.recall, b.f1), (0.0, 0.0, 0.0));
        close(m.accuracy, 0.75);
        // No predictions counted: coverage is unknown, not 0 or NaN.
        assert!(m.label_coverage.is_none());
    }

    #[test]
    fn regression_metrics_match_hand_computation() {
        // Errors (predicted − actual): +1 (actual 2), −3 (actual 6), +2 (actual 0).
        let mut p = empty_partial("m", "v", 0, 1_000, 0);
        p.regression = RegressionSums {
            count: 3,
            abs_error_sum: 6.0,
            squared_error_sum: 14.0,
            error_sum: 0.0,
            abs_pct_error_sum: 0.5 + 0.5,
            pct_count: 2,
        };
        let m = Metrics::from_partial(&p, 1_000);
        close(m.mae, 2.0);
        close(m.rmse, (14.0f64 / 3.0).sqrt());
        close(m.bias, 0.0);
        close(m.mape, 0.5);
        assert!(m.accuracy.is_none() && m.f1_macro.is_none());
        assert!(Aggregate::from_partial(&p).is_regressor());
        let names: Vec<String> = m.to_pairs().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"rmse".to_owned()));
        assert!(!names.contains(&"accuracy".to_owned()));
    }

    #[test]
    fn aggregates_add_like_partials() {
        let mut p = empty_partial("m", "v", 0, 60_000, 0);
        p.confusion = vec![cell("a", "a", 2)];
        p.counters.matched = 2;
        let mut q = empty_partial("m", "v", 60_000, 60_000, 0);
        q.confusion = vec![cell("a", "a", 1), cell("b", "a", 1)];
        q.counters.matched = 2;
        let mut a = Aggregate::from_partial(&p);
        a.add(&q);
        let mut b = Aggregate::from_partial(&q);
        b.add_aggregate(&Aggregate::from_partial(&p));
        assert_eq!(a, b);
        assert_eq!((a.classified(), a.correct()), (4, 3));
    }
}
