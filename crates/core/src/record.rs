//! Owned forms of every record on driftwatch's topics.
//!
//! These are the types the codecs (Avro, JSON) read and write; the wire contract itself lives in
//! `schemas/*.avsc`. The join hot path does not build these: it decodes straight into compact
//! join entries (see the `codec` crate's borrowed decoder).

use serde::{Deserialize, Serialize};

/// Event time: milliseconds since the Unix epoch, as carried by Avro `timestamp-millis`.
pub type TimestampMs = i64;

/// One input feature's value: `union {null, double, string}` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FeatureValue {
    /// The feature was absent or null at prediction time.
    Missing,
    /// A numeric feature.
    Number(f64),
    /// A categorical feature.
    Category(String),
}

/// A model server's prediction (topic `predictions`, key = request id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    pub request_id: String,
    pub model_id: String,
    pub model_version: String,
    /// When the prediction was made.
    pub timestamp: TimestampMs,
    /// Input features by name. Order is kept for deterministic round trips; names are unique.
    #[serde(default)]
    pub features: Vec<(String, FeatureValue)>,
    /// Predicted class of a classifier.
    #[serde(default)]
    pub predicted_label: Option<String>,
    /// Predicted value of a regressor.
    #[serde(default)]
    pub predicted_value: Option<f64>,
    /// Class probabilities, when the model exposes them.
    #[serde(default)]
    pub scores: Option<Vec<(String, f64)>>,
    /// Free-form tags (region, tenant, …).
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

/// A ground-truth label that arrives after (or before) its prediction (topic `ground-truth`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundTruth {
    pub request_id: String,
    /// Optional: lets a label be attributed to a model even when it ends as an orphan.
    #[serde(default)]
    pub model_id: Option<String>,
    /// When the label was observed.
    pub timestamp: TimestampMs,
    /// True class, for classifiers.
    #[serde(default)]
    pub label: Option<String>,
    /// True value, for regressors.
    #[serde(default)]
    pub value: Option<f64>,
}

/// State of one drift detector for one (model, version, detector, feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriftState {
    Ok,
    Warning,
    Drift,
    Recovered,
}

impl DriftState {
    /// The Avro enum symbol / JSON string of this state.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::Ok => "OK",
            DriftState::Warning => "WARNING",
            DriftState::Drift => "DRIFT",
            DriftState::Recovered => "RECOVERED",
        }
    }

    /// Parses an Avro enum symbol / JSON string.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "OK" => DriftState::Ok,
            "WARNING" => DriftState::Warning,
            "DRIFT" => DriftState::Drift,
            "RECOVERED" => DriftState::Recovered,
            _ => return None,
        })
    }
}

/// A detector changed state (topic `drift-events`, key = model id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftEvent {
    /// Idempotent id derived from model, version, detector, feature and window end.
    pub event_id: String,
    pub model_id: String,
    pub model_version: String,
    /// Detector name, e.g. `accuracy_drop`, `psi`, `adwin`.
    pub detector: String,
    /// Feature the detector watches; `None` for model-level detectors.
    pub feature: Option<String>,
    pub previous_state: DriftState,
    pub state: DriftState,
    /// Name of the statistic, e.g. `psi`, `ks_p_value`, `accuracy`.
    pub statistic: String,
    pub value: f64,
    pub threshold: f64,
    pub baseline_start: TimestampMs,
    pub baseline_end: TimestampMs,
    pub window_start: TimestampMs,
    pub window_end: TimestampMs,
    pub baseline_samples: u64,
    pub window_samples: u64,
    /// 0.0 (negligible) to 1.0 (severe).
    pub severity: f64,
    pub detected_at: TimestampMs,
}

/// Advice to retrain a model (topic `retrain-events`, key = model id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainEvent {
    pub event_id: String,
    pub model_id: String,
    pub model_version: String,
    /// Human-readable reasons, one per triggering detector.
    pub reasons: Vec<String>,
    pub drift_event_ids: Vec<String>,
    /// Metrics snapshot at decision time (name → value).
    pub metrics: Vec<(String, f64)>,
    /// Suggested training data range: from the estimated drift onset to now.
    pub train_from: TimestampMs,
    pub train_to: TimestampMs,
    /// Advisory only: the policy is in dry-run mode.
    pub dry_run: bool,
    pub created_at: TimestampMs,
    /// Accuracy the version loses per day, fitted against its time since go-live (see
    /// `monitor::decay`); `None` before enough matured hours.
    #[serde(default)]
    pub estimated_decay_per_day: Option<f64>,
    /// The retrain interval that minimizes retrain cost plus accuracy-loss cost under that
    /// decay and the policy's costs, ms; `None` when the model does not decay.
    #[serde(default)]
    pub suggested_retrain_interval_ms: Option<i64>,
}

/// A metrics snapshot of one model over one window (topic `model-metrics`, key = model id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMetrics {
    pub model_id: String,
    pub model_version: String,
    /// Window name, e.g. `15m`, `24h`.
    pub window: String,
    pub window_start: TimestampMs,
    pub window_end: TimestampMs,
    /// Every distinct prediction of the window, labeled, expired or still waiting for a label.
    pub predictions: u64,
    pub labeled: u64,
    /// labeled / predictions.
    pub label_coverage: f64,
    /// Metric name → value (accuracy, f1_macro, mae, …).
    pub metrics: Vec<(String, f64)>,
    pub emitted_at: TimestampMs,
    /// The version's fitted accuracy decay per day (as in [`RetrainEvent`]).
    #[serde(default)]
    pub estimated_decay_per_day: Option<f64>,
    /// The suggested retrain interval, ms (as in [`RetrainEvent`]).
    #[serde(default)]
    pub suggested_retrain_interval_ms: Option<i64>,
}

/// Accounting counters of the join stage: every input ends in exactly one bucket (and, apart
/// from those, how many distinct predictions were taken in: `received_predictions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinCounters {
    pub predictions: u64,
    pub labels: u64,
    /// Prediction/label pairs matched (each pair counts once here, and once in each input).
    pub matched: u64,
    pub expired_unlabeled: u64,
    pub orphan_labels: u64,
    pub duplicate_predictions: u64,
    pub duplicate_labels: u64,
    pub late_labels: u64,
    pub dead_lettered: u64,
    /// Distinct predictions the join took in (the first of its request id, not dead-lettered),
    /// counted when the join processes it, by prediction time, resolved or not. A separate
    /// measure, not an outcome: none of the identities above includes it, and once every such
    /// prediction is resolved it equals `matched + expired_unlabeled`. It is what label
    /// coverage divides by, so that predictions still waiting for a label count too.
    #[serde(default)]
    pub received_predictions: u64,
    /// Predictions the join processed that sat on another partition than their key's murmur2
    /// one, or came back through the repartition topic (misrouted at their producer). Counted
    /// when processed, by prediction time; a separate measure like `received_predictions`, not
    /// an outcome: the misrouted prediction still ends in one of the buckets above.
    #[serde(default)]
    pub misrouted_predictions: u64,
    /// Labels the join processed that were misrouted likewise, by label time, attributed to
    /// the label's model hint (no version: a label carries none). Not an outcome either.
    #[serde(default)]
    pub misrouted_labels: u64,
}

impl JoinCounters {
    /// Field-wise sum: counters of tasks, partitions, workers or time buckets combine by
    /// addition (a monoid with `Default` as identity).
    pub fn merged(&self, other: &JoinCounters) -> JoinCounters {
        // Saturating: counters may come from outside (partials on a topic); a hostile one
        // must not panic a worker.
        JoinCounters {
            predictions: self.predictions.saturating_add(other.predictions),
            labels: self.labels.saturating_add(other.labels),
            matched: self.matched.saturating_add(other.matched),
            expired_unlabeled: self
                .expired_unlabeled
                .saturating_add(other.expired_unlabeled),
            orphan_labels: self.orphan_labels.saturating_add(other.orphan_labels),
            duplicate_predictions: self
                .duplicate_predictions
                .saturating_add(other.duplicate_predictions),
            duplicate_labels: self.duplicate_labels.saturating_add(other.duplicate_labels),
            late_labels: self.late_labels.saturating_add(other.late_labels),
            dead_lettered: self.dead_lettered.saturating_add(other.dead_lettered),
            received_predictions: self
                .received_predictions
                .saturating_add(other.received_predictions),
            misrouted_predictions: self
                .misrouted_predictions
                .saturating_add(other.misrouted_predictions),
            misrouted_labels: self.misrouted_labels.saturating_add(other.misrouted_labels),
        }
    }

    /// Whether any input ended here (any counter but `received_predictions`, which counts
    /// predictions taken in, resolved or not, and the misrouted counts, which say how inputs
    /// came, not how they ended).
    pub fn has_outcomes(&self) -> bool {
        JoinCounters {
            received_predictions: 0,
            misrouted_predictions: 0,
            misrouted_labels: 0,
            ..*self
        } != JoinCounters::default()
    }

    /// Every input accounted for (a matched pair counts one prediction and one label).
    pub fn inputs(&self) -> u64 {
        self.predictions + self.labels
    }
}

/// One cell of a confusion matrix: how often `predicted` was said when `actual` was true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfusionCell {
    pub predicted: String,
    pub actual: String,
    pub count: u64,
}

/// The score sums of one predicted class, for a classifier's predictions that carry a score:
/// with them a binary classifier's F1 of the predictions still without a label can be
/// estimated (`monitor::estimate`). Mergeable by addition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassScores {
    /// The predicted class.
    pub class: String,
    /// Predictions of this class taken in with a finite score, and the sum of those scores
    /// (clamped to [0, 1]).
    pub received_scored: u64,
    pub received_score_sum: f64,
    /// Scored outcomes (labeled) of this predicted class, and the sum of their scores.
    pub scored: u64,
    pub scored_score_sum: f64,
}

impl ClassScores {
    /// Adds `o`'s sums (its class is assumed to be this one).
    pub fn add(&mut self, o: &ClassScores) {
        self.received_scored = self.received_scored.saturating_add(o.received_scored);
        self.received_score_sum += o.received_score_sum;
        self.scored = self.scored.saturating_add(o.scored);
        self.scored_score_sum += o.scored_score_sum;
    }
}

/// Sums from which regression errors (MAE, RMSE, bias, MAPE) are derived; mergeable by addition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionSums {
    pub count: u64,
    pub abs_error_sum: f64,
    pub squared_error_sum: f64,
    pub error_sum: f64,
    /// Sum of |error| / |actual| over outcomes whose actual value is not zero.
    pub abs_pct_error_sum: f64,
    pub pct_count: u64,
}

impl RegressionSums {
    /// Field-wise sum (a monoid with `Default` as identity).
    pub fn merged(&self, other: &RegressionSums) -> RegressionSums {
        RegressionSums {
            count: self.count.saturating_add(other.count),
            abs_error_sum: self.abs_error_sum + other.abs_error_sum,
            squared_error_sum: self.squared_error_sum + other.squared_error_sum,
            error_sum: self.error_sum + other.error_sum,
            abs_pct_error_sum: self.abs_pct_error_sum + other.abs_pct_error_sum,
            pct_count: self.pct_count.saturating_add(other.pct_count),
        }
    }
}

/// Internal record from the join stage to the monitor stage (topic `driftwatch.model-partials`,
/// key = model id): everything one join task learned about one (model, version, time bucket)
/// since its last flush. Pre-aggregated so a busy model does not cost one message per event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPartial {
    pub model_id: String,
    pub model_version: String,
    /// Start of the prediction-time bucket (inclusive).
    pub bucket_start: TimestampMs,
    pub bucket_width_ms: i64,
    /// Input partition of the join task that produced it.
    pub source_partition: i32,
    /// Per-task sequence number, lets the monitor drop a partial it already merged.
    pub sequence: u64,
    pub counters: JoinCounters,
    pub confusion: Vec<ConfusionCell>,
    pub regression: RegressionSums,
    /// Sum of log loss over scored classification outcomes.
    pub log_loss_sum: f64,
    /// Sum of Brier score over scored classification outcomes.
    pub brier_sum: f64,
    pub scored: u64,
    /// Sum of label delays (ms) over matched outcomes.
    pub label_delay_sum_ms: i64,
    /// Serialized [`SignatureSummary`](crate::summary::SignatureSummary) of the predictions
    /// whose prediction time falls in the bucket (their features and outputs); `None` when
    /// nothing was summarized. Merged by decoding, merging and re-encoding; `None` is the
    /// identity. JSON: an array of byte values, or `null`/absent.
    #[serde(default)]
    pub signature: Option<Vec<u8>>,
    /// Start of the event-time *epoch* (one bucket width) in which the join task made these
    /// changes: a match at its label's time, a prediction at its own time, never before the
    /// watermark the task last announced. The monitor applies a partial only once every join
    /// task's announced watermark passed the epoch's end, so what it judges at an epoch end
    /// does not depend on how the join split its work into flushes. `None`: written by a join
    /// stage without epochs, applied on arrival.
    #[serde(default)]
    pub epoch_start: Option<TimestampMs>,
    /// Classifier predictions taken in (counted like `received_predictions`, by prediction
    /// time) that carried a finite score for their predicted class. With the three sums below
    /// they give the accuracy expected of the predictions still without a label (see
    /// `monitor::metrics`). 0 from joins that predate them.
    #[serde(default)]
    pub received_scored: u64,
    /// Sum of the scores (clamped to [0, 1]) of those `received_scored` predictions.
    #[serde(default)]
    pub received_score_sum: f64,
    /// Sum of the scores (clamped to [0, 1]) of the `scored` outcomes: what the labeled part of
    /// `received_score_sum` is.
    #[serde(default)]
    pub scored_score_sum: f64,
    /// The `scored` outcomes whose predicted class was the true one.
    #[serde(default)]
    pub scored_correct: u64,
    /// The score sums above split by predicted class (sorted by class): a binary classifier's
    /// estimated F1 needs them. Empty from joins that predate them.
    #[serde(default)]
    pub class_scores: Vec<ClassScores>,
}

/// A reference profile of a model version's inputs, built from training data (topic
/// `model-references`, compacted, key = `model_id/model_version`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelReference {
    pub model_id: String,
    pub model_version: String,
    /// When the profile was built.
    pub created_at: TimestampMs,
    /// Training rows summarized.
    pub rows: u64,
    /// Where the rows came from.
    pub source: String,
    /// Serialized `SignatureSummary` (the format of `ModelPartial::signature`).
    pub signature: Vec<u8>,
}

impl ModelReference {
    /// The Kafka key of this reference.
    pub fn key(&self) -> String {
        format!("{}/{}", self.model_id, self.model_version)
    }
}
