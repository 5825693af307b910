//! The whole per-message path of the join stage, on one core.
//!
//! Avro datum of a prediction with 20 features (12 numeric, 8 categorical; its size is printed
//! and quoted in BENCHMARKS.md) →
//! non-allocating decode whose visitor interns feature names and stages the values →
//! the values go into the `SignatureSummary` of the prediction's (model, version, 1-minute
//! bucket) → model and class interned, `PredictionIn` built and pushed into a `JoinTask`,
//! which is polled. Every message has a fresh request id and a timestamp 1 ms later than the
//! previous one (patched in place in the datum), so the join buffer sees new keys, the
//! watermark advances and entries expire (label timeout 10 s) as in steady state, and a new
//! bucket starts (and the old one is encoded with `to_bytes`) every 60 000 messages.
//!
//! Stages reported in the same run (each includes the harness's patching, reported alone as
//! `harness_patch_only`): apache-avro's generic `Value` decode + `from_value`
//! baseline on the same bytes, the fast decode alone, decode + summaries, and the whole path
//! (polling after every message, and after every 100 messages as a worker polls per batch).
//!
//! Run: `cargo bench -p driftwatch-codec --bench prediction_path`

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::hint::black_box;

use apache_avro::reader::datum::GenericDatumReader;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch_codec::borrowed::{FeatureRef, IgnoreEntries, NotUtf8, PredictionVisitor};
use driftwatch_codec::{to_avro, PredictionDecoder, PredictionRef, RecordKind};
use driftwatch_core::join::{
    Input, JoinConfig, JoinEvent, JoinTask, ModelVersionId, Predicted, PredictionIn, RequestKey,
};
use driftwatch_core::summary::{FeatureId, FeatureInterner, SignatureSummary};
use driftwatch_core::{FeatureValue, Prediction};
use serde::Deserialize;

const BASE_TS: i64 = 1_795_000_000_000;
const BUCKET_MS: i64 = 60_000;
const REQUEST_ID: &str = "req-0000000000000000";
const MAX_FEATURES: usize = 64;
const MAX_SCORES: usize = 16;

fn prediction() -> Prediction {
    let features = (0..20)
        .map(|i| {
            let value = if i < 12 {
                FeatureValue::Number(f64::from(i) * 1.25 + 0.5)
            } else {
                FeatureValue::Category(format!("category_{}", i % 7))
            };
            (format!("feature_{i:02}"), value)
        })
        .collect();
    Prediction {
        request_id: REQUEST_ID.into(),
        model_id: "fraud-detector".into(),
        model_version: "2026.11.3".into(),
        timestamp: BASE_TS,
        features,
        predicted_label: Some("legit".into()),
        predicted_value: None,
        scores: Some(vec![("legit".into(), 0.93), ("fraud".into(), 0.07)]),
        tags: vec![("region".into(), "eu-west-1".into())],
    }
}

/// The serde target of the apache-avro baseline.
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

/// Avro's zigzag varint of `v`: the bytes and their count (no allocation).
fn zigzag_varint(v: i64) -> ([u8; 10], usize) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = [0u8; 10];
    for (i, slot) in out.iter_mut().enumerate() {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            *slot = byte;
            return (out, i + 1);
        }
        *slot = byte | 0x80;
    }
    (out, 10)
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

/// A datum whose request id and timestamp are rewritten in place for every message.
struct Message {
    datum: Vec<u8>,
    id_at: usize,
    ts_at: usize,
    ts_len: usize,
    seq: u64,
}

impl Message {
    fn new() -> Self {
        let datum = to_avro(&prediction()).unwrap();
        let id_at = find(&datum, REQUEST_ID.as_bytes()) + 4;
        let (ts, ts_len) = zigzag_varint(BASE_TS);
        let ts_at = find(&datum, &ts[..ts_len]);
        // 10^8 ms later the varint still has the same length.
        assert_eq!(zigzag_varint(BASE_TS + 100_000_000).1, ts_len);
        Message {
            datum,
            id_at,
            ts_at,
            ts_len,
            seq: 0,
        }
    }

    fn next(&mut self) -> &[u8] {
        self.seq += 1;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = self.seq;
        for b in self.datum[self.id_at..self.id_at + 16].iter_mut().rev() {
            *b = HEX[(s & 15) as usize];
            s >>= 4;
        }
        let (ts, len) = zigzag_varint(BASE_TS + (self.seq % 100_000_000) as i64);
        if len == self.ts_len {
            self.datum[self.ts_at..self.ts_at + len].copy_from_slice(&ts[..len]);
        }
        &self.datum
    }
}

/// Interns feature names and stages the values until the prediction's bucket is known
/// (the model id and timestamp come back from the decoder after the maps). The buffers are
/// reused across messages (see [`recycle`]), as the worker's join stage does.
struct Staging<'a, 'i> {
    interner: &'i mut FeatureInterner,
    /// Each position's id in the previous message (producers keep feature order stable);
    /// once staged, the ids of this message's features.
    hints: &'i mut Vec<FeatureId>,
    /// Staged values, in the order of their ids in `hints`.
    features: Vec<Staged<'a>>,
    scores: Vec<(&'a str, f64)>,
    /// Names the interner refused (full).
    dropped: u64,
}

/// Reuses an emptied buffer's allocation for another lifetime: collecting an emptied
/// `vec::IntoIter` into a vector of a same-layout element type happens in place.
fn recycle<T, U>(v: Vec<T>) -> Vec<U> {
    v.into_iter().filter_map(|_| None).collect()
}

impl<'a> PredictionVisitor<'a> for Staging<'a, '_> {
    #[inline]
    fn feature(&mut self, name: &'a str, value: FeatureRef<'a>) {
        let hint = self.hint();
        match self.interner.intern_hinted(name, hint) {
            Ok(id) => self.stage(id, value),
            Err(_) => self.dropped += 1,
        }
    }

    /// The name is usually byte-equal to the one at the same position in the previous
    /// message: then it needs no UTF-8 validation and no hash lookup.
    #[inline(always)]
    fn feature_bytes(
        &mut self,
        name: &'a [u8],
        value: FeatureRef<'a>,
    ) -> std::result::Result<(), NotUtf8> {
        match self.interner.hinted(name, self.hint()) {
            Some(id) => self.stage(id, value),
            None => self.feature(std::str::from_utf8(name).map_err(|_| NotUtf8)?, value),
        }
        Ok(())
    }

    #[inline]
    fn score(&mut self, class: &'a str, p: f64) {
        if self.scores.len() < MAX_SCORES {
            self.scores.push((class, p));
        }
    }
}

impl<'a> Staging<'a, '_> {
    /// The id at this position in the previous message (an out-of-range id never matches).
    #[inline]
    fn hint(&self) -> FeatureId {
        self.hints
            .get(self.features.len())
            .copied()
            .unwrap_or(FeatureId(u16::MAX))
    }

    #[inline]
    fn stage(&mut self, id: FeatureId, value: FeatureRef<'a>) {
        match self.hints.get_mut(self.features.len()) {
            Some(h) => *h = id,
            None => self.hints.push(id),
        }
        self.features.push(Staged::from(value));
    }
}

/// A staged feature value, kept as plain fields rather than as a `FeatureRef`.
///
/// Why: a `FeatureRef` reaches the visitor through the stack as separately stored tag and
/// payload; pushing it whole read those back with one wide load, which stalls
/// store-to-load forwarding on every feature. Writing the fields one by one does not.
#[derive(Clone, Copy)]
struct Staged<'a> {
    kind: u8,
    number: f64,
    category: &'a str,
}

impl<'a> From<FeatureRef<'a>> for Staged<'a> {
    #[inline(always)]
    fn from(v: FeatureRef<'a>) -> Self {
        match v {
            FeatureRef::Missing => Staged {
                kind: 0,
                number: 0.0,
                category: "",
            },
            FeatureRef::Number(number) => Staged {
                kind: 1,
                number,
                category: "",
            },
            FeatureRef::Category(category) => Staged {
                kind: 2,
                number: 0.0,
                category,
            },
        }
    }
}

impl<'a> Staged<'a> {
    #[inline(always)]
    fn get(self) -> FeatureRef<'a> {
        match self.kind {
            1 => FeatureRef::Number(self.number),
            2 => FeatureRef::Category(self.category),
            _ => FeatureRef::Missing,
        }
    }
}

/// The join stage's per-task state.
struct Stage {
    decoder: PredictionDecoder,
    interner: FeatureInterner,
    hints: Vec<FeatureId>,
    /// Staging buffers kept between messages (empty, lifetime-erased).
    features: Vec<Staged<'static>>,
    scores: Vec<(&'static str, f64)>,
    task: JoinTask,
    /// The open bucket: (model, bucket start) and its signature.
    current: Option<((ModelVersionId, i64), SignatureSummary)>,
    closed_bytes: usize,
    events: u64,
    dropped: u64,
}

impl Stage {
    fn new() -> Self {
        let config = JoinConfig {
            label_timeout_ms: 10_000,
            orphan_timeout_ms: 10_000,
            ..JoinConfig::default()
        };
        let mut task = JoinTask::new(config).unwrap();
        // Only predictions flow here: the label input is caught up and idle.
        task.set_caught_up(Input::Labels, true);
        Stage {
            decoder: PredictionDecoder::current().unwrap(),
            interner: FeatureInterner::new(),
            hints: Vec::with_capacity(MAX_FEATURES),
            features: Vec::with_capacity(MAX_FEATURES),
            scores: Vec::with_capacity(MAX_SCORES),
            task,
            current: None,
            closed_bytes: 0,
            events: 0,
            dropped: 0,
        }
    }

    /// Decodes and summarizes one message; returns the prediction for the join.
    #[inline]
    fn summarize(&mut self, datum: &[u8]) -> Option<PredictionIn> {
        let mut staging = Staging {
            interner: &mut self.interner,
            hints: &mut self.hints,
            features: recycle(std::mem::take(&mut self.features)),
            scores: recycle(std::mem::take(&mut self.scores)),
            dropped: 0,
        };
        let decoded = self.decoder.decode(datum, &mut staging);
        let out = decoded.ok().and_then(|head| {
            let model = self
                .task
                .intern_model(head.model_id, head.model_version)
                .ok()?;
            let bucket = head.timestamp - head.timestamp.rem_euclid(BUCKET_MS);
            self.dropped += staging.dropped;
            let sig = open_bucket(
                &mut self.current,
                (model, bucket),
                staging.interner,
                &mut self.closed_bytes,
            );
            let applied = Applied {
                ids: &staging.hints[..staging.features.len()],
                values: &staging.features,
                scores: &staging.scores,
            };
            applied.apply(&head, sig);
            let predicted = match head.predicted_label {
                Some(l) => self
                    .task
                    .intern_class(l)
                    .map_or(Predicted::None, Predicted::Class),
                None => head
                    .predicted_value
                    .map_or(Predicted::None, Predicted::Value),
            };
            let score = head
                .predicted_label
                .and_then(|l| applied.score_of(l))
                .map(|p| p as f32);
            Some(PredictionIn {
                key: RequestKey::from_request_id(head.request_id),
                model,
                time: head.timestamp,
                predicted,
                score,
            })
        });
        self.features = recycle(staging.features);
        self.scores = recycle(staging.scores);
        out
    }

    /// Pushes into the join task and polls it. Processing time runs with event time here, so
    /// the idle label input stops holding the watermark back after `idle_timeout_ms`.
    fn join(&mut self, p: PredictionIn, poll: bool) {
        let now_ms = p.time;
        self.task.push_prediction(p);
        if poll {
            let events = &mut self.events;
            self.task.poll(now_ms, &mut |e: JoinEvent| {
                black_box(&e);
                *events += 1;
            });
        }
    }
}

/// The signature of `key`, closing (encoding) the previous bucket when the key changes.
fn open_bucket<'c>(
    current: &'c mut Option<((ModelVersionId, i64), SignatureSummary)>,
    key: (ModelVersionId, i64),
    interner: &FeatureInterner,
    closed_bytes: &mut usize,
) -> &'c mut SignatureSummary {
    if current.as_ref().map(|(k, _)| *k) != Some(key) {
        if let Some((_, mut done)) = current.take() {
            done.flush();
            *closed_bytes += done.to_bytes(interner).map_or(0, |b| b.len());
        }
    }
    &mut current
        .get_or_insert_with(|| (key, SignatureSummary::new()))
        .1
}

struct Applied<'s, 'a> {
    ids: &'s [FeatureId],
    values: &'s [Staged<'a>],
    scores: &'s [(&'a str, f64)],
}

impl<'a> Applied<'_, 'a> {
    fn apply(&self, head: &PredictionRef<'a>, s: &mut SignatureSummary) {
        for (id, v) in self.ids.iter().zip(self.values) {
            match v.get() {
                FeatureRef::Missing => s.update_missing(*id),
                FeatureRef::Number(x) => s.update_number(*id, x),
                FeatureRef::Category(c) => s.update_category(*id, c),
            }
        }
        let score = head.predicted_label.and_then(|l| self.score_of(l));
        s.update_output(head.predicted_label, head.predicted_value, score);
    }

    fn score_of(&self, class: &str) -> Option<f64> {
        self.scores
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, p)| *p)
    }
}

fn bench(c: &mut Criterion) {
    let mut msg = Message::new();
    println!("prediction datum: {} bytes", msg.datum.len());
    let mut group = c.benchmark_group("prediction_path");
    group.throughput(Throughput::Elements(1));

    // The harness's own cost (new request id and timestamp written into the datum), included
    // in every figure below.
    group.bench_function("harness_patch_only", |b| {
        b.iter(|| black_box(msg.next().len()))
    });

    let schema = RecordKind::Prediction.schema().unwrap();
    let reader = GenericDatumReader::builder(schema)
        .reader_schema(schema)
        .build()
        .unwrap();
    group.bench_function("baseline_apache_avro_value_from_value", |b| {
        b.iter(|| {
            let datum = msg.next();
            let value = reader.read_value(&mut black_box(datum)).unwrap();
            let p: AvroPrediction = apache_avro::from_value(&value).unwrap();
            black_box(p)
        })
    });

    let decoder = PredictionDecoder::current().unwrap();
    group.bench_function("fast_decode_only", |b| {
        b.iter(|| {
            let datum = msg.next();
            black_box(
                decoder
                    .decode(black_box(datum), &mut IgnoreEntries)
                    .unwrap()
                    .timestamp,
            )
        })
    });

    let mut stage = Stage::new();
    group.bench_function("decode_and_summaries", |b| {
        b.iter(|| {
            let datum = msg.next();
            black_box(stage.summarize(black_box(datum)))
        })
    });

    let mut stage = Stage::new();
    group.bench_function("whole_path_poll_each", |b| {
        b.iter(|| {
            let datum = msg.next();
            if let Some(p) = stage.summarize(black_box(datum)) {
                stage.join(p, true);
            }
        })
    });
    assert_eq!(stage.dropped, 0);
    println!(
        "whole_path_poll_each: {} join events, {} buffered, {} bytes of closed buckets",
        stage.events,
        stage.task.buffer().len(),
        stage.closed_bytes
    );

    let mut stage = Stage::new();
    let mut n = 0u64;
    group.bench_function("whole_path_poll_every_100", |b| {
        b.iter(|| {
            let datum = msg.next();
            if let Some(p) = stage.summarize(black_box(datum)) {
                n += 1;
                stage.join(p, n % 100 == 0);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
