//! A deterministic mixed workload for the join stage and its offline reference result.
//!
//! Predictions of three models, labels with realistic delays (some beyond the timeout, some
//! never), duplicates on both sides, labels without predictions, and garbage; `model-0`'s
//! accuracy drops from 80 % to 30 % halfway (the drift a monitor must report). The reference
//! applies the join rule directly — label matches iff `label_time − prediction_time ≤ timeout`,
//! first wins — with no Kafka, no watermark and no buffer, so the pipeline's counts must equal it.

use std::collections::BTreeMap;
use std::time::Duration;

use driftwatch_codec::{encode_framed, to_avro, to_json};
use driftwatch_core::{GroundTruth, JoinCounters, Prediction};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Which input a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Predictions,
    Labels,
}

/// One record to produce.
#[derive(Debug, Clone)]
pub struct Record {
    pub side: Side,
    pub key: String,
    pub payload: Vec<u8>,
    pub time: i64,
}

/// The workload and what the join must make of it.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub records: Vec<Record>,
    /// Expected counters per model id (all models use version `v1`; unattributable garbage is
    /// under `unknown`).
    pub expected: BTreeMap<String, JoinCounters>,
    /// Expected confusion cells per model id: (predicted, actual) → count.
    pub confusion: BTreeMap<String, BTreeMap<(String, String), u64>>,
    pub garbage: u64,
}

pub const LABEL_TIMEOUT_MS: i64 = 10 * 60_000;
/// How far out of event-time order the scenario's records come, at most.
const JITTER_MS: i64 = 2_000;
/// `join.max_message_bytes` of the tests: the scenario sends two messages just above it.
pub const OVERSIZED_LIMIT: usize = 64 * 1024;
const CLASSES: [&str; 3] = ["cat", "dog", "bird"];

impl Scenario {
    /// `n` predictions starting at `start_ms`, 10 ms apart.
    pub fn generate(seed: u64, n: usize, start_ms: i64) -> Scenario {
        Self::generate_timed(seed, n, start_ms, 10, 1)
    }

    /// [`Scenario::generate`] with predictions `spacing_ms` apart and every label delay and
    /// the label timeout ([`LABEL_TIMEOUT_MS`]) `scale` times as long: e.g. `scale` 288 makes
    /// the timeout 2 days, most labels 0–24 h late and the late ones 2.2–3 days. The workers
    /// must then run with `LABEL_TIMEOUT_MS × scale` as label and orphan timeout.
    pub fn generate_timed(
        seed: u64,
        n: usize,
        start_ms: i64,
        spacing_ms: i64,
        scale: i64,
    ) -> Scenario {
        let timeout = LABEL_TIMEOUT_MS * scale;
        let span = n as i64 * spacing_ms;
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut records = Vec::new();
        let mut expected: BTreeMap<String, JoinCounters> = BTreeMap::new();
        let mut confusion: BTreeMap<String, BTreeMap<(String, String), u64>> = BTreeMap::new();
        let mut garbage = 0u64;
        for i in 0..n {
            let model = format!("model-{}", i % 3);
            let id = format!("req-{seed}-{i}");
            let tp = start_ms + i as i64 * spacing_ms;
            let predicted = CLASSES[rng.gen_range(0..3)];
            let p = Prediction {
                request_id: id.clone(),
                model_id: model.clone(),
                model_version: "v1".into(),
                timestamp: tp,
                features: vec![],
                predicted_label: Some(predicted.into()),
                predicted_value: None,
                scores: Some(vec![(predicted.into(), 0.6)]),
                tags: vec![],
            };
            // Every 50th request travels in the JSON form instead of Avro.
            let json = i % 50 == 0;
            let pb = if json {
                to_json(&p).expect("json").into_bytes()
            } else {
                to_avro(&p).expect("encode")
            };
            let c = expected.entry(model.clone()).or_default();
            c.predictions += 1;
            records.push(Record {
                side: Side::Predictions,
                key: id.clone(),
                payload: pb.clone(),
                time: tp,
            });
            let roll: f64 = rng.gen();
            // 10 % never labeled.
            if roll < 0.10 {
                c.expired_unlabeled += 1;
                if rng.gen_bool(0.02) {
                    c.predictions += 1;
                    c.duplicate_predictions += 1;
                    records.push(Record {
                        side: Side::Predictions,
                        key: id.clone(),
                        payload: pb,
                        time: tp,
                    });
                }
                continue;
            }
            // 4 % labeled too late (11–15 min), the rest within 0–5 min; 1 % stamped before
            // the prediction.
            let delay = scale
                * if roll < 0.14 {
                    rng.gen_range(11 * 60_000..15 * 60_000)
                } else if roll < 0.15 {
                    -rng.gen_range(1..2_000)
                } else {
                    rng.gen_range(0..5 * 60_000)
                };
            let tl = tp + delay;
            // model-0 drifts halfway: from 80 % right to 30 %.
            let right = if i % 3 == 0 && i >= n / 2 { 0.3 } else { 0.8 };
            let actual = if rng.gen_bool(right) {
                predicted
            } else {
                CLASSES[rng.gen_range(0..3)]
            };
            let l = GroundTruth {
                request_id: id.clone(),
                model_id: Some(model.clone()),
                timestamp: tl,
                label: Some(actual.into()),
                value: None,
            };
            let lb = if json {
                to_json(&l).expect("json").into_bytes()
            } else {
                to_avro(&l).expect("encode")
            };
            c.labels += 1;
            records.push(Record {
                side: Side::Labels,
                key: id.clone(),
                payload: lb.clone(),
                time: tl,
            });
            if delay <= timeout {
                c.matched += 1;
                *confusion
                    .entry(model.clone())
                    .or_default()
                    .entry((predicted.to_string(), actual.to_string()))
                    .or_default() += 1;
                // Duplicates of matched requests, on either side, sent at the same time.
                if rng.gen_bool(0.01) {
                    c.labels += 1;
                    c.duplicate_labels += 1;
                    records.push(Record {
                        side: Side::Labels,
                        key: id.clone(),
                        payload: lb,
                        time: tl,
                    });
                }
                if rng.gen_bool(0.01) {
                    c.predictions += 1;
                    c.duplicate_predictions += 1;
                    records.push(Record {
                        side: Side::Predictions,
                        key: id,
                        payload: pb,
                        time: tp,
                    });
                }
            } else {
                c.expired_unlabeled += 1;
                c.late_labels += 1;
            }
        }
        // Labels whose prediction never comes.
        for j in 0..(n / 50) {
            let model = format!("model-{}", j % 3);
            let tl = start_ms + rng.gen_range(0..span);
            let l = GroundTruth {
                request_id: format!("orphan-{seed}-{j}"),
                model_id: Some(model.clone()),
                timestamp: tl,
                label: Some("cat".into()),
                value: None,
            };
            let c = expected.entry(model).or_default();
            c.labels += 1;
            c.orphan_labels += 1;
            records.push(Record {
                side: Side::Labels,
                key: l.request_id.clone(),
                payload: to_avro(&l).expect("encode"),
                time: tl,
            });
        }
        // Garbage on both inputs: bytes that are no datum.
        let unknown = expected.entry("unknown".into()).or_default();
        for j in 0..(n / 200) {
            let t = start_ms + rng.gen_range(0..span);
            let side = if j % 2 == 0 {
                Side::Predictions
            } else {
                Side::Labels
            };
            let payload: Vec<u8> = (0..rng.gen_range(1..40))
                .map(|_| rng.gen_range(1..=255u8))
                .collect();
            match side {
                Side::Predictions => unknown.predictions += 1,
                Side::Labels => unknown.labels += 1,
            }
            unknown.dead_lettered += 1;
            garbage += 1;
            records.push(Record {
                side,
                key: format!("garbage-{seed}-{j}"),
                payload,
                time: t,
            });
        }
        // A prediction stamped in the year 3000 (absurd timestamp, attributed to its model)
        // and one framed with a schema id nobody registered.
        for j in 0..(n / 500) {
            let model = format!("model-{}", j % 3);
            let p = Prediction {
                request_id: format!("future-{seed}-{j}"),
                model_id: model.clone(),
                model_version: "v1".into(),
                timestamp: 32_503_680_000_000,
                features: vec![],
                predicted_label: Some("cat".into()),
                predicted_value: None,
                scores: None,
                tags: vec![],
            };
            let datum = to_avro(&p).expect("encode");
            let (payload, c) = if j % 2 == 0 {
                (datum, expected.entry(model).or_default())
            } else {
                (
                    encode_framed(4_000_000 + j as u32, &datum),
                    expected.entry("unknown".into()).or_default(),
                )
            };
            c.predictions += 1;
            c.dead_lettered += 1;
            garbage += 1;
            records.push(Record {
                side: Side::Predictions,
                key: format!("bad-{seed}-{j}"),
                payload,
                time: start_ms,
            });
        }
        // Oversized messages (larger than OVERSIZED_LIMIT, the limit the tests configure).
        for j in 0..2 {
            let unknown = expected.entry("unknown".into()).or_default();
            unknown.predictions += 1;
            unknown.dead_lettered += 1;
            garbage += 1;
            records.push(Record {
                side: Side::Predictions,
                key: format!("oversized-{seed}-{j}"),
                payload: vec![0xff; OVERSIZED_LIMIT + 1],
                time: start_ms,
            });
        }
        // Time order with local shuffles: records arrive a little out of order, as from real
        // producers, by at most `JITTER_MS` of event time, well inside the allowed lateness.
        // The bound is in time, not in records: where records are sparse (the tail of
        // multi-day label delays) a shuffle of n neighbours would reorder by hours, and the
        // pipeline would rightly expire a prediction before its label that the reference,
        // which knows no order, matches.
        let mut jittered: Vec<(i64, Record)> = records
            .into_iter()
            .map(|r| (r.time.saturating_add(rng.gen_range(0..JITTER_MS)), r))
            .collect();
        jittered.sort_by_key(|(t, _)| *t);
        let records: Vec<Record> = jittered.into_iter().map(|(_, r)| r).collect();
        // Every prediction taken in (not a duplicate, not dead-lettered) ends matched or
        // expired: once all are resolved, that is the join's received count.
        for c in expected.values_mut() {
            c.received_predictions = c.matched + c.expired_unlabeled;
        }
        Scenario {
            records,
            expected,
            confusion,
            garbage,
        }
    }

    /// Number of input records.
    pub fn inputs(&self) -> u64 {
        self.records.len() as u64
    }
}

/// Join counters summed per model id over every stage's stats (versions folded together).
pub fn counters_by_model(
    stats: &[driftwatch_worker::join::JoinStats],
) -> BTreeMap<String, JoinCounters> {
    let mut out: BTreeMap<String, JoinCounters> = BTreeMap::new();
    for s in stats {
        for ((model, _version), c) in &s.per_model {
            let e = out.entry(model.clone()).or_default();
            *e = e.merged(c);
        }
    }
    out
}

/// Produces `records` to the settings' input topics with driftwatch's producer settings and
/// waits until the broker acknowledged every one.
pub async fn produce_records<'r>(
    s: &driftwatch_worker::settings::Settings,
    records: impl IntoIterator<Item = &'r Record>,
) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = driftwatch_worker::clients::producer_config(&s.kafka)
        .create()
        .expect("producer");
    let mut inflight = Vec::new();
    for r in records {
        let topic = match r.side {
            Side::Predictions => &s.topics.predictions,
            Side::Labels => &s.topics.ground_truth,
        };
        match producer.send_result(FutureRecord::to(topic).key(&r.key).payload(&r.payload)) {
            Ok(d) => inflight.push(d),
            Err((e, _)) => panic!("enqueue: {e}"),
        }
        if inflight.len() >= 10_000 {
            for d in inflight.drain(..) {
                d.await.expect("delivery").expect("delivered");
            }
        }
    }
    for d in inflight {
        d.await.expect("delivery").expect("delivered");
    }
}

/// Produces `scenario`'s records in `chunks` chunks, `pause` apart, on a task of its own.
pub fn produce_in_background(
    s: &driftwatch_worker::settings::Settings,
    scenario: &Scenario,
    chunks: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    let s = s.clone();
    let records = scenario.records.clone();
    tokio::spawn(async move {
        let size = records.len().div_ceil(chunks);
        for chunk in records.chunks(size) {
            produce_records(&s, chunk).await;
            tokio::time::sleep(pause).await;
        }
    })
}
