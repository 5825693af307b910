//! Intake rules: when a decoded prediction or label may enter a join task, and its typed form.
//!
//! The worker decodes a record (Avro or JSON) into borrowed fields ([`PredictionFields`],
//! [`LabelFields`]); these rules decide whether the record is usable, and turn it into the
//! compact [`PredictionIn`]/[`LabelIn`] a [`JoinTask`] queues. A record they refuse is
//! dead-lettered by the caller, with the rejection's kind in the `driftwatch.error.kind`
//! header and its message in `driftwatch.error.message`:
//!
//! | rule | kind |
//! |---|---|
//! | the request id is empty (nothing to join on) | `missing_request_id` |
//! | the event time is negative, or more than `max_future_skew_ms` ahead of processing time | `absurd_timestamp` |
//! | the task cannot intern another model version or class label | `id_space_exhausted` |
//!
//! The first two are checked by [`IntakeRules`] without a task: a record of a partition that
//! left this worker meanwhile is still judged the same way (its next owner reads it again).
//! The third, and the typed form, need the task ([`prediction_in`], [`label_in`]), whose
//! interner gives model versions and class labels their small ids.
//!
//! What a prediction predicted becomes [`Predicted`]: its label when it has one (even with a
//! value), else its value, else nothing; a label's truth becomes [`Actual`] the same way.
//!
//! Nothing here allocates unless a record is refused.

use super::{Actual, JoinTask, LabelIn, Predicted, PredictionIn, RequestKey};
use crate::{GroundTruth, Prediction, TimestampMs};

/// A prediction's fields as decoded, borrowed from the payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictionFields<'a> {
    pub request_id: &'a str,
    pub model_id: &'a str,
    pub model_version: &'a str,
    /// Event time (ms since the Unix epoch).
    pub timestamp: TimestampMs,
    pub predicted_label: Option<&'a str>,
    pub predicted_value: Option<f64>,
    /// Score (probability) of the predicted class, when the prediction carries one.
    pub score: Option<f32>,
}

/// A ground-truth label's fields as decoded, borrowed from the payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelFields<'a> {
    pub request_id: &'a str,
    /// The model the label names, if any (labels carry no version).
    pub model_id: Option<&'a str>,
    /// Event time (ms since the Unix epoch).
    pub timestamp: TimestampMs,
    pub label: Option<&'a str>,
    pub value: Option<f64>,
}

impl<'a> From<&'a Prediction> for PredictionFields<'a> {
    /// An owned prediction's fields (the JSON path and offline replays); the score is its
    /// predicted class's entry in `scores`, if any.
    fn from(p: &'a Prediction) -> Self {
        let score = p.predicted_label.as_deref().and_then(|label| {
            p.scores
                .iter()
                .flatten()
                .find(|(class, _)| class == label)
                .map(|&(_, s)| s as f32)
        });
        PredictionFields {
            request_id: &p.request_id,
            model_id: &p.model_id,
            model_version: &p.model_version,
            timestamp: p.timestamp,
            predicted_label: p.predicted_label.as_deref(),
            predicted_value: p.predicted_value,
            score,
        }
    }
}

impl<'a> From<&'a GroundTruth> for LabelFields<'a> {
    fn from(l: &'a GroundTruth) -> Self {
        LabelFields {
            request_id: &l.request_id,
            model_id: l.model_id.as_deref(),
            timestamp: l.timestamp,
            label: l.label.as_deref(),
            value: l.value,
        }
    }
}

/// Why the intake refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The request id is empty.
    MissingRequestId,
    /// The event time is negative or too far ahead of processing time.
    AbsurdTimestamp,
    /// The task's model-version or class-label ids are all taken.
    IdSpaceExhausted,
}

impl RejectionKind {
    /// The stable name of the kind (dead-letter header, log lines).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::MissingRequestId => "missing_request_id",
            RejectionKind::AbsurdTimestamp => "absurd_timestamp",
            RejectionKind::IdSpaceExhausted => "id_space_exhausted",
        }
    }
}

/// A record the intake refused: its kind and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub kind: RejectionKind,
    pub message: String,
}

impl Rejection {
    fn new(kind: RejectionKind, message: impl Into<String>) -> Self {
        Rejection {
            kind,
            message: message.into(),
        }
    }

    fn id_space(e: super::JoinError) -> Self {
        Rejection::new(RejectionKind::IdSpaceExhausted, e.to_string())
    }
}

/// The checks a record passes before it is typed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeRules {
    /// How far (ms) an event time may be ahead of processing time: producers' clocks drift a
    /// little, a timestamp days ahead is a bug that would push the watermark past everything.
    pub max_future_skew_ms: i64,
}

impl IntakeRules {
    /// Checks a prediction's request id and event time at processing time `now_ms`.
    pub fn check_prediction(
        &self,
        p: &PredictionFields<'_>,
        now_ms: TimestampMs,
    ) -> Result<(), Rejection> {
        self.check(p.request_id, p.timestamp, now_ms)
    }

    /// Checks a label's request id and event time at processing time `now_ms`.
    pub fn check_label(&self, l: &LabelFields<'_>, now_ms: TimestampMs) -> Result<(), Rejection> {
        self.check(l.request_id, l.timestamp, now_ms)
    }

    fn check(
        &self,
        request_id: &str,
        t: TimestampMs,
        now_ms: TimestampMs,
    ) -> Result<(), Rejection> {
        if request_id.is_empty() {
            return Err(Rejection::new(
                RejectionKind::MissingRequestId,
                "request_id is empty",
            ));
        }
        let skew = self.max_future_skew_ms;
        if t < 0 || t > now_ms.saturating_add(skew) {
            return Err(Rejection::new(
                RejectionKind::AbsurdTimestamp,
                format!("timestamp {t} ms is negative or more than {skew} ms ahead of the clock"),
            ));
        }
        Ok(())
    }
}

/// The typed form of a checked prediction, its model version and predicted class interned
/// in `task`.
pub fn prediction_in(
    task: &mut JoinTask,
    p: &PredictionFields<'_>,
) -> Result<PredictionIn, Rejection> {
    let model = task
        .intern_model(p.model_id, p.model_version)
        .map_err(Rejection::id_space)?;
    let predicted = match (p.predicted_label, p.predicted_value) {
        (Some(label), _) => {
            Predicted::Class(task.intern_class(label).map_err(Rejection::id_space)?)
        }
        (None, Some(v)) => Predicted::Value(v),
        (None, None) => Predicted::None,
    };
    Ok(PredictionIn {
        key: RequestKey::from_request_id(p.request_id),
        model,
        time: p.timestamp,
        predicted,
        score: p.score,
    })
}

/// The typed form of a checked label, its model hint and true class interned in `task`.
pub fn label_in(task: &mut JoinTask, l: &LabelFields<'_>) -> Result<LabelIn, Rejection> {
    let model_hint = match l.model_id {
        Some(m) => Some(task.intern_model_hint(m).map_err(Rejection::id_space)?),
        None => None,
    };
    let actual = match (l.label, l.value) {
        (Some(label), _) => Actual::Class(task.intern_class(label).map_err(Rejection::id_space)?),
        (None, Some(v)) => Actual::Value(v),
        (None, None) => Actual::None,
    };
    Ok(LabelIn {
        key: RequestKey::from_request_id(l.request_id),
        model_hint,
        time: l.timestamp,
        actual,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::join::JoinConfig;

    const NOW: i64 = 1_700_000_000_000;
    const RULES: IntakeRules = IntakeRules {
        max_future_skew_ms: 60_000,
    };

    fn prediction(request_id: &str, timestamp: i64) -> PredictionFields<'_> {
        PredictionFields {
            request_id,
            model_id: "fraud",
            model_version: "v1",
            timestamp,
            predicted_label: Some("yes"),
            predicted_value: None,
            score: Some(0.75),
        }
    }

    fn label(request_id: &str, timestamp: i64) -> LabelFields<'_> {
        LabelFields {
            request_id,
            model_id: Some("fraud"),
            timestamp,
            label: Some("no"),
            value: None,
        }
    }

    #[test]
    fn an_empty_request_id_is_refused_before_the_time_is_looked_at() {
        let e = RULES
            .check_prediction(&prediction("", -5), NOW)
            .unwrap_err();
        assert_eq!(e.kind, RejectionKind::MissingRequestId);
        assert_eq!(e.kind.as_str(), "missing_request_id");
        assert_eq!(e.message, "request_id is empty");
        let e = RULES.check_label(&label("", NOW), NOW).unwrap_err();
        assert_eq!(e.kind, RejectionKind::MissingRequestId);
    }

    #[test]
    fn times_before_the_epoch_or_beyond_the_skew_are_absurd_and_the_bound_itself_is_not() {
        assert!(RULES.check_prediction(&prediction("r", 0), NOW).is_ok());
        assert!(RULES
            .check_prediction(&prediction("r", NOW + 60_000), NOW)
            .is_ok());
        for t in [-1, NOW + 60_001] {
            let e = RULES.check_label(&label("r", t), NOW).unwrap_err();
            assert_eq!(e.kind.as_str(), "absurd_timestamp");
            assert_eq!(
                e.message,
                format!("timestamp {t} ms is negative or more than 60000 ms ahead of the clock")
            );
        }
        // No overflow when the clock is at the end of time.
        assert!(RULES
            .check_prediction(&prediction("r", i64::MAX), i64::MAX)
            .is_ok());
    }

    #[test]
    fn a_prediction_is_typed_with_its_label_before_its_value() {
        let mut task = JoinTask::new(JoinConfig::default()).unwrap();
        let mut p = prediction("r1", NOW);
        p.predicted_value = Some(3.5);
        let typed = prediction_in(&mut task, &p).unwrap();
        let Predicted::Class(yes) = typed.predicted else {
            panic!("{:?}", typed.predicted)
        };
        assert_eq!(task.interner().class(yes), Some("yes"));
        assert_eq!(typed.key, RequestKey::from_request_id("r1"));
        assert_eq!(typed.time, NOW);
        assert_eq!(typed.score, Some(0.75));
        assert_eq!(task.interner().model(typed.model), Some(("fraud", "v1")));
        p.predicted_label = None;
        assert_eq!(
            prediction_in(&mut task, &p).unwrap().predicted,
            Predicted::Value(3.5)
        );
        p.predicted_value = None;
        assert_eq!(
            prediction_in(&mut task, &p).unwrap().predicted,
            Predicted::None
        );
    }

    #[test]
    fn a_label_is_typed_with_its_model_as_a_hint() {
        let mut task = JoinTask::new(JoinConfig::default()).unwrap();
        let typed = label_in(&mut task, &label("r1", NOW)).unwrap();
        let Actual::Class(no) = typed.actual else {
            panic!("{:?}", typed.actual)
        };
        assert_eq!(task.interner().class(no), Some("no"));
        let hint = typed.model_hint.unwrap();
        assert_eq!(task.interner().model(hint), Some(("fraud", "")));
        let mut l = label("r2", NOW);
        l.model_id = None;
        l.label = None;
        l.value = Some(1.0);
        let typed = label_in(&mut task, &l).unwrap();
        assert_eq!((typed.model_hint, typed.actual), (None, Actual::Value(1.0)));
    }

    #[test]
    fn a_full_interner_is_an_id_space_rejection() {
        let interner = crate::join::Interner::with_limits(2, 1);
        let mut task = JoinTask::with_interner(JoinConfig::default(), interner).unwrap();
        assert!(prediction_in(&mut task, &prediction("r1", NOW)).is_ok());
        let mut other_class = prediction("r2", NOW);
        other_class.predicted_label = Some("no");
        let e = prediction_in(&mut task, &other_class).unwrap_err();
        assert_eq!(e.kind, RejectionKind::IdSpaceExhausted);
        assert!(
            e.message.contains("class id space exhausted"),
            "{}",
            e.message
        );
        let mut other_model = prediction("r3", NOW);
        other_model.model_version = "v2";
        let e = prediction_in(&mut task, &other_model).unwrap_err();
        assert_eq!(e.kind.as_str(), "id_space_exhausted");
        assert!(
            e.message.contains("model/version id space"),
            "{}",
            e.message
        );
    }
}
