//! Records of the schema-registry tests (stub and real registry): one model's predictions and
//! labels, framed with the ids a registry handed out, and the evolved writer schema a model
//! server may register before driftwatch's reader knows its extra field. `prefix` keeps each
//! test's request ids apart.

use std::time::Duration;

use driftwatch_codec::{encode_framed, encode_ground_truth, encode_prediction, RecordKind};
use driftwatch_core::{FeatureValue, GroundTruth, JoinCounters, Prediction};
use driftwatch_worker::join::JoinStats;

use crate::scenario::{counters_by_model, Record, Side};

/// `Prediction` with one more field, with a default: a writer version a model server may
/// register before driftwatch's reader schema knows the field.
pub fn evolved_prediction_schema() -> String {
    let mut v: serde_json::Value =
        serde_json::from_str(RecordKind::Prediction.schema_text()).expect("schema");
    v["fields"].as_array_mut().expect("fields").push(
        serde_json::json!({"name": "channel", "type": "string", "default": "web", "doc": "x"}),
    );
    v.to_string()
}

/// Prediction `i` of the test's model, `i` ms after `t0`, labelled yes/no alternately.
pub fn prediction(prefix: &str, i: usize, t0: i64) -> Prediction {
    Prediction {
        request_id: format!("{prefix}-{i:05}"),
        model_id: "registry-model".into(),
        model_version: "v1".into(),
        timestamp: t0 + i as i64,
        features: vec![("x".into(), FeatureValue::Number(i as f64))],
        predicted_label: Some(if i % 2 == 0 { "yes" } else { "no" }.into()),
        predicted_value: None,
        scores: None,
        tags: vec![],
    }
}

/// The label of prediction `i` (always yes), a second after it.
pub fn label(prefix: &str, i: usize, t0: i64) -> GroundTruth {
    GroundTruth {
        request_id: format!("{prefix}-{i:05}"),
        model_id: Some("registry-model".into()),
        timestamp: t0 + i as i64 + 1_000,
        label: Some("yes".into()),
        value: None,
    }
}

/// `p` framed with schema id `id`; `extra` is appended to the datum (an evolved writer's field).
pub fn framed_prediction(p: &Prediction, id: u32, extra: &[u8]) -> Record {
    let mut datum = Vec::new();
    encode_prediction(p, &mut datum).expect("encode");
    datum.extend_from_slice(extra);
    Record {
        side: Side::Predictions,
        key: p.request_id.clone(),
        payload: encode_framed(id, &datum),
        time: p.timestamp,
    }
}

/// `l` framed with schema id `id`.
pub fn framed_label(l: &GroundTruth, id: u32) -> Record {
    let mut datum = Vec::new();
    encode_ground_truth(l, &mut datum).expect("encode");
    Record {
        side: Side::Labels,
        key: l.request_id.clone(),
        payload: encode_framed(id, &datum),
        time: l.timestamp,
    }
}

/// The stage's counters summed over models.
pub fn total(stats: &JoinStats) -> JoinCounters {
    counters_by_model(std::slice::from_ref(stats))
        .values()
        .fold(JoinCounters::default(), |a, c| a.merged(c))
}

/// Polls the stage's counters until `done`; fails after two minutes naming `what`.
pub async fn wait_for(
    what: &str,
    stats: impl Fn() -> JoinStats,
    done: impl Fn(&JoinStats) -> bool,
) -> JoinStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let s = stats();
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached; counters {:?}, registry error {:?}",
            total(&s),
            s.schema_registry_error
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
