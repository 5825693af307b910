//! Owned input records as the join takes them: the join stage's rules for a prediction or a
//! label, without the wall clock (a replay has no "ahead of the clock" check).
//!
//! - an empty request id is refused (the stage dead-letters it, kind `missing_request_id`);
//! - a negative timestamp is refused (the stage's time check refuses it too);
//! - a predicted label makes a class, else a predicted value a value, else nothing usable;
//!   the score is the `scores` entry of the predicted class;
//! - a label's `label` makes a class, else its `value` a value; its model id is a hint.
//!
//! A refused record is counted as rejected and goes no further.

use crate::join::{
    Actual, JoinError, JoinTask, LabelIn, ModelVersionId, Predicted, PredictionIn, RequestKey,
};
use crate::{GroundTruth, Prediction};

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    MissingRequestId,
    NegativeTimestamp,
    /// The join's id spaces (model versions, classes) are full.
    IdSpace(JoinError),
}

/// The join input of a prediction, and the model version it was interned as.
pub fn prediction_in(
    task: &mut JoinTask,
    p: &Prediction,
) -> Result<(PredictionIn, ModelVersionId), Refused> {
    if p.request_id.is_empty() {
        return Err(Refused::MissingRequestId);
    }
    if p.timestamp < 0 {
        return Err(Refused::NegativeTimestamp);
    }
    let model = task
        .intern_model(&p.model_id, &p.model_version)
        .map_err(Refused::IdSpace)?;
    let predicted = match (&p.predicted_label, p.predicted_value) {
        (Some(label), _) => Predicted::Class(task.intern_class(label).map_err(Refused::IdSpace)?),
        (None, Some(v)) => Predicted::Value(v),
        (None, None) => Predicted::None,
    };
    let score = p.predicted_label.as_deref().and_then(|label| {
        p.scores
            .iter()
            .flatten()
            .find(|(c, _)| c == label)
            .map(|&(_, s)| s as f32)
    });
    Ok((
        PredictionIn {
            key: RequestKey::from_request_id(&p.request_id),
            model,
            time: p.timestamp,
            predicted,
            score,
        },
        model,
    ))
}

/// The join input of a label.
pub fn label_in(task: &mut JoinTask, l: &GroundTruth) -> Result<LabelIn, Refused> {
    if l.request_id.is_empty() {
        return Err(Refused::MissingRequestId);
    }
    if l.timestamp < 0 {
        return Err(Refused::NegativeTimestamp);
    }
    let model_hint = match &l.model_id {
        Some(m) => Some(task.intern_model_hint(m).map_err(Refused::IdSpace)?),
        None => None,
    };
    let actual = match (&l.label, l.value) {
        (Some(label), _) => Actual::Class(task.intern_class(label).map_err(Refused::IdSpace)?),
        (None, Some(v)) => Actual::Value(v),
        (None, None) => Actual::None,
    };
    Ok(LabelIn {
        key: RequestKey::from_request_id(&l.request_id),
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
            prediction_in(&mut task, &empty).unwrap_err(),
            Refused::MissingRequestId
        );
        let early = Prediction {
            timestamp: -1,
            ..prediction()
        };
        assert_eq!(
            prediction_in(&mut task, &early).unwrap_err(),
            Refused::NegativeTimestamp
        );
        let l = GroundTruth {
            request_id: String::new(),
            model_id: None,
            timestamp: 0,
            label: None,
            value: None,
        };
        assert_eq!(
            label_in(&mut task, &l).unwrap_err(),
            Refused::MissingRequestId
        );
    }
}
