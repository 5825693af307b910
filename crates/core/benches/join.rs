//! Throughput of the join core on a realistic mix.
//!
//! One million predictions, 10 ms of event time apart (≈ 2.8 h of traffic); 90 % get a label
//! with a delay spread over 0–50 s (5 % of those are stamped before their prediction and so
//! are often processed first), 2 % of predictions and 2 % of labels are duplicates. Label
//! and orphan timeouts are 60 s so the watermark sweeps and expiries run throughout. Records
//! are pushed into a `JoinTask` one 10 s slice of event time at a time (≈ 1 000 predictions
//! and 900 labels), polling after each slice, as a worker would after each consumer batch.
//!
//! Run: `cargo bench -p driftwatch-core --bench join`

#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch_core::join::{
    Actual, ClassId, Input, JoinBuffer, JoinConfig, JoinEvent, JoinTask, LabelIn, ModelVersionId,
    Predicted, PredictionIn, RequestKey,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const BASE: i64 = 1_760_000_000_000;
const N: u64 = 1_000_000;
/// Event time covered by one consumer batch: 10 s, about 1 000 predictions.
const SLICE_MS: i64 = 10_000;

struct Workload {
    predictions: Vec<PredictionIn>,
    labels: Vec<LabelIn>,
}

fn workload() -> Workload {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut predictions = Vec::with_capacity(N as usize * 102 / 100);
    let mut labels = Vec::with_capacity(N as usize * 92 / 100);
    for i in 0..N {
        let key = RequestKey::from_request_id(format!("req-{i}"));
        let time = BASE + i as i64 * 10;
        let model = ModelVersionId(1 + (i % 4) as u16);
        let class = ClassId(rng.gen_range(0..3));
        let p = PredictionIn {
            key,
            model,
            time,
            predicted: Predicted::Class(class),
            score: Some(rng.gen_range(0.3..1.0)),
        };
        predictions.push(p);
        if rng.gen_bool(0.02) {
            predictions.push(PredictionIn {
                time: time + rng.gen_range(0..1_000),
                ..p
            });
        }
        if rng.gen_bool(0.9) {
            let delay = if rng.gen_bool(0.05) {
                -rng.gen_range(0..2_000)
            } else {
                // Mostly short delays with a long tail up to 50 s.
                let u: f64 = rng.gen();
                (u * u * u * 50_000.0) as i64
            };
            let l = LabelIn {
                key,
                model_hint: None,
                time: time + delay,
                actual: Actual::Class(if rng.gen_bool(0.8) {
                    class
                } else {
                    ClassId(rng.gen_range(0..3))
                }),
            };
            labels.push(l);
            if rng.gen_bool(0.02) {
                labels.push(LabelIn {
                    time: l.time + rng.gen_range(0..5_000),
                    ..l
                });
            }
        }
    }
    predictions.sort_by_key(|p| p.time);
    labels.sort_by_key(|l| l.time);
    Workload {
        predictions,
        labels,
    }
}

fn config() -> JoinConfig {
    JoinConfig {
        label_timeout_ms: 60_000,
        orphan_timeout_ms: 60_000,
        ..JoinConfig::default()
    }
}

/// Runs the whole workload through a fresh task, pushing both inputs one event-time slice
/// at a time (as live consumers deliver them) and polling after each slice; returns the
/// number of events emitted.
fn run_task(w: &Workload) -> u64 {
    let mut task = JoinTask::new(config()).unwrap();
    task.set_caught_up(Input::Predictions, true);
    task.set_caught_up(Input::Labels, true);
    let mut emitted = 0u64;
    let mut sink = |_e: JoinEvent| emitted += 1;
    let (mut pi, mut li) = (0, 0);
    let end = w
        .predictions
        .last()
        .map_or(BASE, |p| p.time)
        .max(w.labels.last().map_or(BASE, |l| l.time));
    let mut slice_end = BASE;
    while slice_end <= end {
        slice_end += SLICE_MS;
        while let Some(p) = w.predictions.get(pi).filter(|p| p.time < slice_end) {
            task.push_prediction(*p);
            pi += 1;
        }
        while let Some(l) = w.labels.get(li).filter(|l| l.time < slice_end) {
            task.push_label(*l);
            li += 1;
        }
        task.poll(slice_end, &mut sink);
    }
    task.drain(&mut sink);
    emitted
}

/// The buffer alone, fed in merged timestamp order with the watermark at the record time.
fn run_buffer(merged: &[(bool, usize)], w: &Workload) -> u64 {
    let mut buffer = JoinBuffer::new(60_000, 60_000, 60_000 / 8);
    let mut emitted = 0u64;
    let mut sink = |_e: JoinEvent| emitted += 1;
    for &(is_pred, i) in merged {
        if is_pred {
            let p = &w.predictions[i];
            buffer.on_prediction(p, &mut sink);
            buffer.advance_watermark(p.time - 5_000, &mut sink);
        } else {
            let l = &w.labels[i];
            buffer.on_label(l, &mut sink);
        }
    }
    buffer.expire_all(&mut sink);
    emitted
}

fn bench(c: &mut Criterion) {
    let w = workload();
    let inputs = (w.predictions.len() + w.labels.len()) as u64;
    let mut merged: Vec<(i64, bool, usize)> = w
        .predictions
        .iter()
        .enumerate()
        .map(|(i, p)| (p.time, true, i))
        .chain(w.labels.iter().enumerate().map(|(i, l)| (l.time, false, i)))
        .collect();
    merged.sort_by_key(|&(t, is_pred, _)| (t, !is_pred));
    let merged: Vec<(bool, usize)> = merged.into_iter().map(|(_, p, i)| (p, i)).collect();

    // Accounting sanity: the events cover every input (a match covers two).
    let mut task = JoinTask::new(config()).unwrap();
    task.set_caught_up(Input::Predictions, true);
    task.set_caught_up(Input::Labels, true);
    for p in &w.predictions {
        task.push_prediction(*p);
    }
    for l in &w.labels {
        task.push_label(*l);
    }
    task.drain(&mut |_| {});
    let t = task.total_counters();
    assert_eq!(t.predictions + t.labels, inputs);
    eprintln!("workload: {inputs} inputs, counters {t:?}");

    let mut g = c.benchmark_group("join");
    g.throughput(Throughput::Elements(inputs));
    g.sample_size(10);
    g.bench_function("task_mixed_1M_predictions", |b| {
        b.iter_batched(|| (), |()| run_task(&w), BatchSize::PerIteration)
    });
    g.bench_function("buffer_mixed_1M_predictions", |b| {
        b.iter_batched(|| (), |()| run_buffer(&merged, &w), BatchSize::PerIteration)
    });
    g.finish();
}

/// The routing check the join stage applies to every record read: murmur2 of a 36-byte request
/// id, CRC32 when misrouted, and the tally. Half the keys sit on their CRC32 partition (a
/// `consistent_random` producer), half on their murmur2 one.
fn routing(c: &mut Criterion) {
    use driftwatch_core::join::routing::{check, crc32_partition, murmur2_partition};
    use driftwatch_core::join::RoutingTally;
    const N: i32 = 8;
    let keys: Vec<(String, i32)> = (0..100_000u64)
        .map(|i| {
            let key = format!("{:08x}-5f0e-4c2b-9a1d-{:012x}", i * 7919, i);
            let p = if i % 2 == 0 {
                murmur2_partition(key.as_bytes(), N)
            } else {
                crc32_partition(key.as_bytes(), N)
            };
            (key, p)
        })
        .collect();
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("check_100k_keys_half_misrouted", |b| {
        b.iter(|| {
            let mut t = RoutingTally::default();
            for (key, p) in &keys {
                t.add(check(Some(key.as_bytes()), *p, N));
            }
            t
        })
    });
    let correct: Vec<(String, i32)> = keys
        .iter()
        .map(|(k, _)| (k.clone(), murmur2_partition(k.as_bytes(), N)))
        .collect();
    g.bench_function("check_100k_keys_all_correct", |b| {
        b.iter(|| {
            let mut t = RoutingTally::default();
            for (key, p) in &correct {
                t.add(check(Some(key.as_bytes()), *p, N));
            }
            t
        })
    });
    g.finish();
}

criterion_group!(benches, bench, routing);
criterion_main!(benches);
