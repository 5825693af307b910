//! Every record round-trips through Avro and JSON, and the hand-written Avro agrees with
//! apache-avro reading the `.avsc` schemas.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use common::*;
use driftwatch_codec::borrowed::{FeatureRef, PredictionVisitor};
use driftwatch_codec::from_avro_resolving;
use driftwatch_codec::{
    from_avro, from_json, to_avro, to_json, AvroRecord, JsonRecord, PredictionDecoder, RecordKind,
};
use driftwatch_core::summary::{FeatureInterner, SignatureSummary};
use driftwatch_core::{
    ClassScores, ConfusionCell, DriftEvent, DriftState, GroundTruth, JoinCounters, ModelMetrics,
    ModelPartial, Prediction, RegressionSums, RetrainEvent,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prediction_round_trips_through_avro_and_json(p in prediction()) {
        let datum = to_avro(&p).unwrap();
        prop_assert_eq!(&from_avro::<Prediction>(&datum).unwrap(), &p);
        prop_assert_eq!(&from_json::<Prediction>(&to_json(&p).unwrap()).unwrap(), &p);
    }

    #[test]
    fn ground_truth_round_trips_through_avro_and_json(g in ground_truth()) {
        let datum = to_avro(&g).unwrap();
        prop_assert_eq!(&from_avro::<GroundTruth>(&datum).unwrap(), &g);
        prop_assert_eq!(&from_json::<GroundTruth>(&to_json(&g).unwrap()).unwrap(), &g);
    }

    /// The fast decoder and apache-avro read the same bytes to the same record.
    #[test]
    fn fast_decoder_agrees_with_apache_avro(p in prediction(), g in ground_truth()) {
        let schema = RecordKind::Prediction.schema().unwrap();
        let datum = to_avro(&p).unwrap();
        let reference = prediction_from_value(&avro_decode(schema, schema, &datum));
        prop_assert_eq!(sorted(from_avro::<Prediction>(&datum).unwrap()), reference);

        let schema = RecordKind::GroundTruth.schema().unwrap();
        let datum = to_avro(&g).unwrap();
        let reference = ground_truth_from_value(&avro_decode(schema, schema, &datum));
        prop_assert_eq!(from_avro::<GroundTruth>(&datum).unwrap(), reference);
    }
}

/// Counts what the visitor sees, without allocating.
#[derive(Default)]
struct Tally {
    numbers: f64,
    categories: usize,
    missing: usize,
    scores: usize,
    tags: usize,
}

impl<'a> PredictionVisitor<'a> for Tally {
    fn feature(&mut self, _: &'a str, value: FeatureRef<'a>) {
        match value {
            FeatureRef::Missing => self.missing += 1,
            FeatureRef::Number(x) => self.numbers += x,
            FeatureRef::Category(s) => self.categories += s.len(),
        }
    }
    fn score(&mut self, _: &'a str, _: f64) {
        self.scores += 1;
    }
    fn tag(&mut self, _: &'a str, _: &'a str) {
        self.tags += 1;
    }
}

#[test]
fn visitor_sees_every_entry_and_borrowed_head_matches() {
    let p = realistic_prediction();
    let datum = to_avro(&p).unwrap();
    let decoder = PredictionDecoder::current().unwrap();
    let mut tally = Tally::default();
    let head = decoder.decode(&datum, &mut tally).unwrap();
    assert_eq!(head.request_id, p.request_id);
    assert_eq!(head.predicted_label, p.predicted_label.as_deref());
    assert!(head.has_scores);
    let expected_numbers: f64 = p
        .features
        .iter()
        .filter_map(|(_, v)| match v {
            driftwatch_core::FeatureValue::Number(x) => Some(*x),
            _ => None,
        })
        .sum();
    assert_eq!(tally.numbers, expected_numbers);
    assert_eq!(tally.scores, p.scores.as_ref().map_or(0, Vec::len));
    assert_eq!(tally.tags, p.tags.len());
    // A realistic prediction: the codec benches decode one like it, and BENCHMARKS.md quotes
    // its size with their figures; the bounds only catch an encoding that grew or shrank.
    assert!(
        (400..560).contains(&datum.len()),
        "datum is {} bytes",
        datum.len()
    );
}

fn drift_event() -> DriftEvent {
    DriftEvent {
        event_id: "e-1".into(),
        model_id: "m".into(),
        model_version: "3".into(),
        detector: "psi".into(),
        feature: Some("age".into()),
        previous_state: DriftState::Warning,
        state: DriftState::Drift,
        statistic: "psi".into(),
        value: 0.31,
        threshold: 0.2,
        baseline_start: 1,
        baseline_end: 2,
        window_start: 3,
        window_end: 4,
        baseline_samples: 1000,
        window_samples: 250,
        severity: 0.7,
        detected_at: 5,
    }
}

fn retrain_event() -> RetrainEvent {
    RetrainEvent {
        event_id: "r-1".into(),
        model_id: "m".into(),
        model_version: "3".into(),
        reasons: vec!["psi on age".into(), "accuracy drop".into()],
        drift_event_ids: vec!["e-1".into(), "e-2".into()],
        metrics: vec![("zeta".into(), 1.0), ("accuracy".into(), 0.81)],
        train_from: 10,
        train_to: 20,
        dry_run: true,
        created_at: 21,
        estimated_decay_per_day: Some(0.012),
        suggested_retrain_interval_ms: Some(3 * 86_400_000),
    }
}

fn model_metrics() -> ModelMetrics {
    ModelMetrics {
        model_id: "m".into(),
        model_version: "3".into(),
        window: "15m".into(),
        window_start: 0,
        window_end: 900_000,
        predictions: 12_345,
        labeled: 678,
        label_coverage: 678.0 / 12_345.0,
        metrics: vec![("mae".into(), 3.5), ("accuracy".into(), 0.9)],
        emitted_at: 900_001,
        estimated_decay_per_day: Some(0.004),
        suggested_retrain_interval_ms: None,
    }
}

fn model_partial() -> ModelPartial {
    ModelPartial {
        model_id: "m".into(),
        model_version: "3".into(),
        bucket_start: 60_000,
        bucket_width_ms: 60_000,
        source_partition: 7,
        sequence: 42,
        counters: JoinCounters {
            predictions: 10,
            labels: 9,
            matched: 8,
            expired_unlabeled: 1,
            orphan_labels: 1,
            duplicate_predictions: 0,
            duplicate_labels: 2,
            late_labels: 3,
            dead_lettered: 4,
            received_predictions: 11,
            misrouted_predictions: 5,
            misrouted_labels: 6,
        },
        confusion: vec![
            ConfusionCell {
                predicted: "a".into(),
                actual: "a".into(),
                count: 5,
            },
            ConfusionCell {
                predicted: "a".into(),
                actual: "b".into(),
                count: 3,
            },
        ],
        regression: RegressionSums {
            count: 2,
            abs_error_sum: 1.5,
            squared_error_sum: 2.25,
            error_sum: -0.5,
            abs_pct_error_sum: 0.1,
            pct_count: 1,
        },
        log_loss_sum: 0.4,
        brier_sum: 0.2,
        scored: 8,
        label_delay_sum_ms: 123_456,
        signature: Some(signature_bytes()),
        epoch_start: Some(1_700_000_040_000),
        received_scored: 12,
        received_score_sum: 9.5,
        scored_score_sum: 6.0,
        scored_correct: 5,
        class_scores: vec![
            ClassScores {
                class: "a".into(),
                received_scored: 9,
                received_score_sum: 7.25,
                scored: 6,
                scored_score_sum: 4.5,
            },
            ClassScores {
                class: "b".into(),
                received_scored: 3,
                received_score_sum: 2.25,
                scored: 2,
                scored_score_sum: 1.5,
            },
        ],
    }
}

/// A real serialized signature of two predictions.
fn signature_bytes() -> Vec<u8> {
    let mut names = FeatureInterner::new();
    let mut sig = SignatureSummary::new();
    let p = realistic_prediction();
    sig.update_prediction(&mut names, &p).unwrap();
    sig.update_prediction(&mut names, &p).unwrap();
    sig.flush();
    sig.to_bytes(&names).unwrap()
}

/// Round-trips through both forms, checks apache-avro accepts the datum and re-encodes it to
/// the same bytes (maps of one entry or sorted input aside, byte equality needs a stable map
/// order, so the comparison is on the decoded value).
fn check_record<T>(record: T)
where
    T: AvroRecord + JsonRecord + PartialEq + std::fmt::Debug,
{
    let datum = to_avro(&record).unwrap();
    assert_eq!(from_avro::<T>(&datum).unwrap(), record);
    assert_eq!(from_json::<T>(&to_json(&record).unwrap()).unwrap(), record);
    let schema = T::KIND.schema().unwrap();
    // apache-avro reads our bytes with the schema and consumes all of them.
    let value = avro_decode(schema, schema, &datum);
    // Re-encoded by apache-avro and read back by us: the same record up to map order.
    let again = avro_encode(schema, value);
    assert_eq!(again.len(), datum.len());
    let _: T = from_avro(&again).unwrap();
}

#[test]
fn every_record_round_trips_and_apache_avro_reads_our_bytes() {
    check_record(realistic_prediction());
    check_record(GroundTruth {
        request_id: "r".into(),
        model_id: Some("m".into()),
        timestamp: -5,
        label: Some("cat".into()),
        value: None,
    });
    check_record(drift_event());
    check_record(DriftEvent {
        feature: None,
        ..drift_event()
    });
    check_record(retrain_event());
    check_record(model_metrics());
    check_record(model_partial());
    check_record(ModelPartial {
        signature: None,
        ..model_partial()
    });
    check_record(ModelPartial {
        signature: Some(Vec::new()),
        ..model_partial()
    });
}

/// The signature survives Avro and JSON byte for byte and still decodes as a signature.
#[test]
fn model_partial_signature_survives_both_forms() {
    let p = model_partial();
    let via_avro = from_avro::<ModelPartial>(&to_avro(&p).unwrap()).unwrap();
    let via_json = from_json::<ModelPartial>(&to_json(&p).unwrap()).unwrap();
    for got in [via_avro, via_json] {
        let bytes = got.signature.unwrap();
        assert_eq!(Some(&bytes), p.signature.as_ref());
        let mut names = FeatureInterner::new();
        let sig = SignatureSummary::from_bytes(&bytes, &mut names).unwrap();
        assert_eq!(sig.predictions(), 2);
    }
    // JSON without the field (an older writer) reads as no signature.
    let mut v: serde_json::Value = serde_json::from_str(&to_json(&p).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("signature");
    let old = from_json::<ModelPartial>(&v.to_string()).unwrap();
    assert_eq!(old.signature, None);
}

/// A datum of the released v1 schema (no `signature`) resolves to `signature: None`, and a
/// current datum is readable by v1 readers (the field is skipped).
#[test]
fn model_partial_of_the_released_schema_reads_without_signature() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/released/v1");
    let v1 = apache_avro::Schema::parse_str(
        &std::fs::read_to_string(dir.join("ModelPartial.avsc")).unwrap(),
    )
    .unwrap();
    let current = RecordKind::ModelPartial.schema().unwrap();
    let p = model_partial();
    let datum = to_avro(&p).unwrap();
    // Current bytes read by a v1 reader, re-encoded as v1 bytes.
    let as_v1 = avro_encode(&v1, avro_decode(current, &v1, &datum));
    assert!(as_v1.len() < datum.len());
    let back = from_avro_resolving::<ModelPartial>(&v1, &as_v1).unwrap();
    assert_eq!(
        back,
        ModelPartial {
            signature: None,
            epoch_start: None,
            received_scored: 0,
            received_score_sum: 0.0,
            scored_score_sum: 0.0,
            scored_correct: 0,
            class_scores: vec![],
            // Nor the received count: its default.
            counters: JoinCounters {
                received_predictions: 0,
                misrouted_predictions: 0,
                misrouted_labels: 0,
                ..p.counters
            },
            ..p
        }
    );
}

/// A datum written before `epoch_start` existed ends where that field would start: it reads
/// as a partial without an epoch (applied on arrival by the monitor).
#[test]
fn model_partial_written_without_an_epoch_reads_as_none() {
    let p = ModelPartial {
        epoch_start: None,
        received_scored: 0,
        received_score_sum: 0.0,
        scored_score_sum: 0.0,
        scored_correct: 0,
        class_scores: vec![],
        counters: JoinCounters {
            misrouted_predictions: 0,
            misrouted_labels: 0,
            ..model_partial().counters
        },
        ..model_partial()
    };
    let mut datum = to_avro(&p).unwrap();
    // The score sums after it: 0, 0.0, 0.0, 0 (1 + 8 + 8 + 1 bytes), the empty array of
    // class scores (1 byte) and the two misrouted counts (1 byte each).
    datum.truncate(datum.len() - 21);
    assert_eq!(datum.pop(), Some(0), "the null branch of the last field");
    assert_eq!(from_avro::<ModelPartial>(&datum).unwrap(), p);
    let with = model_partial();
    assert_eq!(
        from_avro::<ModelPartial>(&to_avro(&with).unwrap()).unwrap(),
        with
    );
}

/// A datum written before `class_scores` existed ends after `scored_correct`: it reads with
/// no per-class sums (so no estimated F1), everything else intact.
#[test]
fn model_partial_written_without_class_scores_reads_them_empty() {
    let p = model_partial();
    let without = ModelPartial {
        class_scores: vec![],
        counters: JoinCounters {
            misrouted_predictions: 0,
            misrouted_labels: 0,
            ..p.counters
        },
        ..p.clone()
    };
    let mut datum = to_avro(&without).unwrap();
    // The two misrouted counts (0: one byte each) come last.
    datum.truncate(datum.len() - 2);
    assert_eq!(datum.pop(), Some(0), "the empty array ends the datum");
    assert_eq!(from_avro::<ModelPartial>(&datum).unwrap(), without);
    assert_eq!(from_avro::<ModelPartial>(&to_avro(&p).unwrap()).unwrap(), p);
    assert_eq!(from_json::<ModelPartial>(&to_json(&p).unwrap()).unwrap(), p);
}

/// A datum written before the misrouted counts existed ends after `class_scores`: it reads
/// them as 0; a current one keeps them (top-level in Avro, in `counters` in Rust and JSON).
#[test]
fn model_partial_written_without_misrouted_counts_reads_zero() {
    let p = model_partial();
    assert_eq!(
        (
            p.counters.misrouted_predictions,
            p.counters.misrouted_labels
        ),
        (5, 6)
    );
    let mut datum = to_avro(&p).unwrap();
    assert_eq!(from_avro::<ModelPartial>(&datum).unwrap(), p);
    assert_eq!(from_json::<ModelPartial>(&to_json(&p).unwrap()).unwrap(), p);
    // 5 and 6, zigzag-encoded: one byte each.
    assert_eq!(datum.split_off(datum.len() - 2), vec![10, 12]);
    let old = from_avro::<ModelPartial>(&datum).unwrap();
    assert_eq!(
        old.counters,
        JoinCounters {
            misrouted_predictions: 0,
            misrouted_labels: 0,
            ..p.counters
        }
    );
}

/// JSON of a writer without `counters.received_predictions` reads it as 0.
#[test]
fn model_partial_json_without_received_predictions_reads_zero() {
    let p = model_partial();
    let mut v: serde_json::Value = serde_json::from_str(&to_json(&p).unwrap()).unwrap();
    let counters = v["counters"].as_object_mut().unwrap();
    assert_eq!(counters.remove("received_predictions"), Some(11.into()));
    let old = from_json::<ModelPartial>(&v.to_string()).unwrap();
    assert_eq!(old.counters.received_predictions, 0);
    assert_eq!(old.counters.matched, p.counters.matched);
}

#[test]
fn maps_keep_their_order_through_avro() {
    let r = retrain_event();
    assert_eq!(
        from_avro::<RetrainEvent>(&to_avro(&r).unwrap())
            .unwrap()
            .metrics,
        r.metrics
    );
}

#[test]
fn counters_beyond_i64_are_refused_not_wrapped() {
    let mut m = model_metrics();
    m.predictions = u64::MAX;
    assert_eq!(to_avro(&m).unwrap_err().kind(), "invalid_data");
}

/// The schemas mirror record.rs: the field names of each record's serde form (which follows
/// the Rust struct) are the field names of its `.avsc`, in the same order.
#[test]
fn schema_fields_match_the_rust_records() {
    fn names_of_schema(kind: RecordKind) -> Vec<String> {
        let json: serde_json::Value = serde_json::from_str(kind.schema_text()).unwrap();
        json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    }
    fn names_of_json(text: &str) -> Vec<String> {
        // serde_json::Map without preserve_order is sorted, so compare as sorted sets.
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    }
    let cases = [
        (
            RecordKind::Prediction,
            to_json(&realistic_prediction()).unwrap(),
        ),
        (
            RecordKind::GroundTruth,
            to_json(&GroundTruth {
                request_id: "r".into(),
                model_id: None,
                timestamp: 0,
                label: None,
                value: None,
            })
            .unwrap(),
        ),
        (RecordKind::DriftEvent, to_json(&drift_event()).unwrap()),
        (RecordKind::RetrainEvent, to_json(&retrain_event()).unwrap()),
        (RecordKind::ModelMetrics, to_json(&model_metrics()).unwrap()),
        (RecordKind::ModelPartial, to_json(&model_partial()).unwrap()),
    ];
    for (kind, json) in cases {
        let mut from_schema = names_of_schema(kind);
        from_schema.sort();
        let mut from_record = names_of_json(&json);
        if kind == RecordKind::ModelPartial {
            // The misrouted counts live in `counters` in Rust and JSON but are the last
            // top-level fields in Avro, so that readers of the earlier layout stay compatible.
            from_record.extend(["misrouted_labels".into(), "misrouted_predictions".into()]);
        }
        from_record.sort();
        assert_eq!(from_schema, from_record, "{}", kind.file_name());
    }
}

#[test]
fn model_reference_round_trips_and_matches_its_schema() {
    use driftwatch_codec::{from_avro, from_json, to_avro, to_json, RecordKind};
    let r = driftwatch_core::ModelReference {
        model_id: "fraud".into(),
        model_version: "v3".into(),
        created_at: 1_767_225_600_000,
        rows: 120_000,
        source: "train.csv".into(),
        signature: vec![0, 1, 2, 250, 255],
    };
    let bytes = to_avro(&r).unwrap();
    assert_eq!(
        from_avro::<driftwatch_core::ModelReference>(&bytes).unwrap(),
        r
    );
    // The bytes are what apache-avro reads with the .avsc.
    let schema = RecordKind::ModelReference.schema().unwrap();
    let value = avro_decode(schema, schema, &bytes);
    assert!(matches!(value, apache_avro::types::Value::Record(ref f) if f.len() == 6));
    let json = to_json(&r).unwrap();
    assert_eq!(
        from_json::<driftwatch_core::ModelReference>(&json).unwrap(),
        r
    );
    assert_eq!(r.key(), "fraud/v3");
}

/// Retrain events and metrics snapshots of the released v1 schemas (without the decay fields)
/// read with both fields `None`, through resolution and as bare datums ending before them; and
/// the JSON of a v1 writer too.
#[test]
fn decay_fields_of_older_writers_read_as_none() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/released/v1");
    let v1 = |name: &str| {
        apache_avro::Schema::parse_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    // Maps resolved by apache-avro come out in any order: one entry each.
    let r = RetrainEvent {
        metrics: vec![("accuracy".into(), 0.81)],
        ..retrain_event()
    };
    let old_r = RetrainEvent {
        estimated_decay_per_day: None,
        suggested_retrain_interval_ms: None,
        ..r.clone()
    };
    let (v1_r, cur_r) = (
        v1("RetrainEvent.avsc"),
        RecordKind::RetrainEvent.schema().unwrap(),
    );
    let as_v1 = avro_encode(&v1_r, avro_decode(cur_r, &v1_r, &to_avro(&r).unwrap()));
    assert_eq!(
        from_avro_resolving::<RetrainEvent>(&v1_r, &as_v1).unwrap(),
        old_r
    );
    assert_eq!(from_avro::<RetrainEvent>(&as_v1).unwrap(), old_r);
    let m = ModelMetrics {
        metrics: vec![("accuracy".into(), 0.9)],
        ..model_metrics()
    };
    let old_m = ModelMetrics {
        estimated_decay_per_day: None,
        suggested_retrain_interval_ms: None,
        ..m.clone()
    };
    let (v1_m, cur_m) = (
        v1("ModelMetrics.avsc"),
        RecordKind::ModelMetrics.schema().unwrap(),
    );
    let as_v1 = avro_encode(&v1_m, avro_decode(cur_m, &v1_m, &to_avro(&m).unwrap()));
    assert_eq!(
        from_avro_resolving::<ModelMetrics>(&v1_m, &as_v1).unwrap(),
        old_m
    );
    assert_eq!(from_avro::<ModelMetrics>(&as_v1).unwrap(), old_m);
    let mut json: serde_json::Value = serde_json::from_str(&to_json(&m).unwrap()).unwrap();
    let o = json.as_object_mut().unwrap();
    o.remove("estimated_decay_per_day");
    o.remove("suggested_retrain_interval_ms");
    assert_eq!(from_json::<ModelMetrics>(&json.to_string()).unwrap(), old_m);
}
