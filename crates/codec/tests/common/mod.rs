//! Helpers shared by the integration tests: proptest strategies for the records, and a
//! conversion from apache-avro's generic `Value` so the hand-written codecs can be compared with
//! an independent implementation.
#![allow(dead_code, clippy::unwrap_used)]

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use driftwatch_core::{FeatureValue, GroundTruth, Prediction};
use proptest::prelude::*;

pub fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |x| x.is_finite())
}

pub fn feature_value() -> impl Strategy<Value = FeatureValue> {
    prop_oneof![
        Just(FeatureValue::Missing),
        finite_f64().prop_map(FeatureValue::Number),
        any::<String>().prop_map(FeatureValue::Category),
    ]
}

/// Entries with unique keys (Avro maps cannot carry duplicates), in generated order.
pub fn unique_entries<V: std::fmt::Debug + Clone>(
    value: impl Strategy<Value = V>,
) -> impl Strategy<Value = Vec<(String, V)>> {
    proptest::collection::vec((any::<String>(), value), 0..8).prop_map(|mut entries| {
        let mut seen = std::collections::HashSet::new();
        entries.retain(|(k, _)| seen.insert(k.clone()));
        entries
    })
}

pub fn non_empty_string() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("non-empty", |s| !s.is_empty())
}

pub fn prediction() -> impl Strategy<Value = Prediction> {
    (
        (
            non_empty_string(),
            any::<String>(),
            any::<String>(),
            any::<i64>(),
        ),
        unique_entries(feature_value()),
        proptest::option::of(any::<String>()),
        proptest::option::of(finite_f64()),
        proptest::option::of(unique_entries(finite_f64())),
        unique_entries(any::<String>()),
    )
        .prop_map(
            |(
                (request_id, model_id, model_version, timestamp),
                features,
                label,
                value,
                scores,
                tags,
            )| {
                Prediction {
                    request_id,
                    model_id,
                    model_version,
                    timestamp,
                    features,
                    predicted_label: label,
                    predicted_value: value,
                    scores,
                    tags,
                }
            },
        )
}

pub fn ground_truth() -> impl Strategy<Value = GroundTruth> {
    (
        non_empty_string(),
        proptest::option::of(any::<String>()),
        any::<i64>(),
        proptest::option::of(any::<String>()),
        proptest::option::of(finite_f64()),
    )
        .prop_map(
            |(request_id, model_id, timestamp, label, value)| GroundTruth {
                request_id,
                model_id,
                timestamp,
                label,
                value,
            },
        )
}

/// Sorts every map of a prediction by key, for comparison with a `HashMap`-based decoder.
pub fn sorted(mut p: Prediction) -> Prediction {
    p.features.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(s) = p.scores.as_mut() {
        s.sort_by(|a, b| a.0.cmp(&b.0));
    }
    p.tags.sort_by(|a, b| a.0.cmp(&b.0));
    p
}

/// Decodes with apache-avro, resolving `writer` against `reader`.
pub fn avro_decode(writer: &Schema, reader: &Schema, datum: &[u8]) -> Value {
    let mut input = datum;
    let value = GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .build()
        .unwrap()
        .read_value(&mut input)
        .unwrap();
    assert!(input.is_empty(), "apache-avro left {} bytes", input.len());
    value
}

/// Encodes with apache-avro (validating against `schema`).
pub fn avro_encode(schema: &Schema, value: Value) -> Vec<u8> {
    GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

fn unwrap_union(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

fn field<'v>(fields: &'v [(String, Value)], name: &str) -> &'v Value {
    unwrap_union(
        &fields
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no field {name}"))
            .1,
    )
}

fn string(v: &Value) -> String {
    match unwrap_union(v) {
        Value::String(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn opt_string(v: &Value) -> Option<String> {
    match unwrap_union(v) {
        Value::Null => None,
        other => Some(string(other)),
    }
}

fn double(v: &Value) -> f64 {
    match unwrap_union(v) {
        Value::Double(x) => *x,
        Value::Float(x) => f64::from(*x),
        Value::Long(x) => *x as f64,
        Value::Int(x) => f64::from(*x),
        other => panic!("not a number: {other:?}"),
    }
}

fn long(v: &Value) -> i64 {
    match unwrap_union(v) {
        Value::Long(x) | Value::TimestampMillis(x) => *x,
        Value::Int(x) => i64::from(*x),
        other => panic!("not a long: {other:?}"),
    }
}

fn map(v: &Value) -> Vec<(String, Value)> {
    match unwrap_union(v) {
        Value::Map(m) => {
            let mut entries: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries
        }
        other => panic!("not a map: {other:?}"),
    }
}

fn record(v: &Value) -> &[(String, Value)] {
    match v {
        Value::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    }
}

/// A prediction from apache-avro's value (maps sorted by key).
pub fn prediction_from_value(v: &Value) -> Prediction {
    let f = record(v);
    Prediction {
        request_id: string(field(f, "request_id")),
        model_id: string(field(f, "model_id")),
        model_version: string(field(f, "model_version")),
        timestamp: long(field(f, "timestamp")),
        features: map(field(f, "features"))
            .into_iter()
            .map(|(k, v)| {
                let fv = match unwrap_union(&v) {
                    Value::Null => FeatureValue::Missing,
                    Value::String(s) => FeatureValue::Category(s.clone()),
                    other => FeatureValue::Number(double(other)),
                };
                (k, fv)
            })
            .collect(),
        predicted_label: opt_string(field(f, "predicted_label")),
        predicted_value: match field(f, "predicted_value") {
            Value::Null => None,
            other => Some(double(other)),
        },
        scores: match field(f, "scores") {
            Value::Null => None,
            other => Some(
                map(other)
                    .into_iter()
                    .map(|(k, v)| (k, double(&v)))
                    .collect(),
            ),
        },
        tags: map(field(f, "tags"))
            .into_iter()
            .map(|(k, v)| (k, string(&v)))
            .collect(),
    }
}

/// A ground truth from apache-avro's value.
pub fn ground_truth_from_value(v: &Value) -> GroundTruth {
    let f = record(v);
    GroundTruth {
        request_id: string(field(f, "request_id")),
        model_id: opt_string(field(f, "model_id")),
        timestamp: long(field(f, "timestamp")),
        label: opt_string(field(f, "label")),
        value: match field(f, "value") {
            Value::Null => None,
            other => Some(double(other)),
        },
    }
}

/// A realistic prediction with 20 features, half numeric and half categorical.
pub fn realistic_prediction() -> Prediction {
    let mut features = Vec::new();
    for i in 0..20 {
        let value = if i % 2 == 0 {
            FeatureValue::Number(f64::from(i) * 1.25 + 0.5)
        } else {
            FeatureValue::Category(format!("category_{}", i % 7))
        };
        features.push((format!("feature_{i:02}"), value));
    }
    Prediction {
        request_id: "0b6f7c9e-3d2a-4a53-9a47-2f1c3f6e8d10".into(),
        model_id: "fraud-detector".into(),
        model_version: "2026.11.3".into(),
        timestamp: 1_795_000_000_000,
        features,
        predicted_label: Some("legit".into()),
        predicted_value: None,
        scores: Some(vec![("legit".into(), 0.93), ("fraud".into(), 0.07)]),
        tags: vec![("region".into(), "eu-west-1".into())],
    }
}
