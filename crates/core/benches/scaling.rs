//! How cost grows with pending labels, features per prediction and models.
//!
//! Prints three tables (markdown) with wall-clock figures of one run; see BENCHMARKS.md.
//!
//! Run: `cargo bench -p driftwatch-core --bench scaling`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use driftwatch_core::join::{
    Actual, ClassId, Input, JoinBuffer, JoinConfig, JoinEvent, JoinTask, LabelIn, ModelVersionId,
    PartialAggregator, Predicted, PredictionIn, RequestKey,
};
use driftwatch_core::summary::{FeatureInterner, SignatureSummary};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const BASE: i64 = 1_760_000_000_000;
const HOUR: i64 = 3_600_000;

/// Runs `f` once and returns its wall-clock time in nanoseconds per op. The one clock read of
/// this harness: the core itself may not read clocks (crates/core/clippy.toml).
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a timing harness measures wall-clock time"
)]
fn ns_per_op(ops: u64, f: impl FnOnce()) -> f64 {
    let t = std::time::Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / ops as f64
}

fn prediction(i: u64, model: u16, time: i64) -> PredictionIn {
    PredictionIn {
        key: RequestKey::from_request_id(i.to_le_bytes()),
        model: ModelVersionId(model),
        time,
        predicted: Predicted::Class(ClassId((i % 3) as u32)),
        score: Some(0.7),
    }
}

fn label(i: u64, time: i64) -> LabelIn {
    LabelIn {
        key: RequestKey::from_request_id(i.to_le_bytes()),
        model_hint: None,
        time,
        actual: Actual::Class(ClassId((i % 2) as u32)),
    }
}

/// Pending entries already in the buffer → cost of one insert + one match, and memory.
fn pending_labels() {
    println!("| pending predictions | insert ns/event | match ns/event | table bytes/entry |");
    println!("|---:|---:|---:|---:|");
    for pending in [10_000u64, 100_000, 1_000_000, 10_000_000] {
        let mut buffer = JoinBuffer::new(24 * HOUR, 24 * HOUR, 3 * HOUR);
        let mut sink = |e: JoinEvent| {
            black_box(e);
        };
        for i in 0..pending {
            buffer.on_prediction(&prediction(i, 1, BASE + (i as i64 % 1_000)), &mut sink);
        }
        let bytes = buffer.allocation_size() as f64 / buffer.len() as f64;
        let ops = 1_000_000u64;
        // Inserts of new predictions (the buffer grows by `ops`).
        let insert = ns_per_op(ops, || {
            for i in pending..pending + ops {
                buffer.on_prediction(&prediction(i, 1, BASE + 2_000), &mut sink);
            }
        });
        // Labels matching pending predictions spread over the whole table.
        let mut rng = SmallRng::seed_from_u64(3);
        let keys: Vec<u64> = (0..ops).map(|_| rng.gen_range(0..pending + ops)).collect();
        let matched = ns_per_op(ops, || {
            for k in keys {
                buffer.on_label(&label(k, BASE + 3_000), &mut sink);
            }
        });
        println!("| {pending} | {insert:.0} | {matched:.0} | {bytes:.1} |");
    }
}

/// Features per prediction → cost of the summary updates.
fn features() {
    println!("| features (half numeric, half categorical) | summary ns/prediction | ns/feature |");
    println!("|---:|---:|---:|");
    for n in [5usize, 20, 50, 100] {
        let mut interner = FeatureInterner::new();
        let ids: Vec<_> = (0..n)
            .map(|j| interner.intern(&format!("f{j}")).unwrap())
            .collect();
        let categories: Vec<String> = (0..8).map(|k| format!("v{k}")).collect();
        let mut summary = SignatureSummary::default();
        let mut rng = SmallRng::seed_from_u64(5);
        let rows = 100_000usize;
        let values: Vec<f64> = (0..rows * n).map(|_| rng.gen::<f64>()).collect();
        let per = ns_per_op(rows as u64, || {
            for r in 0..rows {
                for (j, id) in ids.iter().enumerate() {
                    let x = values[r * n + j];
                    if j % 2 == 0 {
                        summary.update_number(*id, x);
                    } else {
                        summary.update_category(*id, &categories[(x * 8.0) as usize % 8]);
                    }
                }
            }
            summary.flush();
        });
        black_box(&summary);
        println!("| {n} | {per:.0} | {:.1} |", per / n as f64);
    }
}

/// Models sharing one join task → join cost per event and partials per flush.
fn models() {
    println!(
        "| models | join ns/input event | partials per flush (10 s of traffic, 1-minute buckets) |"
    );
    println!("|---:|---:|---:|");
    for models in [1u16, 10, 100, 1000] {
        let config = JoinConfig {
            label_timeout_ms: 60_000,
            orphan_timeout_ms: 60_000,
            ..JoinConfig::default()
        };
        let mut task = JoinTask::new(config).unwrap();
        let ids: Vec<ModelVersionId> = (0..models)
            .map(|m| task.intern_model(&format!("model-{m}"), "v1").unwrap())
            .collect();
        // Both inputs count as caught up: the task never waits for the other input here.
        task.set_caught_up(Input::Predictions, true);
        task.set_caught_up(Input::Labels, true);
        let mut agg = PartialAggregator::new(0, 60_000).unwrap();
        let n = 500_000u64;
        let slice = 1_000u64; // 10 s of event time per poll, as one consumer batch
        let mut events = 0u64;
        let mut partials = 0usize;
        let mut flushes = 0usize;
        let per = ns_per_op(2 * n, || {
            for start in (0..n).step_by(slice as usize) {
                for i in start..start + slice {
                    let time = BASE + i as i64 * 10;
                    let model = ids[(i % u64::from(models)) as usize];
                    task.push_prediction(PredictionIn {
                        model,
                        ..prediction(i, 0, time)
                    });
                    task.push_label(label(i, time + 500));
                }
                task.poll(0, &mut |e| {
                    agg.fold(&e);
                    events += 1;
                });
                partials += agg.flush(task.interner(), task.watermark()).len();
                flushes += 1;
            }
        });
        black_box(events);
        println!(
            "| {models} | {per:.0} | {:.0} |",
            partials as f64 / flushes as f64
        );
    }
}

fn main() {
    println!("## pending labels\n");
    pending_labels();
    println!("\n## features\n");
    features();
    println!("\n## models\n");
    models();
}
