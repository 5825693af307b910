//! [`Params`]: the buffer's clock and timeouts, and the rules that classify and expire an
//! entry by them. Kept apart from the table so that a table entry's borrow and these rules can
//! be used together.

use super::super::{
    Input, JoinError, JoinEvent, LabelIn, ModelVersionId, PredictionIn, RequestKey,
};
use super::slot::{Slot, KIND_LABEL, KIND_PREDICTION, KIND_TOMBSTONE, SEEN_LABEL, SEEN_PREDICTION};
use super::EntryRecord;
use crate::TimestampMs;

/// Everything but the table, so the table's entry borrow and these can be used together.
#[derive(Debug, Clone)]
pub(super) struct Params {
    pub(super) epoch: i64,
    pub(super) watermark: i64,
    pub(super) default_label_timeout: i64,
    pub(super) orphan_timeout: i64,
    /// Label timeout by `ModelVersionId`; models past its end use the default.
    pub(super) label_timeouts: Vec<i64>,
}

impl Params {
    pub(super) fn label_timeout(&self, model: ModelVersionId) -> i64 {
        self.label_timeouts
            .get(usize::from(model.0))
            .copied()
            .unwrap_or(self.default_label_timeout)
    }

    pub(super) fn time(&self, offset: u32) -> TimestampMs {
        self.epoch.saturating_add(i64::from(offset))
    }

    /// A slot as its changelog stores it (absolute time).
    pub(super) fn record(&self, slot: &Slot) -> EntryRecord {
        EntryRecord {
            time: self.time(slot.time),
            model: slot.model,
            flags: slot.flags,
            payload: slot.payload,
        }
    }

    /// A stored entry back as a slot. The offset is clamped into range: entries kept are
    /// younger than the maximum retention, so only a misconfigured retention could clamp.
    pub(super) fn slot_of(&self, e: &EntryRecord) -> Slot {
        let d = e
            .time
            .saturating_sub(self.epoch)
            .clamp(0, i64::from(u32::MAX));
        Slot {
            time: u32::try_from(d).unwrap_or(0),
            model: e.model,
            flags: e.flags,
            payload: e.payload,
        }
    }

    /// When the watermark passing the entry changes it (see [`expire_slot`](Self::expire_slot)):
    /// the deadline of its current kind. The cold tier orders its entries by it.
    pub(super) fn due(&self, e: &EntryRecord) -> TimestampMs {
        let model = ModelVersionId(e.model);
        let due = match e.flags & super::slot::KIND_MASK {
            KIND_PREDICTION => self.prediction_deadline(e.time, model),
            KIND_LABEL => self.label_deadline(e.time),
            _ => self.tombstone_deadline(e.time, model),
        };
        // Below `i64::MAX`, so that taking everything due before `i64::MAX` drains the tier.
        due.min(i64::MAX - 1)
    }

    pub(super) fn offset(&self, time: TimestampMs) -> Result<u32, JoinError> {
        time.checked_sub(self.epoch)
            .and_then(|d| u32::try_from(d).ok())
            .ok_or(JoinError::TimeOutOfRange {
                time,
                min: self.epoch,
                max: self.epoch.saturating_add(i64::from(u32::MAX)),
            })
    }

    /// True once the watermark has passed `t` (strictly: an entry whose deadline equals the
    /// watermark is still alive).
    pub(super) fn passed(&self, t: i64) -> bool {
        t < self.watermark
    }

    pub(super) fn prediction_deadline(&self, time: i64, model: ModelVersionId) -> i64 {
        time.saturating_add(self.label_timeout(model))
    }

    pub(super) fn label_deadline(&self, time: i64) -> i64 {
        time.saturating_add(self.orphan_timeout)
    }

    pub(super) fn tombstone_deadline(&self, base: i64, model: ModelVersionId) -> i64 {
        base.saturating_add(self.label_timeout(model))
            .saturating_add(self.orphan_timeout)
    }

    /// Applies the expiry the sweep would have applied to `slot` by now. Returns `false` when
    /// the slot is gone entirely (a tombstone past its retention).
    pub(super) fn expire_slot(
        &self,
        key: RequestKey,
        slot: &mut Slot,
        sink: &mut impl FnMut(JoinEvent),
    ) -> bool {
        let time = self.time(slot.time);
        let model = slot.model();
        match slot.kind() {
            KIND_PREDICTION if self.passed(self.prediction_deadline(time, model)) => {
                let (predicted, score) = slot.predicted();
                sink(JoinEvent::ExpiredUnlabeled {
                    key,
                    model,
                    prediction_time: time,
                    predicted,
                    score,
                });
                *slot = Slot::tombstone(slot.time, model, SEEN_PREDICTION);
            }
            KIND_LABEL if self.passed(self.label_deadline(time)) => {
                sink(JoinEvent::Orphan {
                    key,
                    model,
                    label_time: time,
                    actual: slot.actual(),
                });
                *slot = Slot::tombstone(slot.time, model, SEEN_LABEL);
            }
            _ => {}
        }
        !(slot.kind() == KIND_TOMBSTONE && self.passed(self.tombstone_deadline(time, model)))
    }

    /// For a sweep: per slot kind, the smallest time offset at which a slot of a model with
    /// the default label timeout is certainly left alone by [`expire_slot`](Self::expire_slot)
    /// (its deadline, `epoch + offset + timeout(s)`, has not been passed by the watermark).
    ///
    /// Why: in steady state a sweep visits every entry but changes only the few that expired
    /// since the previous one. Comparing the stored `u32` offset with a threshold computed once
    /// per sweep is far cheaper than the full per-slot deadline arithmetic and keeps the scan
    /// memory-bound. `None` when the thresholds could differ from the saturating arithmetic of
    /// `expire_slot` (negative timeouts, or deadlines that could overflow `i64`); the sweep then
    /// checks every slot in full.
    pub(super) fn sweep_thresholds(&self) -> Option<[i64; 4]> {
        let (t, o) = (self.default_label_timeout, self.orphan_timeout);
        if t < 0 || o < 0 {
            return None;
        }
        // The largest deadline any slot can have must be exact (no saturation).
        self.epoch
            .checked_add(i64::from(u32::MAX))?
            .checked_add(t)?
            .checked_add(o)?;
        let w = i128::from(self.watermark);
        let e = i128::from(self.epoch);
        // `offset >= threshold` ⇔ `epoch + offset + d >= watermark` ⇔ deadline not passed.
        // Offsets are `u32`, so clamping to [-1, 2^32] keeps every comparison's outcome.
        let threshold = |d: i64| -> i64 {
            let x = (w - e - i128::from(d)).clamp(-1, i128::from(u32::MAX) + 1);
            i64::try_from(x).unwrap_or(-1)
        };
        let mut out = [-1i64; 4];
        // Index = slot kind; the unused kind 3 keeps -1: `expire_slot` never touches it.
        for (kind, d) in [
            (KIND_PREDICTION, t),
            (KIND_LABEL, o),
            (KIND_TOMBSTONE, t.saturating_add(o)),
        ] {
            if let Some(slot) = out.get_mut(usize::from(kind)) {
                *slot = threshold(d);
            }
        }
        Some(out)
    }

    /// Whether the sweep can keep `slot` unchanged without calling `expire_slot`.
    #[inline]
    pub(super) fn quiet(&self, thresholds: &[i64; 4], slot: &Slot) -> bool {
        // Models with an override (or below one in the table) take the full check.
        usize::from(slot.model) >= self.label_timeouts.len()
            && thresholds
                .get(usize::from(slot.kind()))
                .is_some_and(|&below| i64::from(slot.time) >= below)
    }

    /// A prediction whose key has no live entry: classify or build the slot to store.
    pub(super) fn fresh_prediction(
        &self,
        p: &PredictionIn,
        sink: &mut impl FnMut(JoinEvent),
    ) -> Option<Slot> {
        let expired = |sink: &mut dyn FnMut(JoinEvent)| {
            sink(JoinEvent::ExpiredUnlabeled {
                key: p.key,
                model: p.model,
                prediction_time: p.time,
                predicted: p.predicted,
                score: p.score,
            })
        };
        if self.passed(self.tombstone_deadline(p.time, p.model)) {
            expired(sink);
            return None;
        }
        let offset = match self.offset(p.time) {
            Ok(o) => o,
            Err(error) => {
                sink(JoinEvent::Rejected {
                    input: Input::Predictions,
                    key: p.key,
                    model: p.model,
                    time: p.time,
                    error,
                });
                return None;
            }
        };
        if self.passed(self.prediction_deadline(p.time, p.model)) {
            expired(sink);
            return Some(Slot::tombstone(offset, p.model, SEEN_PREDICTION));
        }
        Some(Slot::prediction(offset, p))
    }

    /// A label whose key has no live entry: classify or build the slot to store.
    pub(super) fn fresh_label(
        &self,
        l: &LabelIn,
        sink: &mut impl FnMut(JoinEvent),
    ) -> Option<Slot> {
        let model = l.model_hint.unwrap_or(ModelVersionId::UNKNOWN);
        let orphan = |sink: &mut dyn FnMut(JoinEvent)| {
            sink(JoinEvent::Orphan {
                key: l.key,
                model,
                label_time: l.time,
                actual: l.actual,
            })
        };
        if self.passed(self.tombstone_deadline(l.time, model)) {
            orphan(sink);
            return None;
        }
        let offset = match self.offset(l.time) {
            Ok(o) => o,
            Err(error) => {
                sink(JoinEvent::Rejected {
                    input: Input::Labels,
                    key: l.key,
                    model,
                    time: l.time,
                    error,
                });
                return None;
            }
        };
        if self.passed(self.label_deadline(l.time)) {
            orphan(sink);
            return Some(Slot::tombstone(offset, model, SEEN_LABEL));
        }
        Some(Slot::label(offset, model, l.actual))
    }
}
