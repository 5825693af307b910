//! Writes the seed corpus of every fuzz target into `corpus/<target>/`: a few valid inputs of
//! each decoder, so that fuzzing starts from the real formats instead of from nothing.
//!
//! ```sh
//! cd fuzz && cargo run --example seeds
//! ```
use std::path::Path;

use driftwatch_codec::{encode_framed, to_avro, to_json};
use driftwatch_core::join::changelog::{
    checkpoint_record, class_record, entry_key, entry_value, model_record,
};
use driftwatch_core::join::partial::empty_partial;
use driftwatch_core::join::{EntryRecord, RequestKey, TaskCheckpoint};
use driftwatch_core::monitor::{Monitor, MonitorConfig};
use driftwatch_core::summary::{FeatureInterner, SignatureSummary};
use driftwatch_core::{ConfusionCell, FeatureValue, GroundTruth, ModelPartial, Prediction};
use driftwatch_fuzz::encode_records;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

fn prediction(i: u32) -> Prediction {
    Prediction {
        request_id: format!("req-{i}"),
        model_id: "fraud".into(),
        model_version: "v3".into(),
        timestamp: 1_700_000_000_000 + i64::from(i),
        features: vec![
            ("amount".into(), FeatureValue::Number(12.5 * f64::from(i))),
            ("country".into(), FeatureValue::Category("FR".into())),
        ],
        predicted_label: Some("fraud".into()),
        predicted_value: None,
        scores: Some(vec![("fraud".into(), 0.8), ("ok".into(), 0.2)]),
        tags: vec![("region".into(), "eu".into())],
    }
}

fn label(i: u32) -> GroundTruth {
    GroundTruth {
        request_id: format!("req-{i}"),
        timestamp: 1_700_000_060_000 + i64::from(i),
        model_id: Some("fraud".into()),
        label: Some("ok".into()),
        value: None,
    }
}

fn signature() -> Vec<u8> {
    let mut names = FeatureInterner::new();
    let x = names.intern("x").expect("interns");
    let mut sig = SignatureSummary::new();
    for i in 0..20 {
        sig.update_number(x, f64::from(i) * 5.0);
        sig.update_output(Some("a"), None, Some(0.7));
    }
    sig.to_bytes(&names).expect("signature encodes")
}

fn partial(minute: i64, seq: u64) -> ModelPartial {
    let mut p = empty_partial("fraud", "v3", minute * 60_000, 60_000, 0);
    p.sequence = seq;
    p.counters.predictions = 10;
    p.counters.matched = 10;
    p.confusion = vec![ConfusionCell {
        predicted: "a".into(),
        actual: "a".into(),
        count: 10,
    }];
    p.signature = Some(signature());
    p
}

fn main() {
    for i in 0..2 {
        let p = to_avro(&prediction(i)).expect("encodes");
        let g = to_avro(&label(i)).expect("encodes");
        write("decode_prediction", &format!("avro-{i}"), &p);
        write(
            "decode_prediction",
            &format!("framed-{i}"),
            &encode_framed(1, &p),
        );
        write("decode_ground_truth", &format!("avro-{i}"), &g);
        write(
            "decode_framed",
            &format!("prediction-{i}"),
            &encode_framed(1, &p),
        );
        write(
            "decode_framed",
            &format!("ground-truth-{i}"),
            &encode_framed(2, &g),
        );
        let pj = to_json(&prediction(i)).expect("json");
        let gj = to_json(&label(i)).expect("json");
        write("decode_prediction", &format!("json-{i}"), pj.as_bytes());
        write("decode_ground_truth", &format!("json-{i}"), gj.as_bytes());
        write("decode_json", &format!("prediction-{i}"), pj.as_bytes());
        write("decode_json", &format!("ground-truth-{i}"), gj.as_bytes());
    }
    let p = partial(1, 1);
    write("decode_partial", "partial", &to_avro(&p).expect("encodes"));
    write("decode_partial", "signature", &signature());
    oip_seeds();
    write(
        "decode_json",
        "partial",
        to_json(&p).expect("json").as_bytes(),
    );

    // A join task's changelog: two models, a class, two entries (one deleted), a checkpoint.
    let (mk1, mv1) = model_record(1, "fraud", "v3");
    let (mk2, mv2) = model_record(2, "churn", "v1");
    let (ck, cv) = class_record(0, "ok");
    let (wk, wv) = checkpoint_record(&TaskCheckpoint {
        watermark: 1_700_000_000_000,
        prediction_progress: 1_700_000_000_500,
        label_progress: 1_700_000_000_200,
    });
    let e = EntryRecord {
        time: 1_700_000_000_100,
        model: 1,
        flags: 1,
        payload: 0,
    };
    let (k1, k2) = (
        entry_key(RequestKey::from_request_id("req-1")),
        entry_key(RequestKey::from_request_id("req-2")),
    );
    let ev = entry_value(&e);
    write(
        "restore_join_changelog",
        "task",
        &encode_records(&[
            (&mk1, Some(&mv1)),
            (&mk2, Some(&mv2)),
            (&ck, Some(&cv)),
            (&k1, Some(&ev)),
            (&k2, Some(&ev)),
            (&k2, None),
            (&wk, Some(&wv)),
        ]),
    );
    // The same log replayed record by record, and one with more entries than the replay
    // target keeps hot (four), so some go to its cold tier and one cold entry is deleted.
    let keys: Vec<_> = (0..8)
        .map(|i| entry_key(RequestKey::from_request_id(&format!("req-{i}"))))
        .collect();
    let mut log: Vec<(&[u8], Option<&[u8]>)> =
        vec![(&mk1, Some(&mv1)), (&mk2, Some(&mv2)), (&ck, Some(&cv))];
    log.extend(keys.iter().map(|k| (&k[..], Some(&ev[..]))));
    log.push((&keys[1], None));
    log.push((&wk, Some(&wv)));
    write("replay_join_changelog", "task", &encode_records(&log));

    // The monitor's state records after a few partials.
    let mut monitor = Monitor::new(MonitorConfig::default()).expect("monitor");
    for (i, minute) in (0..5).enumerate() {
        let _ = monitor.ingest(&partial(minute, i as u64 + 1));
    }
    let mut records = Vec::new();
    for model in monitor.dirty_models() {
        records.extend(monitor.export_model(&model).expect("exports"));
    }
    let pairs: Vec<(&[u8], Option<&[u8]>)> = records
        .iter()
        .map(|r| (r.key.as_slice(), r.value.as_deref()))
        .collect();
    write("restore_monitor_state", "state", &encode_records(&pairs));
    println!("{} monitor state records", records.len());
}

/// Seldon protobufs and KServe CloudEvent values, each after its selector byte (see the
/// targets' docs).
fn oip_seeds() {
    use driftwatch_oip::proto::{
        InferTensor, InferTensorContents, ModelInferRequest, ModelInferResponse,
    };
    use prost::Message;
    let tensor = |datatype: &str, contents: InferTensorContents| InferTensor {
        name: "predict".into(),
        datatype: datatype.into(),
        shape: vec![1, 2],
        contents: Some(contents),
    };
    let request = ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![tensor(
            "FP32",
            InferTensorContents {
                fp32_contents: vec![5.1, 3.5],
                ..Default::default()
            },
        )],
        ..Default::default()
    };
    let response = ModelInferResponse {
        model_version: "1".into(),
        outputs: vec![tensor(
            "BYTES",
            InferTensorContents {
                bytes_contents: vec![b"setosa".to_vec(), b"x".to_vec()],
                ..Default::default()
            },
        )],
        ..Default::default()
    };
    write("decode_seldon", "request", &[&[0u8][..], &request.encode_to_vec()].concat());
    write("decode_seldon", "response", &[&[1u8][..], &response.encode_to_vec()].concat());
    let structured = br#"{"specversion": "1.0", "id": "1", "source": "s",
        "type": "org.kubeflow.serving.inference.request", "data": {"inputs": [
        {"name": "instances", "shape": [1, 2], "datatype": "FP32", "data": [[1.0, 2.0]]}]}}"#;
    write("decode_kserve", "structured-v2", &[&[0u8][..], structured].concat());
    write("decode_kserve", "binary-v1-request", &[&[1u8][..], br#"{"instances": [[1, 2], [3, 4]]}"#].concat());
    write("decode_kserve", "binary-v1-response", &[&[2u8][..], br#"{"predictions": [[0.1, 0.9]]}"#].concat());
}
