//! The join buffer: one 16-byte slot per unresolved or recently resolved request.
//!
//! # Layout
//! `hashbrown::HashMap<RequestKey, Slot, KeyHashBuilder>`: a bucket is the 16-byte key plus
//! the 16-byte [`Slot`] plus one control byte. With hashbrown's 7/8 maximum load and
//! power-of-two bucket counts, 10M entries sit in 2^24 buckets: 2^24 × 33 B ≈ 554 MB, about
//! 55 B per entry (between 38 and 66 B depending on where in the growth cycle the count is).
//!
//! A slot holds:
//! - `time`: event time as a `u32` ms offset from a per-buffer epoch (≈ 49.7 days of range).
//!   The epoch is anchored [`EPOCH_HEADROOM_MS`] before the first entry of an empty buffer and
//!   moved forward during sweeps to stay about that far behind the watermark (every retained
//!   entry is younger than [`MAX_RETENTION_MS`](super::MAX_RETENTION_MS), so the rebase never
//!   underflows). A time outside the range is rejected ([`JoinError::TimeOutOfRange`]); the
//!   caller dead-letters it as an absurd timestamp.
//! - `model`: the [`ModelVersionId`].
//! - `flags`: kind (pending prediction / pending label / tombstone), payload kind, whether a
//!   score is present, and for tombstones which inputs were seen.
//! - `payload`: the predicted/actual value (`f64` bits) or class id (low 32 bits) with the
//!   score (`f32` bits, high 32 bits). A regressor's score is not kept (scores are class
//!   probabilities).
//!
//! # Tombstones
//! A resolved request leaves a tombstone so that a second prediction or label is recognised
//! as a duplicate or late instead of starting a new request. Its base time is the
//! prediction's time (the label's for an orphan) and it is kept until the watermark passes
//! `base + label_timeout + orphan_timeout`: any label that could still match had to arrive
//! before `prediction_time + label_timeout`, and a label arriving later would, without the
//! tombstone, sit as pending for `orphan_timeout` and end as an orphan; keeping the tombstone
//! for that extra `orphan_timeout` lets it be counted late instead. Past that point a record
//! with the same key is far enough behind the watermark to be classified on arrival.
//!
//! # Expiry
//! No timer per entry (that would double the memory). [`JoinBuffer::advance_watermark`] runs
//! a `retain` sweep whenever the watermark moved by the sweep interval (1/8 of the smallest
//! timeout). Between sweeps every lookup first applies the expiry the sweep would have
//! applied (check-on-access), so when the sweep runs never changes a classification.
//!
//! # Memory budget
//! Optionally the buffer keeps only a bounded number of entries in its table and the rest in
//! a [`ColdTier`] (on disk in the worker), oldest by event time first; see [`tiers`] for the
//! rules, which leave every classification as it is without one.

use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use super::KeyHashBuilder;
use super::{JoinError, JoinEvent, LabelIn, Match, ModelVersionId, PredictionIn, RequestKey};
use crate::TimestampMs;

pub mod cold;
mod params;
pub mod seal;
mod slot;
pub mod tiers;

pub use cold::{ColdError, ColdTier, MemoryColdTier};
use params::Params;
pub use seal::{ColdState, StoreCheckpoint};
pub use slot::Slot;
use slot::{KIND_LABEL, KIND_MASK, KIND_PREDICTION, KIND_TOMBSTONE, SEEN_LABEL, SEEN_PREDICTION};
pub use tiers::hot_capacity_for_budget;

/// How far behind the watermark (or the first entry) the epoch is kept: half the `u32` range.
pub const EPOCH_HEADROOM_MS: i64 = 1 << 31;

/// The epoch is moved only when it lags the target by more than this (≈ 3.1 days), so a
/// rebase pass is rare.
const REBASE_STEP_MS: i64 = 1 << 28;

/// Entry counts by kind (an O(n) scan; for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    pub pending_predictions: usize,
    pub pending_labels: usize,
    pub tombstones: usize,
    /// Event time of the oldest pending prediction or label, if any.
    pub oldest_pending: Option<TimestampMs>,
}

/// The join state of one task. See the module docs.
#[derive(Debug)]
pub struct JoinBuffer {
    map: HashMap<RequestKey, Slot, KeyHashBuilder>,
    params: Params,
    sweep_interval: i64,
    last_sweep_watermark: i64,
    /// Entries changed since the last [`take_changes`](Self::take_changes), each with its
    /// state right after the change, when change tracking is on (a changelog writes the
    /// latest state of each at every commit). The state is taken when it changes so that
    /// taking the changes is a swap: the commit that writes them does not hold up the stage.
    changes: Option<Vec<(RequestKey, Option<EntryRecord>)>>,
    /// Where entries beyond the memory budget go; `None`: everything stays in the table.
    cold: Option<tiers::Cold>,
}

/// Entry changes taken from a [`JoinBuffer`], in the order they happened (a key may repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryChanges(Vec<(RequestKey, Option<EntryRecord>)>);

impl EntryChanges {
    /// The latest state of each changed key (`None`: gone), sorted by key.
    pub fn latest(mut self) -> Vec<(RequestKey, Option<EntryRecord>)> {
        self.settle();
        self.0
    }

    /// Keeps only the latest state of each changed key, sorted by key; settling again changes
    /// nothing, so a commit retried in a new transaction writes the same records.
    pub fn settle(&mut self) {
        // A stable sort keeps each key's changes in order: the last of a run is the latest.
        self.0.sort_by_key(|(k, _)| *k);
        let mut kept = 0;
        for i in 0..self.0.len() {
            if kept > 0 && self.0[kept - 1].0 == self.0[i].0 {
                self.0[kept - 1].1 = self.0[i].1;
            } else {
                self.0.swap(kept, i);
                kept += 1;
            }
        }
        self.0.truncate(kept);
    }

    /// The changes as they stand (settled: each key once, sorted).
    pub fn settled(&self) -> &[(RequestKey, Option<EntryRecord>)] {
        &self.0
    }
}

/// A buffer entry as a changelog stores it: the event time is absolute, so an entry restores
/// into a buffer with any epoch. `flags` and `payload` are the [`Slot`] encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRecord {
    pub time: TimestampMs,
    pub model: u16,
    pub flags: u16,
    pub payload: u64,
}

impl EntryRecord {
    /// Whether the flags name a kind of entry the buffer knows.
    pub fn is_valid(&self) -> bool {
        self.flags & KIND_MASK <= KIND_TOMBSTONE
    }
}

impl JoinBuffer {
    /// An empty buffer. `sweep_interval_ms` is clamped to at least 1.
    pub fn new(
        default_label_timeout_ms: i64,
        orphan_timeout_ms: i64,
        sweep_interval_ms: i64,
    ) -> Self {
        Self::with_capacity(
            default_label_timeout_ms,
            orphan_timeout_ms,
            sweep_interval_ms,
            0,
        )
    }

    /// An empty buffer with room for `capacity` entries.
    pub fn with_capacity(
        default_label_timeout_ms: i64,
        orphan_timeout_ms: i64,
        sweep_interval_ms: i64,
        capacity: usize,
    ) -> Self {
        JoinBuffer {
            map: HashMap::with_capacity_and_hasher(capacity, KeyHashBuilder),
            params: Params {
                epoch: 0,
                watermark: i64::MIN,
                default_label_timeout: default_label_timeout_ms,
                orphan_timeout: orphan_timeout_ms,
                label_timeouts: Vec::new(),
            },
            sweep_interval: sweep_interval_ms.max(1),
            last_sweep_watermark: i64::MIN,
            changes: None,
            cold: None,
        }
    }

    /// Turns change tracking on or off (off drops what was tracked).
    pub fn track_changes(&mut self, on: bool) {
        self.changes = on.then(Vec::new);
    }

    /// Entries changed since the previous call, with their state after each change. Empty
    /// when tracking is off.
    pub fn take_changes(&mut self) -> EntryChanges {
        EntryChanges(
            self.changes
                .as_mut()
                .map(std::mem::take)
                .unwrap_or_default(),
        )
    }

    /// Records `key`'s current state (as stored: expiry the watermark implies but no sweep or
    /// lookup applied yet is not applied; a restore applies it on the next access) as a
    /// change, when tracking is on.
    fn record_change(&mut self, key: RequestKey) {
        if let Some(c) = self.changes.as_mut() {
            let state = self.map.get(&key).map(|slot| self.params.record(slot));
            c.push((key, state));
        }
    }

    /// Puts an entry back, as when restoring from a changelog. Restore the watermark first
    /// ([`restore_watermark`](Self::restore_watermark)) so the epoch is anchored on it.
    pub fn restore_entry(&mut self, key: RequestKey, e: EntryRecord) -> Result<(), JoinError> {
        if !e.is_valid() {
            return Err(JoinError::InvalidConfig(format!(
                "restored entry has unknown flags {:#x}",
                e.flags
            )));
        }
        self.anchor_if_empty(e.time);
        let time = self.params.offset(e.time)?;
        self.make_room();
        self.map.insert(
            key,
            Slot {
                time,
                model: e.model,
                flags: e.flags,
                payload: e.payload,
            },
        );
        Ok(())
    }

    /// Sets the watermark of an empty buffer being restored (no expiry runs now; the first
    /// advance after it sweeps, so entries the watermark had already passed are expired then).
    pub fn restore_watermark(&mut self, watermark: TimestampMs) {
        self.params.watermark = watermark;
        self.last_sweep_watermark = i64::MIN;
    }

    /// Sets the label timeout of one model (others keep the default).
    pub fn set_label_timeout(&mut self, model: ModelVersionId, timeout_ms: i64) {
        let i = usize::from(model.0);
        let default = self.params.default_label_timeout;
        if self.params.label_timeouts.len() <= i {
            self.params.label_timeouts.resize(i + 1, default);
        }
        if let Some(t) = self.params.label_timeouts.get_mut(i) {
            *t = timeout_ms;
        }
    }

    /// The label timeout that applies to `model`.
    pub fn label_timeout(&self, model: ModelVersionId) -> i64 {
        self.params.label_timeout(model)
    }

    /// The current watermark (`i64::MIN` before the first advance).
    pub fn watermark(&self) -> TimestampMs {
        self.params.watermark
    }

    /// Number of entries (pending and tombstones), in memory and cold.
    pub fn len(&self) -> usize {
        self.map.len() + self.cold_len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes allocated by the table (buckets and control bytes).
    pub fn allocation_size(&self) -> usize {
        self.map.allocation_size()
    }

    /// Entry counts by kind (scans the table).
    pub fn stats(&self) -> BufferStats {
        let mut s = BufferStats::default();
        let mut oldest = u32::MAX;
        for slot in self.map.values() {
            match slot.kind() {
                KIND_PREDICTION => s.pending_predictions += 1,
                KIND_LABEL => s.pending_labels += 1,
                _ => {
                    s.tombstones += 1;
                    continue;
                }
            }
            oldest = oldest.min(slot.time);
        }
        if oldest != u32::MAX {
            s.oldest_pending = Some(self.params.time(oldest));
        }
        let ([p, l, t], cold_oldest) = self.cold_stats();
        s.pending_predictions += p;
        s.pending_labels += l;
        s.tombstones += t;
        s.oldest_pending = match (s.oldest_pending, cold_oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        s
    }

    /// Anchors the epoch of an empty table so that the watermark (or, before there is one,
    /// `time`) sits in the middle of the range. Anchoring on the watermark keeps a single very
    /// old or very new record from pulling the range away from the live traffic.
    fn anchor_if_empty(&mut self, time: TimestampMs) {
        if self.is_empty() {
            let centre = if self.params.watermark == i64::MIN {
                time
            } else {
                self.params.watermark
            };
            self.params.epoch = centre.saturating_sub(EPOCH_HEADROOM_MS);
        }
    }

    /// Processes one prediction; the decisions go to `sink`.
    pub fn on_prediction(&mut self, p: &PredictionIn, sink: &mut impl FnMut(JoinEvent)) {
        self.anchor_if_empty(p.time);
        self.make_room();
        self.promote(p.key);
        self.apply_prediction(p, sink);
        self.record_change(p.key);
    }

    fn apply_prediction(&mut self, p: &PredictionIn, sink: &mut impl FnMut(JoinEvent)) {
        let params = &self.params;
        match self.map.entry(p.key) {
            Entry::Vacant(v) => {
                if let Some(slot) = params.fresh_prediction(p, sink) {
                    v.insert(slot);
                }
            }
            Entry::Occupied(mut o) => {
                let slot = o.get_mut();
                if !params.expire_slot(p.key, slot, sink) {
                    match params.fresh_prediction(p, sink) {
                        Some(fresh) => *slot = fresh,
                        None => {
                            o.remove();
                        }
                    }
                    return;
                }
                match slot.kind() {
                    KIND_LABEL => {
                        let label_time = params.time(slot.time);
                        let actual = slot.actual();
                        // The tombstone is based on the prediction's time when it fits.
                        let base = params.offset(p.time).unwrap_or(slot.time);
                        if label_time.saturating_sub(p.time) <= params.label_timeout(p.model) {
                            sink(JoinEvent::Matched(Match {
                                key: p.key,
                                model: p.model,
                                prediction_time: p.time,
                                label_time,
                                label_delay_ms: label_time.saturating_sub(p.time),
                                predicted: p.predicted,
                                actual,
                                score: p.score,
                            }));
                        } else {
                            sink(JoinEvent::ExpiredUnlabeled {
                                key: p.key,
                                model: p.model,
                                prediction_time: p.time,
                                predicted: p.predicted,
                                score: p.score,
                            });
                            sink(JoinEvent::LateLabel {
                                key: p.key,
                                model: p.model,
                                label_time,
                                prediction_time: Some(p.time),
                            });
                        }
                        *slot = Slot::tombstone(base, p.model, SEEN_PREDICTION | SEEN_LABEL);
                    }
                    KIND_TOMBSTONE if slot.flags & SEEN_PREDICTION == 0 => {
                        // Its label was already an orphan: this prediction can never match.
                        sink(JoinEvent::ExpiredUnlabeled {
                            key: p.key,
                            model: p.model,
                            prediction_time: p.time,
                            predicted: p.predicted,
                            score: p.score,
                        });
                        slot.flags |= SEEN_PREDICTION;
                    }
                    _ => sink(JoinEvent::DuplicatePrediction {
                        key: p.key,
                        model: p.model,
                        prediction_time: p.time,
                    }),
                }
            }
        }
    }

    /// Processes one label; the decisions go to `sink`.
    pub fn on_label(&mut self, l: &LabelIn, sink: &mut impl FnMut(JoinEvent)) {
        self.anchor_if_empty(l.time);
        self.make_room();
        self.promote(l.key);
        self.apply_label(l, sink);
        self.record_change(l.key);
    }

    fn apply_label(&mut self, l: &LabelIn, sink: &mut impl FnMut(JoinEvent)) {
        let params = &self.params;
        let own_model = l.model_hint.unwrap_or(ModelVersionId::UNKNOWN);
        match self.map.entry(l.key) {
            Entry::Vacant(v) => {
                if let Some(slot) = params.fresh_label(l, sink) {
                    v.insert(slot);
                }
            }
            Entry::Occupied(mut o) => {
                let slot = o.get_mut();
                if !params.expire_slot(l.key, slot, sink) {
                    match params.fresh_label(l, sink) {
                        Some(fresh) => *slot = fresh,
                        None => {
                            o.remove();
                        }
                    }
                    return;
                }
                match slot.kind() {
                    KIND_PREDICTION => {
                        let prediction_time = params.time(slot.time);
                        let model = slot.model();
                        let (predicted, score) = slot.predicted();
                        if l.time.saturating_sub(prediction_time) <= params.label_timeout(model) {
                            sink(JoinEvent::Matched(Match {
                                key: l.key,
                                model,
                                prediction_time,
                                label_time: l.time,
                                label_delay_ms: l.time.saturating_sub(prediction_time),
                                predicted,
                                actual: l.actual,
                                score,
                            }));
                        } else {
                            sink(JoinEvent::ExpiredUnlabeled {
                                key: l.key,
                                model,
                                prediction_time,
                                predicted,
                                score,
                            });
                            sink(JoinEvent::LateLabel {
                                key: l.key,
                                model,
                                label_time: l.time,
                                prediction_time: Some(prediction_time),
                            });
                        }
                        *slot = Slot::tombstone(slot.time, model, SEEN_PREDICTION | SEEN_LABEL);
                    }
                    KIND_TOMBSTONE if slot.flags & SEEN_LABEL == 0 => {
                        // Its prediction already expired.
                        sink(JoinEvent::LateLabel {
                            key: l.key,
                            model: slot.model(),
                            label_time: l.time,
                            prediction_time: Some(params.time(slot.time)),
                        });
                        slot.flags |= SEEN_LABEL;
                    }
                    _ => sink(JoinEvent::DuplicateLabel {
                        key: l.key,
                        model: own_model,
                        label_time: l.time,
                    }),
                }
            }
        }
    }

    /// Moves the watermark forward (never back) and sweeps when it moved by the sweep
    /// interval since the last sweep. Returns whether a sweep ran.
    pub fn advance_watermark(
        &mut self,
        watermark: TimestampMs,
        sink: &mut impl FnMut(JoinEvent),
    ) -> bool {
        if watermark <= self.params.watermark {
            return false;
        }
        self.params.watermark = watermark;
        if watermark.saturating_sub(self.last_sweep_watermark) >= self.sweep_interval {
            self.sweep(sink);
            true
        } else {
            false
        }
    }

    /// Expires everything the watermark has passed, drops stale tombstones, and moves the
    /// epoch forward when it lags the watermark.
    pub fn sweep(&mut self, sink: &mut impl FnMut(JoinEvent)) {
        let params = &self.params;
        let target = params.watermark.saturating_sub(EPOCH_HEADROOM_MS);
        let shift = if target.saturating_sub(params.epoch) > REBASE_STEP_MS {
            target.saturating_sub(params.epoch)
        } else {
            0
        };
        // Rebasing touches every slot anyway, so the quick check only applies without it.
        let thresholds = if shift == 0 {
            params.sweep_thresholds()
        } else {
            None
        };
        let changes = &mut self.changes;
        self.map.retain(|key, slot| {
            if let Some(th) = &thresholds {
                if params.quiet(th, slot) {
                    return true;
                }
            }
            let before = *slot;
            let keep = params.expire_slot(*key, slot, sink);
            if let Some(c) = changes.as_mut() {
                if !keep || *slot != before {
                    c.push((*key, keep.then(|| params.record(slot))));
                }
            }
            if !keep {
                return false;
            }
            if shift > 0 {
                // Retained entries are younger than the maximum retention, hence at or after
                // the new epoch; the clamp only guards against a misconfigured retention.
                let moved = i64::from(slot.time).saturating_sub(shift).max(0);
                slot.time = u32::try_from(moved).unwrap_or(0);
            }
            true
        });
        self.params.epoch = self.params.epoch.saturating_add(shift);
        self.sweep_cold(sink);
        self.last_sweep_watermark = self.params.watermark;
    }

    /// Expires every pending entry (predictions unlabeled, labels orphan) and clears the
    /// buffer, as at shutdown. The watermark is left as it was.
    pub fn expire_all(&mut self, sink: &mut impl FnMut(JoinEvent)) {
        let mut params = self.params.clone();
        params.watermark = i64::MAX;
        for (key, slot) in self.map.iter_mut() {
            params.expire_slot(*key, slot, sink);
            if let Some(c) = self.changes.as_mut() {
                c.push((*key, None));
            }
        }
        self.map.clear();
        self.expire_all_cold(sink);
    }

    /// The epoch times are stored against (for tests and diagnostics).
    pub fn epoch(&self) -> TimestampMs {
        self.params.epoch
    }
}

#[cfg(test)]
mod tests;
