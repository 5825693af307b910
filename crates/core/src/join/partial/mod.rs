//! Pre-aggregation of join decisions into [`ModelPartial`]s for the monitor stage.
//!
//! A busy model must not cost one message per outcome, so a join task folds its
//! [`JoinEvent`]s into one accumulator per (model version, time bucket) and flushes them as
//! `ModelPartial` records. Events are bucketed by prediction time (matched, expired,
//! duplicate prediction) or by label time when there is no prediction to go by (orphan, late,
//! duplicate label, and rejected inputs by their own time).
//!
//! Every input ends in exactly one event, so counting from events alone keeps each partial's
//! counters consistent with the join accounting: inputs are counted when they resolve.
//! Predictions taken in are also counted when they arrive ([`JoinEvent::Received`], by
//! prediction time, in `received_predictions`), so a bucket tells how many predictions it
//! has, resolved or not. A classifier's received prediction that carries a score adds it to
//! `received_score_sum` (and `received_scored`); a scored outcome adds the same score to
//! `scored_score_sum` (and `scored_correct` when right). The difference of the two sums is the
//! score mass of the predictions still without a label: the accuracy estimate of the
//! monitor's metrics (see `monitor::metrics`).
//!
//! Partials of the same (model, version, bucket) form a commutative monoid under
//! [`merge_partials`], with [`empty_partial`] as identity: counters and sums add, confusion
//! cells add by (predicted, actual). Integer fields merge exactly; floating-point sums are
//! associative up to rounding. The monitor may therefore merge partials from any task, in
//! any grouping, and get what one task seeing the whole stream would have produced.
//!
//! # Signatures
//! Besides outcomes, the aggregator keeps one [`SignatureSummary`] per (model version, bucket
//! of *prediction* time): the features and outputs of every prediction decoded, labeled or
//! not, so the monitor can see data drift before any label arrives. The join stage feeds it
//! through [`PartialAggregator::signature_mut`] with feature ids from the task's
//! [`FeatureInterner`] ([`PartialAggregator::features_mut`]), so the hot path allocates
//! nothing per feature. On [`flush`](PartialAggregator::flush) each signature is serialized
//! into the `signature` field of the partial of the same (model, version, bucket), a partial
//! with zero counters being emitted when no join event fell in that bucket yet, and reset.
//! [`merge_partials`] merges signatures by decoding, merging and re-encoding them, `None`
//! being the identity; a merged signature equals the whole stream's up to the sketches'
//! error bounds (see [`crate::summary`]), not byte for byte.

use std::collections::BTreeMap;

use super::{Actual, ClassId, Interner, JoinEvent, Match, ModelVersionId, Predicted};
use crate::summary::{FeatureInterner, SignatureSummary, SummaryError};
use crate::{
    ClassScores, ConfusionCell, JoinCounters, ModelPartial, Prediction, RegressionSums, TimestampMs,
};

/// Default bucket width: one minute.
pub const DEFAULT_BUCKET_WIDTH_MS: i64 = 60_000;

/// `source_partition` of a partial merged from partials of different partitions.
pub const MIXED_PARTITION: i32 = -1;

/// Scores are clamped into `[EPS, 1 − EPS]` before taking logarithms.
const EPS: f64 = 1e-15;

/// Why two partials could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartialMergeError {
    #[error("partials of different keys: {left} vs {right}")]
    DifferentKeys { left: String, right: String },
    #[error("bucket width must be positive (got {0} ms)")]
    InvalidBucketWidth(i64),
    #[error("signature of {key}: {source}")]
    Signature { key: String, source: SummaryError },
}

#[derive(Debug, Clone, Default)]
struct Acc {
    counters: JoinCounters,
    confusion: BTreeMap<(ClassId, ClassId), u64>,
    regression: RegressionSums,
    log_loss_sum: f64,
    brier_sum: f64,
    scored: u64,
    label_delay_sum_ms: i64,
    received_scored: u64,
    received_score_sum: f64,
    scored_score_sum: f64,
    scored_correct: u64,
    /// Per predicted class: (received scored, their score sum, scored outcomes, their sum).
    class_scores: BTreeMap<ClassId, (u64, f64, u64, f64)>,
}

impl Acc {
    fn add_outcome(&mut self, o: &Match) {
        self.label_delay_sum_ms = self.label_delay_sum_ms.saturating_add(o.label_delay_ms);
        match (o.predicted, o.actual) {
            (Predicted::Class(p), Actual::Class(a)) => {
                *self.confusion.entry((p, a)).or_insert(0) += 1;
                if let Some(score) = o.score.map(f64::from).filter(|s| s.is_finite()) {
                    let s = score.clamp(EPS, 1.0 - EPS);
                    let correct = p == a;
                    self.log_loss_sum += if correct { -s.ln() } else { -(1.0 - s).ln() };
                    let target = if correct { 1.0 } else { 0.0 };
                    self.brier_sum += (s - target) * (s - target);
                    self.scored += 1;
                    self.scored_score_sum += score.clamp(0.0, 1.0);
                    self.scored_correct += u64::from(correct);
                    let c = self.class_scores.entry(p).or_default();
                    c.2 += 1;
                    c.3 += score.clamp(0.0, 1.0);
                }
            }
            (Predicted::Value(p), Actual::Value(a)) if p.is_finite() && a.is_finite() => {
                let r = &mut self.regression;
                let err = p - a;
                r.count += 1;
                r.abs_error_sum += err.abs();
                r.squared_error_sum += err * err;
                r.error_sum += err;
                if a != 0.0 {
                    r.abs_pct_error_sum += err.abs() / a.abs();
                    r.pct_count += 1;
                }
            }
            _ => {}
        }
    }
}

/// (model version, bucket start, epoch start).
type AccKey = (ModelVersionId, TimestampMs, TimestampMs);

/// Folds join events into per-(model, bucket, epoch) partials. One per join task.
///
/// # Epochs
/// Besides its bucket (by prediction time), every change is dated by when, in event time, the
/// join made it: a prediction at its own time, a match at the later of prediction and label
/// time, a duplicate or late label at the label's time — never before the watermark announced
/// with the previous [`flush`](Self::flush) (an expiry, say, is dated by that). Changes are
/// kept apart by the epoch (one bucket width) of that date, and each partial carries its epoch.
/// The task announces its watermark with every flush; everything it emits afterwards lies in
/// a later epoch. So the monitor, applying an epoch once every task's announced watermark
/// passed its end, sees exactly the changes dated before that end, however the work was split
/// into flushes (by wall-clock time, batch sizes, restarts) — the basis of its event-time
/// verdicts. For input in event-time order a change's date depends on the data alone.
#[derive(Debug, Clone)]
pub struct PartialAggregator {
    source_partition: i32,
    bucket_width_ms: i64,
    next_sequence: u64,
    /// The watermark announced with the last flush: no change made since is dated before it.
    announced: TimestampMs,
    accs: BTreeMap<AccKey, Acc>,
    /// Feature names of this task's predictions, shared by all its signatures.
    features: FeatureInterner,
    signatures: BTreeMap<AccKey, SignatureSummary>,
    /// Signatures that could not be serialized at a flush (dropped).
    signature_errors: u64,
}

impl PartialAggregator {
    /// An aggregator for the task of `source_partition`. `bucket_width_ms` must be positive.
    pub fn new(source_partition: i32, bucket_width_ms: i64) -> Result<Self, PartialMergeError> {
        if bucket_width_ms <= 0 {
            return Err(PartialMergeError::InvalidBucketWidth(bucket_width_ms));
        }
        Ok(PartialAggregator {
            source_partition,
            bucket_width_ms,
            next_sequence: 0,
            announced: TimestampMs::MIN,
            accs: BTreeMap::new(),
            features: FeatureInterner::new(),
            signatures: BTreeMap::new(),
            signature_errors: 0,
        })
    }

    /// Starts this task's sequence numbers at `first`. The monitor drops a partial whose
    /// (source partition, sequence) it already merged into the same bucket, so a new task for a
    /// partition (after a rebalance or a restart) must not reuse its predecessor's numbers: the
    /// worker starts each task at a value derived from its creation time.
    pub fn starting_sequence_at(mut self, first: u64) -> Self {
        self.next_sequence = first;
        self
    }

    /// Dates no change before `watermark`: for a task restored at that watermark, whose
    /// predecessor may have announced it.
    pub fn announced_at(mut self, watermark: TimestampMs) -> Self {
        self.announced = watermark;
        self
    }

    /// Start of the epoch of a change made at `t` (see the type docs).
    #[inline]
    fn epoch_of(&self, t: TimestampMs) -> TimestampMs {
        self.bucket_start(t.max(self.announced))
    }

    /// The task's feature-name interner: ids for [`SignatureSummary`] updates.
    pub fn features_mut(&mut self) -> &mut FeatureInterner {
        &mut self.features
    }

    /// The task's feature-name interner.
    pub fn features(&self) -> &FeatureInterner {
        &self.features
    }

    /// The signature of `model`'s bucket holding prediction time `t`, created empty if new.
    /// Feature ids given to it must come from [`features_mut`](Self::features_mut).
    #[inline]
    pub fn signature_mut(
        &mut self,
        model: ModelVersionId,
        t: TimestampMs,
    ) -> &mut SignatureSummary {
        let key = (model, self.bucket_start(t), self.epoch_of(t));
        self.signatures.entry(key).or_default()
    }

    /// Adds an owned prediction (the JSON path) to its signature.
    pub fn record_prediction(
        &mut self,
        model: ModelVersionId,
        p: &Prediction,
    ) -> Result<(), SummaryError> {
        let key = (
            model,
            self.bucket_start(p.timestamp),
            self.epoch_of(p.timestamp),
        );
        let sig = self.signatures.entry(key).or_default();
        sig.update_prediction(&mut self.features, p)
    }

    /// Signatures dropped because they could not be serialized.
    pub fn signature_errors(&self) -> u64 {
        self.signature_errors
    }

    /// Start of the bucket holding `t`.
    pub fn bucket_start(&self, t: TimestampMs) -> TimestampMs {
        t.div_euclid(self.bucket_width_ms) * self.bucket_width_ms
    }

    /// Number of (model, bucket) accumulators and signatures not flushed yet (a key with both
    /// counts once).
    pub fn pending(&self) -> usize {
        self.accs.len()
            + self
                .signatures
                .keys()
                .filter(|k| !self.accs.contains_key(k))
                .count()
    }

    /// Adds one join event.
    pub fn fold(&mut self, event: &JoinEvent) {
        let time = match event {
            JoinEvent::Matched(o) => o.prediction_time,
            JoinEvent::Received {
                prediction_time, ..
            }
            | JoinEvent::ExpiredUnlabeled {
                prediction_time, ..
            }
            | JoinEvent::DuplicatePrediction {
                prediction_time, ..
            } => *prediction_time,
            JoinEvent::Orphan { label_time, .. }
            | JoinEvent::DuplicateLabel { label_time, .. }
            | JoinEvent::LateLabel { label_time, .. } => *label_time,
            JoinEvent::Misrouted { time, .. } | JoinEvent::Rejected { time, .. } => *time,
        };
        // When the change happened: a match once both records were in, anything else at the
        // time it is bucketed by.
        let made_at = match event {
            JoinEvent::Matched(o) => o.prediction_time.max(o.label_time),
            _ => time,
        };
        let key = (
            event.model(),
            self.bucket_start(time),
            self.epoch_of(made_at),
        );
        let acc = self.accs.entry(key).or_default();
        event.count_into(&mut acc.counters);
        match event {
            JoinEvent::Matched(o) => acc.add_outcome(o),
            JoinEvent::Received {
                score: Some(score),
                class,
                ..
            } if score.is_finite() => {
                let s = f64::from(*score).clamp(0.0, 1.0);
                acc.received_scored += 1;
                acc.received_score_sum += s;
                if let Some(class) = class {
                    let c = acc.class_scores.entry(*class).or_default();
                    c.0 += 1;
                    c.1 += s;
                }
            }
            _ => {}
        }
    }

    /// Emits everything folded since the last flush, ordered by (model id, bucket, epoch), each
    /// with the next sequence number of this task, and announces `watermark` (the task's): what
    /// is folded from now on is dated no earlier. Names come from `interner`; an id it does not
    /// know is written as `#<id>`.
    /// Each pending signature is serialized into the partial of its key (one with zero
    /// counters when no event fell there) and reset. [`take`](Self::take) and
    /// [`UnfinishedPartials::finish`] in one step.
    pub fn flush(&mut self, interner: &Interner, watermark: TimestampMs) -> Vec<ModelPartial> {
        let (out, errors) = self.take(interner, watermark).finish();
        self.signature_errors += errors;
        out
    }

    /// The cheap half of [`flush`](Self::flush): takes what was folded, numbers it and names
    /// it, and leaves the signatures to be folded and serialized by
    /// [`UnfinishedPartials::finish`], which may run on another thread (the stage's loop
    /// does not wait for that work). The result is the same as `flush`'s, except that
    /// signature errors are counted by `finish`, not here.
    pub fn take(&mut self, interner: &Interner, watermark: TimestampMs) -> UnfinishedPartials {
        self.announced = self.announced.max(watermark);
        let mut accs = std::mem::take(&mut self.accs);
        let mut signatures = std::mem::take(&mut self.signatures);
        for key in signatures.keys() {
            accs.entry(*key).or_default();
        }
        let mut partials = Vec::with_capacity(accs.len());
        for ((model, bucket_start, epoch_start), acc) in accs {
            let signature = signatures.remove(&(model, bucket_start, epoch_start));
            let (model_id, model_version) = interner
                .model(model)
                .map(|(m, v)| (m.to_owned(), v.to_owned()))
                .unwrap_or_else(|| (format!("#{}", model.0), String::new()));
            let class = |c: ClassId| {
                interner
                    .class(c)
                    .map_or_else(|| format!("#{}", c.0), str::to_owned)
            };
            let mut cells: BTreeMap<(String, String), u64> = BTreeMap::new();
            for ((p, a), n) in acc.confusion {
                *cells.entry((class(p), class(a))).or_insert(0) += n;
            }
            let mut class_scores: BTreeMap<String, ClassScores> = BTreeMap::new();
            for (c, (received_scored, received_score_sum, scored, scored_score_sum)) in
                acc.class_scores
            {
                let name = class(c);
                class_scores
                    .entry(name.clone())
                    .or_default()
                    .add(&ClassScores {
                        class: name,
                        received_scored,
                        received_score_sum,
                        scored,
                        scored_score_sum,
                    });
            }
            let partial = ModelPartial {
                model_id,
                model_version,
                bucket_start,
                bucket_width_ms: self.bucket_width_ms,
                source_partition: self.source_partition,
                sequence: self.next_sequence,
                counters: acc.counters,
                confusion: cells_to_vec(cells),
                regression: acc.regression,
                log_loss_sum: acc.log_loss_sum,
                brier_sum: acc.brier_sum,
                scored: acc.scored,
                label_delay_sum_ms: acc.label_delay_sum_ms,
                signature: None,
                epoch_start: Some(epoch_start),
                received_scored: acc.received_scored,
                received_score_sum: acc.received_score_sum,
                scored_score_sum: acc.scored_score_sum,
                scored_correct: acc.scored_correct,
                class_scores: class_scores
                    .into_iter()
                    .map(|(class, mut c)| {
                        c.class = class;
                        c
                    })
                    .collect(),
            };
            partials.push((partial, signature));
            self.next_sequence += 1;
        }
        // Names only grow: a copy as of now resolves every id the signatures use.
        let features = partials
            .iter()
            .any(|(_, s)| s.is_some())
            .then(|| self.features.clone());
        UnfinishedPartials { partials, features }
    }
}

/// Partials taken from a [`PartialAggregator`] whose signatures are still to be folded and
/// serialized ([`finish`](Self::finish)).
#[derive(Debug, Clone)]
pub struct UnfinishedPartials {
    partials: Vec<(ModelPartial, Option<SignatureSummary>)>,
    /// The task's feature names when a signature is pending.
    features: Option<FeatureInterner>,
}

impl UnfinishedPartials {
    /// Number of partials.
    pub fn len(&self) -> usize {
        self.partials.len()
    }

    /// True when there is no partial.
    pub fn is_empty(&self) -> bool {
        self.partials.is_empty()
    }

    /// The partials with their signatures folded and serialized, and how many signatures
    /// could not be serialized (only a feature id unknown to the interner or a sketch over
    /// 4 GiB; the counters still go out).
    pub fn finish(self) -> (Vec<ModelPartial>, u64) {
        let mut errors = 0;
        let features = self.features;
        let out = self
            .partials
            .into_iter()
            .map(|(mut partial, signature)| {
                if let (Some(mut sig), Some(features)) = (signature, features.as_ref()) {
                    sig.flush();
                    match sig.to_bytes(features) {
                        Ok(bytes) => partial.signature = Some(bytes),
                        Err(_) => errors += 1,
                    }
                }
                partial
            })
            .collect();
        (out, errors)
    }
}

fn cells_to_vec(cells: BTreeMap<(String, String), u64>) -> Vec<ConfusionCell> {
    cells
        .into_iter()
        .map(|((predicted, actual), count)| ConfusionCell {
            predicted,
            actual,
            count,
        })
        .collect()
}

/// The identity of [`merge_partials`] for one key: no counts, no sums, sequence 0.
pub fn empty_partial(
    model_id: &str,
    model_version: &str,
    bucket_start: TimestampMs,
    bucket_width_ms: i64,
    source_partition: i32,
) -> ModelPartial {
    ModelPartial {
        model_id: model_id.to_owned(),
        model_version: model_version.to_owned(),
        bucket_start,
        bucket_width_ms,
        source_partition,
        sequence: 0,
        counters: JoinCounters::default(),
        confusion: Vec::new(),
        regression: RegressionSums::default(),
        log_loss_sum: 0.0,
        brier_sum: 0.0,
        scored: 0,
        label_delay_sum_ms: 0,
        signature: None,
        epoch_start: None,
        received_scored: 0,
        received_score_sum: 0.0,
        scored_score_sum: 0.0,
        scored_correct: 0,
        class_scores: Vec::new(),
    }
}

/// Merges two partials of the same (model, version, bucket start, bucket width).
///
/// Counters, sums and confusion cells add; `sequence` is the larger one; `source_partition`
/// is kept when both agree and becomes [`MIXED_PARTITION`] otherwise. The result's confusion
/// cells are sorted by (predicted, actual) with one cell per pair, the form
/// [`PartialAggregator::flush`] produces. Signatures merge as sketches (`None` is the
/// identity and leaves the other side's bytes untouched); a malformed one is an error.
pub fn merge_partials(
    a: &ModelPartial,
    b: &ModelPartial,
) -> Result<ModelPartial, PartialMergeError> {
    let key = |p: &ModelPartial| {
        format!(
            "{}/{}@{}+{}",
            p.model_id, p.model_version, p.bucket_start, p.bucket_width_ms
        )
    };
    if a.model_id != b.model_id
        || a.model_version != b.model_version
        || a.bucket_start != b.bucket_start
        || a.bucket_width_ms != b.bucket_width_ms
    {
        return Err(PartialMergeError::DifferentKeys {
            left: key(a),
            right: key(b),
        });
    }
    let mut cells: BTreeMap<(String, String), u64> = BTreeMap::new();
    for c in a.confusion.iter().chain(&b.confusion) {
        *cells
            .entry((c.predicted.clone(), c.actual.clone()))
            .or_insert(0) += c.count;
    }
    let signature =
        merge_signatures(a.signature.as_deref(), b.signature.as_deref()).map_err(|source| {
            PartialMergeError::Signature {
                key: key(a),
                source,
            }
        })?;
    Ok(ModelPartial {
        model_id: a.model_id.clone(),
        model_version: a.model_version.clone(),
        bucket_start: a.bucket_start,
        bucket_width_ms: a.bucket_width_ms,
        source_partition: if a.source_partition == b.source_partition {
            a.source_partition
        } else {
            MIXED_PARTITION
        },
        sequence: a.sequence.max(b.sequence),
        counters: a.counters.merged(&b.counters),
        confusion: cells_to_vec(cells),
        regression: a.regression.merged(&b.regression),
        log_loss_sum: a.log_loss_sum + b.log_loss_sum,
        brier_sum: a.brier_sum + b.brier_sum,
        scored: a.scored.saturating_add(b.scored),
        label_delay_sum_ms: a.label_delay_sum_ms.saturating_add(b.label_delay_sum_ms),
        signature,
        // A merged partial holds the changes of both epochs; the later one is when all of them
        // had happened.
        epoch_start: a.epoch_start.max(b.epoch_start),
        received_scored: a.received_scored.saturating_add(b.received_scored),
        received_score_sum: a.received_score_sum + b.received_score_sum,
        scored_score_sum: a.scored_score_sum + b.scored_score_sum,
        scored_correct: a.scored_correct.saturating_add(b.scored_correct),
        class_scores: merge_class_scores(&a.class_scores, &b.class_scores),
    })
}

/// Merges two lists of per-class score sums (each sorted by class), sorted by class.
pub fn merge_class_scores(a: &[ClassScores], b: &[ClassScores]) -> Vec<ClassScores> {
    let mut by_class: BTreeMap<&str, ClassScores> = BTreeMap::new();
    for c in a.iter().chain(b) {
        by_class
            .entry(&c.class)
            .or_insert_with(|| ClassScores {
                class: c.class.clone(),
                ..ClassScores::default()
            })
            .add(c);
    }
    by_class.into_values().collect()
}

/// Merges two serialized signatures; `None` is the identity.
pub fn merge_signatures(
    a: Option<&[u8]>,
    b: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, SummaryError> {
    match (a, b) {
        (None, None) => Ok(None),
        (Some(x), None) | (None, Some(x)) => Ok(Some(x.to_vec())),
        (Some(x), Some(y)) => {
            // A private interner: names are spelled out in the bytes, ids are local.
            let mut names = FeatureInterner::with_limit(usize::from(u16::MAX) + 1);
            let mut merged = SignatureSummary::from_bytes(x, &mut names)?;
            merged.merge(&SignatureSummary::from_bytes(y, &mut names)?);
            merged.flush();
            merged.to_bytes(&names).map(Some)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
