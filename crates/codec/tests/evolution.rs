//! Schema evolution: datums written with older and newer Prediction/GroundTruth schemas decode
//! with the current reader schema, and agree with apache-avro's resolution of the same bytes.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use std::collections::HashMap;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::Schema;
use common::*;
use driftwatch_codec::borrowed::{FeatureRef, PredictionVisitor};
use driftwatch_codec::{from_avro_resolving, GroundTruthDecoder, PredictionDecoder, RecordKind};
use driftwatch_core::{FeatureValue, GroundTruth, Prediction};

fn current() -> &'static Schema {
    RecordKind::Prediction.schema().unwrap()
}

/// Features as an Avro map value, with union branch indexes of `order` (e.g. ["null","double","string"]).
fn features_value(p: &Prediction, order: &[&str]) -> Value {
    let index = |name: &str| order.iter().position(|b| *b == name).unwrap() as u32;
    let map: HashMap<String, Value> = p
        .features
        .iter()
        .map(|(k, v)| {
            let v = match v {
                FeatureValue::Missing => Value::Union(index("null"), Box::new(Value::Null)),
                FeatureValue::Number(x) => {
                    Value::Union(index("double"), Box::new(Value::Double(*x)))
                }
                FeatureValue::Category(s) => {
                    Value::Union(index("string"), Box::new(Value::String(s.clone())))
                }
            };
            (k.clone(), v)
        })
        .collect();
    Value::Map(map)
}

fn opt_string(v: &Option<String>, null_index: u32, string_index: u32) -> Value {
    match v {
        None => Value::Union(null_index, Box::new(Value::Null)),
        Some(s) => Value::Union(string_index, Box::new(Value::String(s.clone()))),
    }
}

fn opt_double(v: Option<f64>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(x) => Value::Union(1, Box::new(Value::Double(x))),
    }
}

/// Decodes with the fast decoder (current reader) and with apache-avro, and checks they agree.
fn both(writer: &Schema, datum: &[u8]) -> Prediction {
    let ours = sorted(from_avro_resolving::<Prediction>(writer, datum).unwrap());
    let reference = prediction_from_value(&avro_decode(writer, current(), datum));
    assert_eq!(ours, reference);
    ours
}

const OLD_WRITER: &str = r#"{"type":"record","name":"Prediction","namespace":"io.driftwatch","fields":[
  {"name":"request_id","type":"string"},
  {"name":"model_id","type":"string"},
  {"name":"model_version","type":"string"},
  {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"features","type":{"type":"map","values":["null","double","string"]}},
  {"name":"predicted_label","type":["null","string"],"default":null},
  {"name":"predicted_value","type":["null","double"],"default":null}
]}"#;

#[test]
fn older_writer_without_scores_and_tags_gets_reader_defaults() {
    let writer = Schema::parse_str(OLD_WRITER).unwrap();
    let p = realistic_prediction();
    let value = Value::Record(vec![
        ("request_id".into(), Value::String(p.request_id.clone())),
        ("model_id".into(), Value::String(p.model_id.clone())),
        (
            "model_version".into(),
            Value::String(p.model_version.clone()),
        ),
        ("timestamp".into(), Value::TimestampMillis(p.timestamp)),
        (
            "features".into(),
            features_value(&p, &["null", "double", "string"]),
        ),
        (
            "predicted_label".into(),
            opt_string(&p.predicted_label, 0, 1),
        ),
        ("predicted_value".into(), opt_double(p.predicted_value)),
    ]);
    let datum = avro_encode(&writer, value);
    let decoded = both(&writer, &datum);
    let expected = sorted(Prediction {
        scores: None,
        tags: vec![],
        ..p
    });
    assert_eq!(decoded, expected);
}

const NEW_WRITER: &str = r#"{"type":"record","name":"Prediction","namespace":"io.driftwatch","fields":[
  {"name":"request_id","type":"string"},
  {"name":"region","type":"string"},
  {"name":"model_id","type":"string"},
  {"name":"model_version","type":"string"},
  {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"trace","type":{"type":"array","items":{"type":"record","name":"Span","fields":[
     {"name":"name","type":"string"},
     {"name":"micros","type":"long"},
     {"name":"kind","type":{"type":"enum","name":"SpanKind","symbols":["CLIENT","SERVER"]}},
     {"name":"id","type":{"type":"fixed","name":"SpanId","size":4}},
     {"name":"parent","type":["null","SpanId"]},
     {"name":"attrs","type":{"type":"map","values":["null","boolean","float","bytes"]}}]}},
   "default":[]},
  {"name":"features","type":{"type":"map","values":["string","double","null"]}},
  {"name":"predicted_label","type":["string","null"]},
  {"name":"predicted_value","type":["null","double"],"default":null},
  {"name":"scores","type":["null",{"type":"map","values":"double"}],"default":null},
  {"name":"tags","type":{"type":"map","values":"string"},"default":{}},
  {"name":"checksum","type":"bytes"},
  {"name":"latency_ms","type":"long","default":0}
]}"#;

#[test]
fn newer_writer_with_extra_fields_and_reordered_unions_decodes() {
    let writer = Schema::parse_str(NEW_WRITER).unwrap();
    let p = realistic_prediction();
    let span = |name: &str, parent: bool| {
        Value::Record(vec![
            ("name".into(), Value::String(name.into())),
            ("micros".into(), Value::Long(1234)),
            ("kind".into(), Value::Enum(1, "SERVER".into())),
            ("id".into(), Value::Fixed(4, vec![1, 2, 3, 4])),
            (
                "parent".into(),
                if parent {
                    Value::Union(1, Box::new(Value::Fixed(4, vec![9, 9, 9, 9])))
                } else {
                    Value::Union(0, Box::new(Value::Null))
                },
            ),
            (
                "attrs".into(),
                Value::Map(HashMap::from([
                    ("ok".into(), Value::Union(1, Box::new(Value::Boolean(true)))),
                    ("w".into(), Value::Union(2, Box::new(Value::Float(0.5)))),
                    (
                        "raw".into(),
                        Value::Union(3, Box::new(Value::Bytes(vec![0, 255]))),
                    ),
                    ("n".into(), Value::Union(0, Box::new(Value::Null))),
                ])),
            ),
        ])
    };
    let value = Value::Record(vec![
        ("request_id".into(), Value::String(p.request_id.clone())),
        ("region".into(), Value::String("eu-west-1".into())),
        ("model_id".into(), Value::String(p.model_id.clone())),
        (
            "model_version".into(),
            Value::String(p.model_version.clone()),
        ),
        ("timestamp".into(), Value::TimestampMillis(p.timestamp)),
        (
            "trace".into(),
            Value::Array(vec![span("a", false), span("b", true)]),
        ),
        (
            "features".into(),
            features_value(&p, &["string", "double", "null"]),
        ),
        (
            "predicted_label".into(),
            opt_string(&p.predicted_label, 1, 0),
        ),
        ("predicted_value".into(), opt_double(p.predicted_value)),
        (
            "scores".into(),
            Value::Union(
                1,
                Box::new(Value::Map(
                    p.scores
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), Value::Double(*v)))
                        .collect(),
                )),
            ),
        ),
        (
            "tags".into(),
            Value::Map(
                p.tags
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        ),
        ("checksum".into(), Value::Bytes(vec![7; 32])),
        ("latency_ms".into(), Value::Long(17)),
    ]);
    let datum = avro_encode(&writer, value);
    assert_eq!(both(&writer, &datum), sorted(p));
}

#[test]
fn numeric_promotions_apply() {
    let writer = Schema::parse_str(
        r#"{"type":"record","name":"Prediction","namespace":"io.driftwatch","fields":[
          {"name":"request_id","type":"string"},
          {"name":"model_id","type":"string"},
          {"name":"model_version","type":"string"},
          {"name":"timestamp","type":"int"},
          {"name":"features","type":{"type":"map","values":["null","int","long","float","string"]}},
          {"name":"predicted_value","type":["null","float"]},
          {"name":"scores","type":{"type":"map","values":"long"}}
        ]}"#,
    )
    .unwrap();
    let value = Value::Record(vec![
        ("request_id".into(), Value::String("r".into())),
        ("model_id".into(), Value::String("m".into())),
        ("model_version".into(), Value::String("1".into())),
        ("timestamp".into(), Value::Int(-7)),
        (
            "features".into(),
            Value::Map(HashMap::from([
                ("i".into(), Value::Union(1, Box::new(Value::Int(3)))),
                ("l".into(), Value::Union(2, Box::new(Value::Long(1 << 40)))),
                ("f".into(), Value::Union(3, Box::new(Value::Float(0.25)))),
                (
                    "s".into(),
                    Value::Union(4, Box::new(Value::String("x".into()))),
                ),
            ])),
        ),
        (
            "predicted_value".into(),
            Value::Union(1, Box::new(Value::Float(2.5))),
        ),
        (
            "scores".into(),
            Value::Map(HashMap::from([("a".into(), Value::Long(1))])),
        ),
    ]);
    let datum = avro_encode(&writer, value);
    let ours = both(&writer, &datum);
    assert_eq!(ours.timestamp, -7);
    assert_eq!(ours.predicted_value, Some(2.5));
    assert_eq!(ours.scores, Some(vec![("a".into(), 1.0)]));
    assert_eq!(
        ours.features,
        vec![
            ("f".to_string(), FeatureValue::Number(0.25)),
            ("i".to_string(), FeatureValue::Number(3.0)),
            ("l".to_string(), FeatureValue::Number((1u64 << 40) as f64)),
            ("s".to_string(), FeatureValue::Category("x".into())),
        ]
    );
}

#[test]
fn reader_defaults_and_aliases_are_honoured() {
    // A reader that gives model_version and features defaults and reads `label` into
    // predicted_label through an alias.
    let reader = Schema::parse_str(
        r#"{"type":"record","name":"Prediction","namespace":"io.driftwatch","fields":[
          {"name":"request_id","type":"string"},
          {"name":"model_id","type":"string"},
          {"name":"model_version","type":"string","default":"unknown"},
          {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}},
          {"name":"features","type":{"type":"map","values":["null","double","string"]},
           "default":{"bias":1.0,"segment":"all"}},
          {"name":"predicted_label","type":["null","string"],"default":null,"aliases":["label"]}
        ]}"#,
    )
    .unwrap();
    let writer = Schema::parse_str(
        r#"{"type":"record","name":"Prediction","namespace":"io.driftwatch","fields":[
          {"name":"request_id","type":"string"},
          {"name":"model_id","type":"string"},
          {"name":"timestamp","type":"long"},
          {"name":"label","type":"string"}
        ]}"#,
    )
    .unwrap();
    let datum = avro_encode(
        &writer,
        Value::Record(vec![
            ("request_id".into(), Value::String("r".into())),
            ("model_id".into(), Value::String("m".into())),
            ("timestamp".into(), Value::Long(9)),
            ("label".into(), Value::String("cat".into())),
        ]),
    );
    #[derive(Default)]
    struct Names(Vec<(String, FeatureValue)>);
    impl<'a> PredictionVisitor<'a> for Names {
        fn feature(&mut self, name: &'a str, value: FeatureRef<'a>) {
            self.0.push((name.to_owned(), value.to_owned_value()));
        }
    }
    let decoder = PredictionDecoder::new(&writer, &reader).unwrap();
    let mut names = Names::default();
    let head = decoder.decode(&datum, &mut names).unwrap();
    assert_eq!(head.model_version, "unknown");
    assert_eq!(head.predicted_label, Some("cat"));
    assert_eq!(head.timestamp, 9);
    names.0.sort_by(|a, b| a.0.cmp(&b.0));

    // apache-avro's resolution of the same bytes with the same reader.
    let reference = avro_decode(&writer, &reader, &datum);
    let Value::Record(fields) = reference else {
        panic!()
    };
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(
        get("model_version"),
        Value::String(head.model_version.into())
    );
    let Value::Map(features) = get("features") else {
        panic!()
    };
    let mut expected: Vec<_> = features
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Union(_, b) => *b,
                other => other,
            };
            let fv = match v {
                Value::Double(x) => FeatureValue::Number(x),
                Value::String(s) => FeatureValue::Category(s),
                _ => FeatureValue::Missing,
            };
            (k, fv)
        })
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(names.0, expected);
}

#[test]
fn incompatible_writers_are_rejected_when_the_decoder_is_built() {
    let cases = [
        // request_id of the wrong type.
        r#"{"type":"record","name":"Prediction","fields":[
            {"name":"request_id","type":"long"},{"name":"model_id","type":"string"},
            {"name":"model_version","type":"string"},{"name":"timestamp","type":"long"}]}"#,
        // timestamp missing, and the reader has no default for it.
        r#"{"type":"record","name":"Prediction","fields":[
            {"name":"request_id","type":"string"},{"name":"model_id","type":"string"},
            {"name":"model_version","type":"string"}]}"#,
        // features values that can never be a feature.
        r#"{"type":"record","name":"Prediction","fields":[
            {"name":"request_id","type":"string"},{"name":"model_id","type":"string"},
            {"name":"model_version","type":"string"},{"name":"timestamp","type":"long"},
            {"name":"features","type":{"type":"map","values":{"type":"array","items":"long"}}}]}"#,
    ];
    for text in cases {
        let writer = Schema::parse_str(text).unwrap();
        let err = PredictionDecoder::new(&writer, current()).err().unwrap();
        assert_eq!(err.kind(), "incompatible_schemas", "{err}");
        // apache-avro's checker agrees.
        assert!(SchemaCompatibility::can_read(&writer, current()).is_err());
    }
    assert_eq!(
        PredictionDecoder::new(&Schema::String, current())
            .err()
            .unwrap()
            .kind(),
        "incompatible_schemas"
    );
}

#[test]
fn a_writer_union_branch_the_reader_lacks_fails_only_when_used() {
    let writer = Schema::parse_str(
        r#"{"type":"record","name":"GroundTruth","fields":[
            {"name":"request_id","type":"string"},
            {"name":"timestamp","type":"long"},
            {"name":"value","type":["null","double","boolean"]}]}"#,
    )
    .unwrap();
    let reader = RecordKind::GroundTruth.schema().unwrap();
    let decoder = GroundTruthDecoder::new(&writer, reader).unwrap();
    let datum = |branch: u32, v: Value| {
        avro_encode(
            &writer,
            Value::Record(vec![
                ("request_id".into(), Value::String("r".into())),
                ("timestamp".into(), Value::Long(1)),
                ("value".into(), Value::Union(branch, Box::new(v))),
            ]),
        )
    };
    let ok = datum(1, Value::Double(0.5));
    let g: GroundTruth = decoder.decode_owned(&ok).unwrap();
    assert_eq!(g.value, Some(0.5));
    assert_eq!(
        g,
        ground_truth_from_value(&avro_decode(&writer, reader, &ok))
    );
    let bad = datum(2, Value::Boolean(true));
    assert_eq!(
        decoder.decode_owned(&bad).unwrap_err().kind(),
        "invalid_data"
    );
}
