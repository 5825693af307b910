//! Decoding one realistic prediction (20 features, half numeric, half categorical; the bench
//! prints its size, BENCHMARKS.md quotes it with the figures):
//! apache-avro's generic path, the fast decoder with a visitor, the fast decoder resolving an
//! older writer schema, and the fast decoder building the owned record.
//!
//! Run: `cargo bench -p driftwatch-codec --bench decode`

use std::collections::HashMap;
use std::hint::black_box;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch_codec::borrowed::{FeatureRef, PredictionVisitor};
use driftwatch_codec::{to_avro, PredictionDecoder, RecordKind};
use driftwatch_core::{FeatureValue, Prediction};
use serde::Deserialize;

fn realistic_prediction() -> Prediction {
    let features = (0..20)
        .map(|i| {
            let value = if i % 2 == 0 {
                FeatureValue::Number(f64::from(i) * 1.25 + 0.5)
            } else {
                FeatureValue::Category(format!("category_{}", i % 7))
            };
            (format!("feature_{i:02}"), value)
        })
        .collect();
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

/// The serde target of the apache-avro baseline: what a typical consumer would deserialize to.
#[derive(Deserialize)]
#[allow(dead_code)]
struct AvroPrediction {
    request_id: String,
    model_id: String,
    model_version: String,
    timestamp: i64,
    features: HashMap<String, Option<AvroFeature>>,
    predicted_label: Option<String>,
    predicted_value: Option<f64>,
    scores: Option<HashMap<String, f64>>,
    tags: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum AvroFeature {
    Number(f64),
    Category(String),
}

/// Touches every entry so nothing is optimized away.
#[derive(Default)]
struct Sum {
    numbers: f64,
    string_bytes: usize,
}

impl<'a> PredictionVisitor<'a> for Sum {
    fn feature(&mut self, name: &'a str, value: FeatureRef<'a>) {
        self.string_bytes += name.len();
        match value {
            FeatureRef::Missing => {}
            FeatureRef::Number(x) => self.numbers += x,
            FeatureRef::Category(s) => self.string_bytes += s.len(),
        }
    }
    fn score(&mut self, _: &'a str, p: f64) {
        self.numbers += p;
    }
    fn tag(&mut self, _: &'a str, v: &'a str) {
        self.string_bytes += v.len();
    }
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

fn old_writer_datum(old: &Schema, p: &Prediction) -> Vec<u8> {
    let features = p
        .features
        .iter()
        .map(|(k, v)| {
            let v = match v {
                FeatureValue::Missing => Value::Union(0, Box::new(Value::Null)),
                FeatureValue::Number(x) => Value::Union(1, Box::new(Value::Double(*x))),
                FeatureValue::Category(s) => Value::Union(2, Box::new(Value::String(s.clone()))),
            };
            (k.clone(), v)
        })
        .collect();
    let value = Value::Record(vec![
        ("request_id".into(), Value::String(p.request_id.clone())),
        ("model_id".into(), Value::String(p.model_id.clone())),
        (
            "model_version".into(),
            Value::String(p.model_version.clone()),
        ),
        ("timestamp".into(), Value::TimestampMillis(p.timestamp)),
        ("features".into(), Value::Map(features)),
        (
            "predicted_label".into(),
            Value::Union(1, Box::new(Value::String("legit".into()))),
        ),
        (
            "predicted_value".into(),
            Value::Union(0, Box::new(Value::Null)),
        ),
    ]);
    GenericDatumWriter::builder(old)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .expect("old writer datum")
}

fn bench(c: &mut Criterion) {
    let schema = RecordKind::Prediction.schema().expect("schema");
    let p = realistic_prediction();
    let datum = to_avro(&p).expect("encode");
    println!("prediction datum: {} bytes", datum.len());

    let mut group = c.benchmark_group("decode_prediction");
    group.throughput(Throughput::Elements(1));

    let reader = GenericDatumReader::builder(schema)
        .reader_schema(schema)
        .build()
        .expect("reader");
    group.bench_function("apache_avro_value_then_from_value", |b| {
        b.iter(|| {
            let value = reader
                .read_value(&mut black_box(&datum[..]))
                .expect("value");
            let p: AvroPrediction = apache_avro::from_value(&value).expect("from_value");
            black_box(p)
        })
    });

    let fast = PredictionDecoder::current().expect("decoder");
    group.bench_function("fast_visitor", |b| {
        b.iter(|| {
            let mut sum = Sum::default();
            let head = fast.decode(black_box(&datum), &mut sum).expect("decode");
            black_box((head.timestamp, sum.numbers, sum.string_bytes))
        })
    });

    let old = Schema::parse_str(OLD_WRITER).expect("old schema");
    let old_datum = old_writer_datum(&old, &p);
    let resolving = PredictionDecoder::new(&old, schema).expect("resolving decoder");
    group.bench_function("fast_visitor_older_writer", |b| {
        b.iter(|| {
            let mut sum = Sum::default();
            let head = resolving
                .decode(black_box(&old_datum), &mut sum)
                .expect("decode");
            black_box((head.timestamp, sum.numbers, sum.string_bytes))
        })
    });

    group.bench_function("fast_owned_record", |b| {
        b.iter(|| black_box(fast.decode_owned(black_box(&datum)).expect("decode")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
