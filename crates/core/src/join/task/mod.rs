//! One join task: partition *i* of `predictions` and partition *i* of `ground-truth`.
//!
//! # Merge order
//! Records are queued per input and processed in timestamp order, always taking the smaller
//! head of the two queues (ties: prediction first), as a Kafka Streams task does. When one
//! queue is empty the task goes on with the other only once the empty input is caught up (read
//! to its end), and then after `max_task_idle_ms` more of processing time (0 by default: at
//! once), waiting for producers. An empty input that is not caught up has records on the
//! broker not yet fetched: the task waits for them, however long the fetch takes. This is what
//! keeps one input from running ahead of records still unread on the other, so the order of
//! processing, and with it every outcome, does not depend on how fast either input is fetched
//! (under overload, a bounded wait let the input with the smaller records run ahead by
//! millions, each then an orphan-to-be spilled to disk).
//!
//! # Watermark
//! `progress_i` is the largest event time processed from input *i*. A caught-up input that
//! has received nothing for `idle_timeout_ms` of processing time counts as
//! `max(progress_i, now_ms − idle_timeout_ms)`, so a quiet partition does not hold state
//! forever. The watermark is `max(previous, min(progress_pred, progress_label) −
//! allowed_lateness_ms)`: it never decreases, and it never runs ahead of the slower input.
//! With the minimum, a task catching up on a prediction backlog does not expire predictions
//! whose labels are simply not read yet (see the tests).
//!
//! # Accounting
//! [`JoinCounters`] are kept per [`ModelVersionId`]. An input is counted in `predictions` /
//! `labels` when it reaches its final bucket, so at every moment
//! `predictions == matched + expired_unlabeled + duplicate_predictions + rejected predictions`
//! and `labels == matched + orphan_labels + duplicate_labels + late_labels + rejected labels`
//! per model. Inputs still queued or pending are reported by [`JoinTask::queued`] and
//! [`JoinTask::buffer`]; inputs received at all by [`JoinTask::received`].
//!
//! `received_predictions` is a separate measure: a prediction is counted there when it is
//! processed and taken in (not a duplicate, not rejected), before it resolves, so
//! `received_predictions − matched − expired_unlabeled` is the number of predictions pending.
//! `misrouted_predictions` / `misrouted_labels` are separate measures too: an input the caller
//! marked misrouted ([`JoinTask::mark_misrouted`]) is counted there when processed, whatever
//! its outcome.

use std::collections::VecDeque;

use super::{
    ClassId, Interner, JoinBuffer, JoinConfig, JoinError, JoinEvent, LabelIn, ModelVersionId,
    Predicted, PredictionIn,
};
use crate::{JoinCounters, TimestampMs};

/// One of the task's two inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    Predictions,
    Labels,
}

/// Per-input state of the merge and the watermark.
#[derive(Debug, Clone, Default)]
struct InputState {
    caught_up: bool,
    /// Largest event time processed (`i64::MIN` before the first).
    progress: i64,
    /// Processing time of the last poll that found new records (or of the first poll).
    last_active_ms: Option<i64>,
    /// Records pushed since the last poll.
    fresh: bool,
    received: u64,
}

impl InputState {
    fn new() -> Self {
        InputState {
            progress: i64::MIN,
            ..Self::default()
        }
    }

    /// Progress as the watermark sees it, with the idle fallback.
    fn effective_progress(&self, now_ms: i64, idle_timeout_ms: i64) -> i64 {
        match self.last_active_ms {
            Some(last) if self.caught_up && now_ms.saturating_sub(last) >= idle_timeout_ms => {
                self.progress.max(now_ms.saturating_sub(idle_timeout_ms))
            }
            _ => self.progress,
        }
    }
}

/// The join logic of one task. See the module docs.
#[derive(Debug)]
pub struct JoinTask {
    config: JoinConfig,
    buffer: JoinBuffer,
    interner: Interner,
    counters: Vec<JoinCounters>,
    /// Queued inputs, each with whether it came misrouted (see [`JoinTask::mark_misrouted`]).
    predictions: VecDeque<(PredictionIn, bool)>,
    labels: VecDeque<(LabelIn, bool)>,
    pred_input: InputState,
    label_input: InputState,
    /// Processing time at which the task started waiting for producers on an empty, caught-up
    /// input (`max_task_idle_ms`).
    waiting_since: Option<i64>,
    /// Set by [`JoinTask::drain`] for its last poll: no more records will come.
    draining: bool,
    watermark: i64,
}

impl JoinTask {
    /// A task with a fresh interner. Fails when the configuration does not validate.
    pub fn new(config: JoinConfig) -> Result<Self, JoinError> {
        Self::with_interner(config, Interner::new())
    }

    /// A task using the given interner (e.g. one with smaller id spaces, or restored).
    pub fn with_interner(config: JoinConfig, interner: Interner) -> Result<Self, JoinError> {
        config.validate()?;
        let sweep_interval = (config.min_timeout_ms() / 8).max(1);
        let mut task = JoinTask {
            buffer: JoinBuffer::new(
                config.label_timeout_ms,
                config.orphan_timeout_ms,
                sweep_interval,
            ),
            config,
            interner,
            counters: Vec::new(),
            predictions: VecDeque::new(),
            labels: VecDeque::new(),
            pred_input: InputState::new(),
            label_input: InputState::new(),
            waiting_since: None,
            draining: false,
            watermark: i64::MIN,
        };
        // Models interned before the task existed get their overrides too.
        for i in 0..task.interner.model_count() {
            if let Ok(raw) = u16::try_from(i) {
                task.apply_timeout(ModelVersionId(raw));
            }
        }
        Ok(task)
    }

    fn apply_timeout(&mut self, id: ModelVersionId) {
        if let Some(model_id) = self.interner.model_id(id) {
            let timeout = self.config.label_timeout_for(model_id);
            if timeout != self.config.label_timeout_ms {
                self.buffer.set_label_timeout(id, timeout);
            }
        }
    }

    /// Interns (model id, version), applying its label-timeout override.
    pub fn intern_model(
        &mut self,
        model_id: &str,
        version: &str,
    ) -> Result<ModelVersionId, JoinError> {
        let known = self.interner.model_count();
        let id = self.interner.intern_model(model_id, version)?;
        if self.interner.model_count() > known {
            self.apply_timeout(id);
        }
        Ok(id)
    }

    /// Interns a label's model hint (model id without version).
    pub fn intern_model_hint(&mut self, model_id: &str) -> Result<ModelVersionId, JoinError> {
        self.intern_model(model_id, "")
    }

    /// Interns a class label.
    pub fn intern_class(&mut self, label: &str) -> Result<ClassId, JoinError> {
        self.interner.intern_class(label)
    }

    /// The task's interner (id → names for output).
    pub fn interner(&self) -> &Interner {
        &self.interner
    }

    /// The configuration in force.
    pub fn config(&self) -> &JoinConfig {
        &self.config
    }

    /// The join buffer (pending entries, memory).
    pub fn buffer(&self) -> &JoinBuffer {
        &self.buffer
    }

    /// Queues a prediction.
    pub fn push_prediction(&mut self, p: PredictionIn) {
        self.predictions.push_back((p, false));
        self.pred_input.fresh = true;
        self.pred_input.received += 1;
    }

    /// Queues a label.
    pub fn push_label(&mut self, l: LabelIn) {
        self.labels.push_back((l, false));
        self.label_input.fresh = true;
        self.label_input.received += 1;
    }

    /// Marks the record last queued on `input` as misrouted (the caller's routing check: off
    /// its key's murmur2 partition, or read back from the repartition topic): when the task
    /// processes it, it emits [`JoinEvent::Misrouted`] first. False when that queue is empty.
    pub fn mark_misrouted(&mut self, input: Input) -> bool {
        let flag = match input {
            Input::Predictions => self.predictions.back_mut().map(|(_, m)| m),
            Input::Labels => self.labels.back_mut().map(|(_, m)| m),
        };
        flag.map(|m| *m = true).is_some()
    }

    /// Tells whether an input partition has been read up to its end (position == high
    /// watermark).
    pub fn set_caught_up(&mut self, input: Input, caught_up: bool) {
        let state = self.input_mut(input);
        if caught_up && !state.caught_up {
            // Idle time counts from when the input is known to be caught up again: after an
            // outage (when the caller could not tell), a quiet stretch must be observed anew
            // before processing time may move the watermark.
            state.last_active_ms = None;
        }
        state.caught_up = caught_up;
    }

    fn input_mut(&mut self, input: Input) -> &mut InputState {
        match input {
            Input::Predictions => &mut self.pred_input,
            Input::Labels => &mut self.label_input,
        }
    }

    /// Number of queued (not yet processed) predictions and labels.
    pub fn queued(&self) -> (usize, usize) {
        (self.predictions.len(), self.labels.len())
    }

    /// Number of predictions and labels ever pushed.
    pub fn received(&self) -> (u64, u64) {
        (self.pred_input.received, self.label_input.received)
    }

    /// The current watermark (`i64::MIN` until both inputs made progress).
    pub fn watermark(&self) -> TimestampMs {
        self.watermark
    }

    /// Counters of one model (zero for a model never seen).
    pub fn counters(&self, model: ModelVersionId) -> JoinCounters {
        self.counters
            .get(usize::from(model.0))
            .copied()
            .unwrap_or_default()
    }

    /// All non-empty per-model counters.
    pub fn all_counters(&self) -> impl Iterator<Item = (ModelVersionId, JoinCounters)> + '_ {
        self.counters
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != JoinCounters::default())
            .filter_map(|(i, c)| u16::try_from(i).ok().map(|i| (ModelVersionId(i), *c)))
    }

    /// The sum of all per-model counters.
    pub fn total_counters(&self) -> JoinCounters {
        let mut t = JoinCounters::default();
        for c in &self.counters {
            t.predictions += c.predictions;
            t.labels += c.labels;
            t.matched += c.matched;
            t.expired_unlabeled += c.expired_unlabeled;
            t.orphan_labels += c.orphan_labels;
            t.duplicate_predictions += c.duplicate_predictions;
            t.duplicate_labels += c.duplicate_labels;
            t.late_labels += c.late_labels;
            t.dead_lettered += c.dead_lettered;
            t.received_predictions += c.received_predictions;
            t.misrouted_predictions += c.misrouted_predictions;
            t.misrouted_labels += c.misrouted_labels;
        }
        t
    }

    /// Processes queued records in timestamp order as far as the merge rule allows, advances
    /// the watermark and emits every decision to `sink`.
    pub fn poll(&mut self, now_ms: i64, sink: &mut impl FnMut(JoinEvent)) {
        for input in [&mut self.pred_input, &mut self.label_input] {
            if input.fresh || input.last_active_ms.is_none() {
                input.last_active_ms = Some(now_ms);
                input.fresh = false;
            }
        }
        let counters = &mut self.counters;
        let mut counted = |e: JoinEvent| {
            count(counters, &e);
            sink(e);
        };
        loop {
            let next = match (self.predictions.front(), self.labels.front()) {
                (Some((p, _)), Some((l, _))) => {
                    self.waiting_since = None;
                    if p.time <= l.time {
                        Input::Predictions
                    } else {
                        Input::Labels
                    }
                }
                (Some(_), None) | (None, Some(_)) => {
                    let (empty, other) = if self.predictions.is_empty() {
                        (&self.pred_input, Input::Labels)
                    } else {
                        (&self.label_input, Input::Predictions)
                    };
                    if !empty.caught_up {
                        // Records on the broker not fetched yet: wait for them.
                        self.waiting_since = None;
                        break;
                    }
                    let since = *self.waiting_since.get_or_insert(now_ms);
                    if !self.draining && now_ms.saturating_sub(since) < self.config.max_task_idle_ms
                    {
                        break;
                    }
                    other
                }
                (None, None) => {
                    self.waiting_since = None;
                    break;
                }
            };
            match next {
                Input::Predictions => {
                    if let Some((p, misrouted)) = self.predictions.pop_front() {
                        self.pred_input.progress = self.pred_input.progress.max(p.time);
                        if misrouted {
                            counted(JoinEvent::Misrouted {
                                input: Input::Predictions,
                                model: p.model,
                                time: p.time,
                            });
                        }
                        // Taken in unless it ends as a duplicate or rejected right away (the
                        // buffer only emits events of this request here).
                        let mut taken_in = true;
                        self.buffer.on_prediction(&p, &mut |e: JoinEvent| {
                            if matches!(
                                e,
                                JoinEvent::DuplicatePrediction { .. } | JoinEvent::Rejected { .. }
                            ) {
                                taken_in = false;
                            }
                            counted(e);
                        });
                        if taken_in {
                            counted(JoinEvent::Received {
                                key: p.key,
                                model: p.model,
                                prediction_time: p.time,
                                score: match p.predicted {
                                    Predicted::Class(_) => p.score,
                                    _ => None,
                                },
                                class: match p.predicted {
                                    Predicted::Class(c) => Some(c),
                                    _ => None,
                                },
                            });
                        }
                    }
                }
                Input::Labels => {
                    if let Some((l, misrouted)) = self.labels.pop_front() {
                        self.label_input.progress = self.label_input.progress.max(l.time);
                        if misrouted {
                            counted(JoinEvent::Misrouted {
                                input: Input::Labels,
                                model: l.model_hint.unwrap_or(ModelVersionId::UNKNOWN),
                                time: l.time,
                            });
                        }
                        self.buffer.on_label(&l, &mut counted);
                    }
                }
            }
            Self::update_watermark(
                &self.config,
                &self.pred_input,
                &self.label_input,
                &mut self.watermark,
                &mut self.buffer,
                now_ms,
                &mut counted,
            );
        }
        Self::update_watermark(
            &self.config,
            &self.pred_input,
            &self.label_input,
            &mut self.watermark,
            &mut self.buffer,
            now_ms,
            &mut counted,
        );
    }

    fn update_watermark(
        config: &JoinConfig,
        pred: &InputState,
        label: &InputState,
        watermark: &mut i64,
        buffer: &mut JoinBuffer,
        now_ms: i64,
        sink: &mut impl FnMut(JoinEvent),
    ) {
        let p = pred.effective_progress(now_ms, config.idle_timeout_ms);
        let l = label.effective_progress(now_ms, config.idle_timeout_ms);
        let low = p.min(l);
        if low == i64::MIN {
            return;
        }
        let candidate = low.saturating_sub(config.allowed_lateness_ms);
        if candidate > *watermark {
            *watermark = candidate;
            buffer.advance_watermark(candidate, sink);
        }
    }

    /// Forces the watermark to at least `watermark` and expires what it passed (tests,
    /// operator commands). Never moves it back.
    pub fn advance_to(&mut self, watermark: TimestampMs, sink: &mut impl FnMut(JoinEvent)) {
        let counters = &mut self.counters;
        let mut counted = |e: JoinEvent| {
            count(counters, &e);
            sink(e);
        };
        if watermark > self.watermark {
            self.watermark = watermark;
            if !self.buffer.advance_watermark(watermark, &mut counted) {
                self.buffer.sweep(&mut counted);
            }
        }
    }

    /// Shutdown: processes every queued record in timestamp order without waiting, then
    /// expires everything pending. Afterwards every input received is counted.
    pub fn drain(&mut self, sink: &mut impl FnMut(JoinEvent)) {
        let (pred_caught_up, label_caught_up) =
            (self.pred_input.caught_up, self.label_input.caught_up);
        self.pred_input.caught_up = true;
        self.label_input.caught_up = true;
        self.draining = true;
        // `i64::MIN` as processing time keeps the idle fallback out of the watermark.
        self.poll(i64::MIN, sink);
        self.draining = false;
        self.pred_input.caught_up = pred_caught_up;
        self.label_input.caught_up = label_caught_up;
        let counters = &mut self.counters;
        self.buffer.expire_all(&mut |e: JoinEvent| {
            count(counters, &e);
            sink(e);
        });
    }
}

/// The part of a task's state outside its buffer and interner that a changelog keeps: the
/// watermark and each input's event-time progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCheckpoint {
    pub watermark: TimestampMs,
    pub prediction_progress: TimestampMs,
    pub label_progress: TimestampMs,
}

impl Default for TaskCheckpoint {
    fn default() -> Self {
        TaskCheckpoint {
            watermark: i64::MIN,
            prediction_progress: i64::MIN,
            label_progress: i64::MIN,
        }
    }
}

impl JoinTask {
    /// Watermark and progress, for a changelog.
    pub fn checkpoint(&self) -> TaskCheckpoint {
        TaskCheckpoint {
            watermark: self.watermark,
            prediction_progress: self.pred_input.progress,
            label_progress: self.label_input.progress,
        }
    }

    /// A task rebuilt from a changelog: the interner (ids as they were), the checkpoint, then
    /// the buffer entries. Queues start empty: their records were not committed as processed,
    /// so the consumer reads them again. Counters start at zero (they count this incarnation).
    pub fn restore(
        config: JoinConfig,
        interner: Interner,
        checkpoint: TaskCheckpoint,
        entries: impl IntoIterator<Item = (super::RequestKey, super::EntryRecord)>,
    ) -> Result<Self, JoinError> {
        Self::restore_tiered(config, interner, checkpoint, entries, None)
    }

    /// [`restore`](Self::restore) into a buffer with a cold tier (`(tier, hot_capacity)`, see
    /// [`set_cold_tier`](Self::set_cold_tier)): the entries beyond the hot capacity go cold as
    /// they are restored.
    pub fn restore_tiered(
        config: JoinConfig,
        interner: Interner,
        checkpoint: TaskCheckpoint,
        entries: impl IntoIterator<Item = (super::RequestKey, super::EntryRecord)>,
        cold: Option<(Box<dyn super::ColdTier>, usize)>,
    ) -> Result<Self, JoinError> {
        let mut task = Self::with_interner(config, interner)?;
        if let Some((tier, hot_capacity)) = cold {
            task.set_cold_tier(tier, hot_capacity);
        }
        task.watermark = checkpoint.watermark;
        task.pred_input.progress = checkpoint.prediction_progress;
        task.label_input.progress = checkpoint.label_progress;
        task.buffer.restore_watermark(checkpoint.watermark);
        for (key, entry) in entries {
            task.buffer.restore_entry(key, entry)?;
        }
        Ok(task)
    }

    /// Expires now everything the watermark has passed (a sweep at the current watermark).
    /// Sweeps otherwise run as the watermark moves; what they emit does not depend on when.
    pub fn sweep(&mut self, sink: &mut impl FnMut(JoinEvent)) {
        let counters = &mut self.counters;
        self.buffer.sweep(&mut |e: JoinEvent| {
            count(counters, &e);
            sink(e);
        });
    }

    /// Keeps at most `hot_capacity` buffer entries in memory and the rest in `tier` (see
    /// [`JoinBuffer::set_cold_tier`]). Call on a task before its first input or restore.
    pub fn set_cold_tier(&mut self, tier: Box<dyn super::ColdTier>, hot_capacity: usize) {
        self.buffer.set_cold_tier(tier, hot_capacity);
    }

    /// Changes how many of the buffer's entries stay in memory (see
    /// [`JoinBuffer::set_hot_capacity`]); nothing without a cold tier.
    pub fn set_hot_capacity(&mut self, hot_capacity: usize) {
        self.buffer.set_hot_capacity(hot_capacity);
    }

    /// The first failure of the buffer's cold tier: decisions since then must not be
    /// committed.
    pub fn cold_error(&self) -> Option<&super::ColdError> {
        self.buffer.cold_error()
    }

    /// Turns on change tracking of the buffer (see [`JoinBuffer::take_changes`]).
    pub fn track_changes(&mut self) {
        self.buffer.track_changes(true);
    }

    /// Entries changed since the previous call, with their state after each change.
    pub fn take_changes(&mut self) -> super::EntryChanges {
        self.buffer.take_changes()
    }
}

fn count(counters: &mut Vec<JoinCounters>, event: &JoinEvent) {
    let i = usize::from(event.model().0);
    if counters.len() <= i {
        counters.resize(i + 1, JoinCounters::default());
    }
    if let Some(c) = counters.get_mut(i) {
        event.count_into(c);
    }
}

mod store;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
