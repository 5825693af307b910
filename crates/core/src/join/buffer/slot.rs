//! [`Slot`]: the 16-byte encoding of one buffer entry (see the buffer's module docs).

use super::super::{Actual, ClassId, ModelVersionId, Predicted, PredictionIn, RequestKey};

pub(super) const KIND_MASK: u16 = 0b11;
pub(super) const KIND_PREDICTION: u16 = 0;
pub(super) const KIND_LABEL: u16 = 1;
pub(super) const KIND_TOMBSTONE: u16 = 2;
pub(super) const VALUE_MASK: u16 = 0b1100;
pub(super) const VALUE_NONE: u16 = 0;
pub(super) const VALUE_CLASS: u16 = 1 << 2;
pub(super) const VALUE_NUMBER: u16 = 2 << 2;
pub(super) const HAS_SCORE: u16 = 1 << 4;
pub(super) const SEEN_PREDICTION: u16 = 1 << 5;
pub(super) const SEEN_LABEL: u16 = 1 << 6;

/// One buffer entry (16 bytes, 8-byte aligned). See the module docs for the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Slot {
    pub(super) time: u32,
    pub(super) model: u16,
    pub(super) flags: u16,
    pub(super) payload: u64,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 16);
const _: () = assert!(std::mem::size_of::<(RequestKey, Slot)>() == 32);

impl Slot {
    pub(super) fn prediction(time: u32, p: &PredictionIn) -> Slot {
        let score_bits = p.score.map_or(0, |s| u64::from(s.to_bits()) << 32);
        let score_flag = if p.score.is_some() { HAS_SCORE } else { 0 };
        let (value_flags, payload) = match p.predicted {
            Predicted::Class(c) => (VALUE_CLASS | score_flag, u64::from(c.0) | score_bits),
            Predicted::Value(v) => (VALUE_NUMBER, v.to_bits()),
            Predicted::None => (VALUE_NONE | score_flag, score_bits),
        };
        Slot {
            time,
            model: p.model.0,
            flags: KIND_PREDICTION | value_flags,
            payload,
        }
    }

    pub(super) fn label(time: u32, model: ModelVersionId, actual: Actual) -> Slot {
        let (value_flags, payload) = match actual {
            Actual::Class(c) => (VALUE_CLASS, u64::from(c.0)),
            Actual::Value(v) => (VALUE_NUMBER, v.to_bits()),
            Actual::None => (VALUE_NONE, 0),
        };
        Slot {
            time,
            model: model.0,
            flags: KIND_LABEL | value_flags,
            payload,
        }
    }

    pub(super) fn tombstone(time: u32, model: ModelVersionId, seen: u16) -> Slot {
        Slot {
            time,
            model: model.0,
            flags: KIND_TOMBSTONE | seen,
            payload: 0,
        }
    }

    pub(super) fn kind(&self) -> u16 {
        self.flags & KIND_MASK
    }

    pub(super) fn model(&self) -> ModelVersionId {
        ModelVersionId(self.model)
    }

    pub(super) fn predicted(&self) -> (Predicted, Option<f32>) {
        let score =
            (self.flags & HAS_SCORE != 0).then(|| f32::from_bits((self.payload >> 32) as u32));
        match self.flags & VALUE_MASK {
            VALUE_CLASS => (Predicted::Class(ClassId(self.payload as u32)), score),
            VALUE_NUMBER => (Predicted::Value(f64::from_bits(self.payload)), None),
            _ => (Predicted::None, score),
        }
    }

    pub(super) fn actual(&self) -> Actual {
        match self.flags & VALUE_MASK {
            VALUE_CLASS => Actual::Class(ClassId(self.payload as u32)),
            VALUE_NUMBER => Actual::Value(f64::from_bits(self.payload)),
            _ => Actual::None,
        }
    }
}
