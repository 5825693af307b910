//! Join of predictions with delayed ground truth.
//!
//! Partition *i* of `predictions` and partition *i* of `ground-truth` form one *join task*
//! ([`JoinTask`]). The task merges its two inputs in event-time order, keeps one compact entry
//! per unresolved request in a [`JoinBuffer`], and classifies every input into exactly one
//! bucket of [`JoinCounters`](crate::JoinCounters): matched, expired unlabeled, orphan,
//! duplicate or late (the caller adds dead-lettered for undecodable input; times the buffer
//! cannot represent come back as [`JoinEvent::Rejected`] to be dead-lettered the same way).
//!
//! # The rule
//! A label matches its prediction iff `label_time − prediction_time ≤ label_timeout` (per
//! model; a label earlier than its prediction matches too). Otherwise the prediction expires
//! unlabeled and the label is late. A prediction still pending once the watermark passes
//! `prediction_time + label_timeout` expires; a label waiting for its prediction becomes an
//! orphan once the watermark passes `label_time + orphan_timeout`. The first prediction and
//! the first label of a request win; later ones are duplicates.
//!
//! Expiry is lazy (an amortized sweep) but classification never depends on when the sweep
//! runs: every lookup first applies the expiry the sweep would have applied (check-on-access).
//!
//! # Design
//! - [`intake`]: when a decoded prediction or label may enter a task (request id, event time
//!   within the allowed clock skew, id space), and its typed form.
//! - [`key`]: the request id is hashed once to 128 bits ([`RequestKey`]); no string is kept
//!   per entry. The map hashes by folding that key, not by SipHash.
//! - [`intern`]: model/version and class names become small integers.
//! - [`buffer`]: one 16-byte slot per key in a `hashbrown` table (≈ 55 B per entry at 10M
//!   entries including the load-factor slack), event-time expiry by `retain` sweeps.
//! - [`task`]: the two-input merge in timestamp order, `max_task_idle_ms`, the min-watermark
//!   with an idle fallback, and per-model counters.
//! - [`changelog`]: the task's state as compacted-topic records (tens of bytes an entry) and
//!   its restore, for exactly-once processing.
//! - [`partial`]: pre-aggregation of join events into [`ModelPartial`](crate::ModelPartial)s
//!   for the monitor stage, and their monoid merge.
//! - [`routing`]: whether a record sits on its key's murmur2 partition (Java's default
//!   partitioner), and which partitioner a misrouted one likely came from.
//!
//! Nothing here reads a clock: event time comes with each record and processing time is
//! passed as `now_ms` where the idle rules need it.

pub mod buffer;
pub mod changelog;
pub mod intake;
pub mod intern;
pub mod key;
pub mod partial;
pub mod routing;
pub mod task;

use std::collections::BTreeMap;

pub use buffer::{
    hot_capacity_for_budget, ColdError, ColdState, ColdTier, EntryChanges, EntryRecord, JoinBuffer,
    MemoryColdTier, Slot, StoreCheckpoint,
};
pub use intake::{
    label_in, prediction_in, IntakeRules, LabelFields, PredictionFields, Rejection, RejectionKind,
};
pub use intern::{ClassId, Interner, ModelVersionId};
pub use key::{KeyHashBuilder, KeyHasher, RequestKey};
pub use partial::{merge_partials, PartialAggregator, PartialMergeError, UnfinishedPartials};
pub use routing::{Partitioner, Routing, RoutingTally};
pub use task::{Input, JoinTask, TaskCheckpoint};

use crate::TimestampMs;

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// The longest retention (`label_timeout + orphan_timeout`) a configuration may ask for.
///
/// Entry times are stored as a `u32` millisecond offset from a per-buffer epoch (≈ 49.7
/// days of range). The epoch is kept about [`buffer::EPOCH_HEADROOM_MS`] (≈ 24.8 days)
/// behind the watermark, so every entry still retained must lie within that headroom.
pub const MAX_RETENTION_MS: i64 = 20 * 24 * HOUR_MS;

/// What a model server predicted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Predicted {
    /// A classifier's predicted class.
    Class(ClassId),
    /// A regressor's predicted value.
    Value(f64),
    /// Nothing usable was predicted (still counted and joined).
    None,
}

/// The ground truth a label carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Actual {
    /// The true class.
    Class(ClassId),
    /// The true value.
    Value(f64),
    /// The label carried neither (still counted and joined).
    None,
}

/// A decoded prediction, as the join needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictionIn {
    pub key: RequestKey,
    pub model: ModelVersionId,
    /// Event time of the prediction (ms since the Unix epoch).
    pub time: TimestampMs,
    pub predicted: Predicted,
    /// Score (probability) of the predicted class, when the model exposes it.
    pub score: Option<f32>,
}

/// A decoded ground-truth label, as the join needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelIn {
    pub key: RequestKey,
    /// The model the label names, if any. Labels carry a model id but no version, so the
    /// caller interns it with [`Interner::intern_model_hint`]. Only used when the label cannot
    /// be attributed through its prediction (orphan, duplicate).
    pub model_hint: Option<ModelVersionId>,
    /// Event time of the label (ms since the Unix epoch).
    pub time: TimestampMs,
    pub actual: Actual,
}

/// A prediction joined with its label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    pub key: RequestKey,
    pub model: ModelVersionId,
    pub prediction_time: TimestampMs,
    pub label_time: TimestampMs,
    /// `label_time − prediction_time`; negative when the label was stamped first.
    pub label_delay_ms: i64,
    pub predicted: Predicted,
    pub actual: Actual,
    pub score: Option<f32>,
}

/// Everything the join decides. Every prediction and every label ends in exactly one
/// *outcome* event (a [`JoinEvent::Matched`] accounts for one of each); besides, a prediction
/// the join takes in is announced once by [`JoinEvent::Received`], which is no outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinEvent {
    /// A prediction taken into the join: the first of its request id, with a representable
    /// time (a duplicate or a rejected one is not). Emitted once per such prediction, right
    /// after the decisions on it, when the task processes it (not when it is queued): it comes
    /// from the same processing as the outcomes, so a changelog restore, which rebuilds the
    /// state as of the committed input offsets, neither loses nor repeats it. Lets label
    /// coverage count predictions still waiting for their label. Counted in
    /// `received_predictions` only.
    Received {
        key: RequestKey,
        model: ModelVersionId,
        prediction_time: TimestampMs,
        /// Score of the predicted class, for a classifier's prediction that carries one:
        /// what the accuracy estimate of still-unlabeled predictions is built from.
        score: Option<f32>,
        /// The predicted class, for a classifier's prediction.
        class: Option<ClassId>,
    },
    /// A prediction met its label within the timeout.
    Matched(Match),
    /// A prediction got no (timely) label.
    ExpiredUnlabeled {
        key: RequestKey,
        model: ModelVersionId,
        prediction_time: TimestampMs,
        predicted: Predicted,
        score: Option<f32>,
    },
    /// A label whose prediction never came within `orphan_timeout`. `model` is the label's
    /// hint, or [`ModelVersionId::UNKNOWN`].
    Orphan {
        key: RequestKey,
        model: ModelVersionId,
        label_time: TimestampMs,
        actual: Actual,
    },
    /// A second prediction for a request that was already seen (first wins). `model` is the
    /// duplicate's own model.
    DuplicatePrediction {
        key: RequestKey,
        model: ModelVersionId,
        prediction_time: TimestampMs,
    },
    /// A second label for a request that was already seen (first wins). `model` is the
    /// duplicate's own hint (or unknown), so the attribution does not depend on input order.
    DuplicateLabel {
        key: RequestKey,
        model: ModelVersionId,
        label_time: TimestampMs,
    },
    /// A label that came after its prediction had expired, or too long after it.
    LateLabel {
        key: RequestKey,
        model: ModelVersionId,
        label_time: TimestampMs,
        /// The prediction's time when it was still known.
        prediction_time: Option<TimestampMs>,
    },
    /// An input that reached its task misrouted: read on another partition than its key's
    /// murmur2 one (`join.misrouted = "account"`), or through the repartition topic, which
    /// only carries records misrouted at their producer. Emitted when the task processes it,
    /// before the decisions on it, like [`JoinEvent::Received`] (so a restore neither loses
    /// nor repeats it), and no outcome: the input still ends in exactly one bucket. `model` is
    /// a prediction's own model version, a label's model hint (or unknown); `time` its event
    /// time. Counted in `misrouted_predictions` / `misrouted_labels` only.
    Misrouted {
        input: Input,
        model: ModelVersionId,
        time: TimestampMs,
    },
    /// An input whose time the buffer cannot represent (an absurd timestamp): the caller
    /// dead-letters it. Counted as `dead_lettered`.
    Rejected {
        input: Input,
        key: RequestKey,
        model: ModelVersionId,
        time: TimestampMs,
        error: JoinError,
    },
}

impl JoinEvent {
    /// The model this event is accounted to.
    pub fn model(&self) -> ModelVersionId {
        match self {
            JoinEvent::Matched(o) => o.model,
            JoinEvent::Received { model, .. }
            | JoinEvent::ExpiredUnlabeled { model, .. }
            | JoinEvent::Orphan { model, .. }
            | JoinEvent::DuplicatePrediction { model, .. }
            | JoinEvent::DuplicateLabel { model, .. }
            | JoinEvent::LateLabel { model, .. }
            | JoinEvent::Misrouted { model, .. }
            | JoinEvent::Rejected { model, .. } => *model,
        }
    }

    /// Adds this event to `counters`: the inputs it accounts for and their final bucket
    /// (for [`JoinEvent::Received`]: `received_predictions`; for [`JoinEvent::Misrouted`]:
    /// `misrouted_predictions` or `misrouted_labels`).
    pub fn count_into(&self, counters: &mut crate::JoinCounters) {
        match self {
            JoinEvent::Received { .. } => counters.received_predictions += 1,
            JoinEvent::Misrouted { input, .. } => match input {
                Input::Predictions => counters.misrouted_predictions += 1,
                Input::Labels => counters.misrouted_labels += 1,
            },
            JoinEvent::Matched(_) => {
                counters.predictions += 1;
                counters.labels += 1;
                counters.matched += 1;
            }
            JoinEvent::ExpiredUnlabeled { .. } => {
                counters.predictions += 1;
                counters.expired_unlabeled += 1;
            }
            JoinEvent::Orphan { .. } => {
                counters.labels += 1;
                counters.orphan_labels += 1;
            }
            JoinEvent::DuplicatePrediction { .. } => {
                counters.predictions += 1;
                counters.duplicate_predictions += 1;
            }
            JoinEvent::DuplicateLabel { .. } => {
                counters.labels += 1;
                counters.duplicate_labels += 1;
            }
            JoinEvent::LateLabel { .. } => {
                counters.labels += 1;
                counters.late_labels += 1;
            }
            JoinEvent::Rejected { input, .. } => {
                match input {
                    Input::Predictions => counters.predictions += 1,
                    Input::Labels => counters.labels += 1,
                }
                counters.dead_lettered += 1;
            }
        }
    }
}

/// Errors of the join core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("model/version id space exhausted ({limit} distinct model versions)")]
    ModelIdsExhausted { limit: usize },
    #[error("class id space exhausted ({limit} distinct classes)")]
    ClassIdsExhausted { limit: usize },
    #[error("event time {time} ms cannot be represented (buffer covers {min}..={max} ms)")]
    TimeOutOfRange {
        time: TimestampMs,
        min: TimestampMs,
        max: TimestampMs,
    },
    #[error("invalid join configuration: {0}")]
    InvalidConfig(String),
}

/// Configuration of one join task. All durations are milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinConfig {
    /// Longest `label_time − prediction_time` that still matches. Default 24 h.
    pub label_timeout_ms: i64,
    /// How long a label waits for its prediction. Default 24 h.
    pub orphan_timeout_ms: i64,
    /// The watermark trails the slower input by this much, so slightly out-of-order records
    /// are not judged before they arrive. Default 5 s.
    pub allowed_lateness_ms: i64,
    /// How long (processing time) to wait for producers on an empty input that is caught up
    /// before processing the other one (Kafka Streams' `max.task.idle.ms`). An empty input
    /// that is not caught up is always waited for. Default 0: go on at once.
    pub max_task_idle_ms: i64,
    /// A caught-up input silent for this long (processing time) stops holding the watermark
    /// back. Default 30 s.
    pub idle_timeout_ms: i64,
    /// `label_timeout_ms` per model id (all versions of it).
    pub label_timeout_overrides_ms: BTreeMap<String, i64>,
}

impl Default for JoinConfig {
    fn default() -> Self {
        JoinConfig {
            label_timeout_ms: 24 * HOUR_MS,
            orphan_timeout_ms: 24 * HOUR_MS,
            allowed_lateness_ms: 5_000,
            max_task_idle_ms: 0,
            idle_timeout_ms: 30_000,
            label_timeout_overrides_ms: BTreeMap::new(),
        }
    }
}

impl JoinConfig {
    /// Checks every duration: none negative, timeouts positive, and every retention
    /// (`label_timeout + orphan_timeout`) within [`MAX_RETENTION_MS`].
    pub fn validate(&self) -> Result<(), JoinError> {
        let bad = |msg: String| Err(JoinError::InvalidConfig(msg));
        let named = [
            ("allowed_lateness_ms", self.allowed_lateness_ms),
            ("max_task_idle_ms", self.max_task_idle_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ];
        for (name, v) in named {
            if v < 0 {
                return bad(format!("{name} must not be negative (got {v})"));
            }
        }
        if self.orphan_timeout_ms <= 0 {
            return bad(format!(
                "orphan_timeout_ms must be positive (got {})",
                self.orphan_timeout_ms
            ));
        }
        let timeouts = std::iter::once(("label_timeout_ms", self.label_timeout_ms)).chain(
            self.label_timeout_overrides_ms
                .values()
                .map(|v| ("label_timeout_overrides_ms", *v)),
        );
        for (name, v) in timeouts {
            if v <= 0 {
                return bad(format!("{name} must be positive (got {v})"));
            }
            if v.saturating_add(self.orphan_timeout_ms) > MAX_RETENTION_MS {
                return bad(format!(
                    "{name} ({v}) + orphan_timeout_ms ({}) exceeds the maximum retention of \
                     {MAX_RETENTION_MS} ms",
                    self.orphan_timeout_ms
                ));
            }
        }
        Ok(())
    }

    /// The label timeout of a model id, after overrides.
    pub fn label_timeout_for(&self, model_id: &str) -> i64 {
        self.label_timeout_overrides_ms
            .get(model_id)
            .copied()
            .unwrap_or(self.label_timeout_ms)
    }

    /// Smallest of all timeouts; the sweep interval is derived from it.
    pub fn min_timeout_ms(&self) -> i64 {
        self.label_timeout_overrides_ms
            .values()
            .copied()
            .chain([self.label_timeout_ms, self.orphan_timeout_ms])
            .min()
            .unwrap_or(self.label_timeout_ms)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_documented_values() {
        let c = JoinConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.label_timeout_ms, 86_400_000);
        assert_eq!(c.orphan_timeout_ms, 86_400_000);
        assert_eq!(c.allowed_lateness_ms, 5_000);
        assert_eq!(c.max_task_idle_ms, 0);
        assert_eq!(c.idle_timeout_ms, 30_000);
    }

    #[test]
    fn validate_rejects_negative_and_too_long() {
        let c = JoinConfig {
            allowed_lateness_ms: -1,
            ..JoinConfig::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("allowed_lateness_ms"), "{err}");

        let c = JoinConfig {
            label_timeout_ms: 0,
            ..JoinConfig::default()
        };
        assert!(c.validate().is_err());

        let mut c = JoinConfig::default();
        c.label_timeout_overrides_ms
            .insert("m".into(), MAX_RETENTION_MS);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("maximum retention"), "{err}");
    }

    #[test]
    fn overrides_apply_per_model_and_lower_min_timeout() {
        let mut c = JoinConfig::default();
        c.label_timeout_overrides_ms.insert("fast".into(), 60_000);
        assert_eq!(c.label_timeout_for("fast"), 60_000);
        assert_eq!(c.label_timeout_for("other"), c.label_timeout_ms);
        assert_eq!(c.min_timeout_ms(), 60_000);
    }
}
