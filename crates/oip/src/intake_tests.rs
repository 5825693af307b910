//! The intake end to end: mixed Seldon traffic (pairs in both orders, a batch, a duplicate, a
//! lone request, undecodable records, a pair that does not map) with exact accounting, and the
//! predictions as canonical `Prediction.avsc` datums.

use prost::Message as _;

use crate::proto::{InferTensor, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::*;

fn config() -> SourceConfig {
    let c: SourceConfig = toml::from_str(
        r#"
name = "iris"
pair_wait = "10s"
[seldon]
namespace = "prod"
[mapping]
model_id = { from = "topic" }
model_version = { from = "fixed", value = "2" }
features = [{ tensor = "x", columns = ["a", "b"] }]
prediction = { tensor = "p", as = "value" }
"#,
    )
    .unwrap();
    c.validate().unwrap();
    c
}

fn tensor(name: &str, rows: usize, cols: usize, values: Vec<f64>) -> InferTensor {
    InferTensor {
        name: name.into(),
        datatype: "FP64".into(),
        shape: vec![rows as i64, cols as i64],
        contents: Some(InferTensorContents {
            fp64_contents: values,
            ..Default::default()
        }),
    }
}

fn request(rows: usize) -> Vec<u8> {
    ModelInferRequest {
        inputs: vec![tensor(
            "x",
            rows,
            2,
            (0..rows * 2).map(|i| i as f64).collect(),
        )],
        ..Default::default()
    }
    .encode_to_vec()
}

fn response(rows: usize) -> Vec<u8> {
    ModelInferResponse {
        outputs: vec![tensor(
            "p",
            rows,
            1,
            (0..rows).map(|i| 0.5 + i as f64).collect(),
        )],
        ..Default::default()
    }
    .encode_to_vec()
}

const IN: &str = "seldon.prod.model.iris.inputs";
const OUT: &str = "seldon.prod.model.iris.outputs";

#[test]
fn mixed_traffic_is_accounted_exactly_and_predictions_are_canonical() {
    let mut intake = SourceIntake::new(config());
    let mut outputs = Vec::new();
    let mut offer = |topic: &str, id: &str, payload: &[u8], time: i64| {
        let headers: Vec<(&str, &[u8])> = if id.is_empty() {
            vec![]
        } else {
            vec![("x-request-id", id.as_bytes())]
        };
        let msg = Message {
            topic,
            headers: &headers,
            payload,
        };
        outputs.extend(intake.offer(&msg, time));
    };
    offer(IN, "a", &request(1), 1_000); // pairs with the response below
    offer(OUT, "b", &response(1), 1_001); // response first
    offer(OUT, "a", &response(1), 1_002);
    offer(IN, "b", &request(1), 1_003);
    offer(IN, "c", &request(3), 1_004); // a batch of three rows
    offer(OUT, "c", &response(3), 1_005);
    offer(OUT, "c", &response(3), 1_006); // re-delivered: duplicate
    offer(IN, "d", &request(1), 1_007); // never answered: unpaired
    offer(IN, "", &request(1), 1_008); // no request id: dead letter
    offer(OUT, "e", b"\xff\xff", 1_009); // not protobuf: dead letter
    offer(IN, "f", &request(2), 1_010); // rows differ: the pair is dead-lettered
    offer(OUT, "f", &response(1), 1_011);
    offer(IN, "g", &request(1), 20_000); // advances the watermark past d's wait
    outputs.extend(intake.drain()); // g expires too

    let c = intake.counters();
    assert!(c.balanced(intake.pending()));
    assert_eq!(c.pairing.halves_in, 13);
    assert_eq!(c.pairing.paired, 4);
    assert_eq!((c.mapped_pairs, c.unmapped_pairs, c.predictions), (3, 1, 5));
    assert_eq!(
        (
            c.pairing.expired,
            c.pairing.duplicates,
            c.pairing.dead_lettered
        ),
        (2, 1, 2)
    );

    let mut ids = Vec::new();
    let mut reasons = Vec::new();
    for o in &outputs {
        match o {
            Output::Prediction(p) => {
                let mut datum = Vec::new();
                driftwatch_codec::encode_prediction(p, &mut datum).unwrap();
                assert_eq!(&driftwatch_codec::decode_prediction(&datum).unwrap(), p);
                assert_eq!(
                    (p.model_id.as_str(), p.model_version.as_str()),
                    ("iris", "2")
                );
                ids.push(p.request_id.clone());
            }
            Output::DeadLetter { reason, .. } => reasons.push(*reason),
            Output::Unpaired { id, .. } | Output::Duplicate { id, .. } => {
                ids.push(format!("~{id}"))
            }
        }
    }
    ids.sort();
    assert_eq!(ids, ["a", "b", "c/0", "c/1", "c/2", "~c", "~d", "~g"]);
    assert_eq!(
        reasons,
        ["missing_request_id", "protobuf", "row_count_mismatch"]
    );
    // The request's event time is the prediction's timestamp.
    let b = outputs.iter().find_map(|o| match o {
        Output::Prediction(p) if p.request_id == "b" => Some(p.timestamp),
        _ => None,
    });
    assert_eq!(b, Some(1_003));
}

#[test]
fn pending_changes_follow_the_waiting_halves_and_a_rebuild_expires_alike() {
    let mut intake = SourceIntake::new(config());
    let offer = |intake: &mut SourceIntake, topic: &str, id: &str, payload: &[u8], time: i64| {
        let headers = [("x-request-id", id.as_bytes())];
        let msg = Message {
            topic,
            headers: &headers,
            payload,
        };
        intake.offer(&msg, time)
    };
    use PendingChange::{Left, Waiting};
    offer(&mut intake, IN, "a", &request(1), 0);
    offer(&mut intake, IN, "a", &request(1), 1); // duplicate: "a" still waits
    offer(&mut intake, IN, "b", &request(1), 2);
    assert_eq!(
        intake.take_changes(),
        vec![Waiting("a".into()), Waiting("b".into())]
    );
    offer(&mut intake, OUT, "a", &response(1), 3);
    offer(&mut intake, OUT, "c", &response(1), 20_000); // "b" expires, "c" waits
    assert_eq!(
        intake.take_changes(),
        vec![Left("a".into()), Left("b".into()), Waiting("c".into())]
    );
    // A rebuild from the waiting half and the watermark expires "c" where the original does.
    let mut rebuilt = SourceIntake::new(config());
    offer(&mut rebuilt, OUT, "c", &response(1), 20_000);
    assert!(rebuilt.advance(intake.watermark()).is_empty());
    for i in [&mut intake, &mut rebuilt] {
        i.take_changes();
        let out = offer(i, IN, "d", &request(1), 30_001);
        assert!(matches!(&out[..], [Output::Unpaired { id, .. }] if id == "c"));
        assert_eq!(
            i.take_changes(),
            vec![Left("c".into()), Waiting("d".into())]
        );
    }
}

#[test]
fn a_source_reads_its_own_topics_only() {
    let c = config();
    assert!(c.reads(IN) && c.reads(OUT));
    for other in [
        "seldon.prod.model.iris.other",
        "seldon.test.model.iris.inputs",
        "seldon.prod.model..inputs",
        "seldon.prod.model.a.b.inputs",
        "seldon.prod.pipeline.iris.inputs",
    ] {
        assert!(!c.reads(other), "{other}");
    }
    let mut named = c.clone();
    if let Some(s) = &mut named.seldon {
        s.models = vec!["wine".into()];
    }
    assert!(!named.reads(IN) && named.reads("seldon.prod.model.wine.outputs"));
}
