//! Owned input records as the join takes them: the join stage's own intake rules
//! ([`crate::join::intake`]) on the owned records a history file holds, without the wall clock
//! (a replay has no "ahead of the clock" check, so processing time is taken as the end of
//! time).
//!
//! A refused record is counted as rejected and goes no further.

use crate::join::intake::{self, IntakeRules, LabelFields, PredictionFields, Rejection};
use crate::join::{JoinTask, LabelIn, ModelVersionId, PredictionIn};
use crate::{GroundTruth, Prediction, TimestampMs};

/// The rules a replay applies: the join stage's, with no clock to be ahead of.
const RULES: IntakeRules = IntakeRules {
    max_future_skew_ms: 0,
};
const NO_CLOCK: TimestampMs = TimestampMs::MAX;

/// The join input of a prediction, and the model version it was interned as.
pub fn prediction_in(
    task: &mut JoinTask,
    p: &Prediction,
) -> Result<(PredictionIn, ModelVersionId), Rejection> {
    let fields = PredictionFields::from(p);
    RULES.check_prediction(&fields, NO_CLOCK)?;
    let input = intake::prediction_in(task, &fields)?;
    Ok((input, input.model))
}

/// The join input of a label.
pub fn label_in(task: &mut JoinTask, l: &GroundTruth) -> Result<LabelIn, Rejection> {
    let fields = LabelFields::from(l);
    RULES.check_label(&fields, NO_CLOCK)?;
    intake::label_in(task, &fields)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::join::intake::RejectionKind;
    use crate::join::{Actual, JoinConfig, Predicted};

    fn prediction() -> Prediction {
        Prediction {
            request_id: "r1".into(),
            model_id: "m".into(),
            model_version: "v1".into(),
            timestamp: 1_000,
            features: vec![],
            predicted_label: Some("yes".into()),
            predicted_value: None,
            scores: Some(vec![("no".into(), 0.2), ("yes".into(), 0.8)]),
            tags: vec![],
        }
    }

    #[test]
    fn records_map_as_the_join_stage_maps_them() {
        let mut task = JoinTask::new(JoinConfig::default()).unwrap();
        let (p, model) = prediction_in(&mut task, &prediction()).unwrap();
        assert_eq!(task.interner().model(model), Some(("m", "v1")));
        assert_eq!(p.score, Some(0.8));
        assert!(matches!(p.predicted, Predicted::Class(_)));
        let regression = Prediction {
            predicted_label: None,
            predicted_value: Some(2.5),
            ..prediction()
        };
        assert_eq!(
            prediction_in(&mut task, &regression).unwrap().0.predicted,
            Predicted::Value(2.5)
        );
        let l = GroundTruth {
            request_id: "r1".into(),
            model_id: Some("m".into()),
            timestamp: 2_000,
            label: Some("yes".into()),
            value: None,
        };
        let li = label_in(&mut task, &l).unwrap();
        assert_eq!(li.actual, Actual::Class(task.intern_class("yes").unwrap()));
        assert!(li.model_hint.is_some());
    }

    #[test]
    fn empty_request_ids_and_negative_times_are_refused() {
        let mut task = JoinTask::new(JoinConfig::default()).unwrap();
        let empty = Prediction {
            request_id: String::new(),
            ..prediction()
        };
        assert_eq!(
            prediction_in(&mut task, &empty).unwrap_err().kind,
            RejectionKind::MissingRequestId
        );
        let early = Prediction {
            timestamp: -1,
            ..prediction()
        };
        assert_eq!(
            prediction_in(&mut task, &early).unwrap_err().kind,
            RejectionKind::AbsurdTimestamp
        );
        let l = GroundTruth {
            request_id: String::new(),
            model_id: None,
            timestamp: 0,
            label: None,
            value: None,
        };
        assert_eq!(
            label_in(&mut task, &l).unwrap_err().kind,
            RejectionKind::MissingRequestId
        );
    }
}
