//! Speed of the backtest replay in-process: one day of a classifier's history (≈ 12
//! predictions a second, each labeled 30 s to 5 min later: 1 M predictions and 1 M labels, as
//! owned records already in memory) through the join, the partials and four policies'
//! monitors (configured, no-retrain, fixed-1d, and one named policy). Throughput in inputs
//! (predictions + labels); the target is ≥ 1 M inputs/s on one core. Reading files is not
//! included (`driftwatch backtest` prints its own rate with reading).
//!
//! `cargo bench -p driftwatch-core --bench backtest`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch_core::backtest::{Backtest, BacktestConfig};
use driftwatch_core::monitor::PolicyConfig;
use driftwatch_core::{GroundTruth, Prediction};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const START: i64 = 1_767_225_600_000;
const PREDICTIONS: i64 = 1_000_000;
const DAY: i64 = 86_400_000;

fn history() -> (Vec<Prediction>, Vec<GroundTruth>) {
    let mut rng = SmallRng::seed_from_u64(9);
    let classes = ["cat", "dog", "fox"];
    let mut predictions = Vec::new();
    let mut labels = Vec::new();
    for i in 0..PREDICTIONS {
        let t = START + i * DAY / PREDICTIONS;
        let truth = rng.gen_range(0..3);
        // 92 % accurate for 16 hours, then 75 %.
        let accuracy = if t - START < 16 * 3_600_000 {
            0.92
        } else {
            0.75
        };
        let predicted = if rng.gen_bool(accuracy) {
            truth
        } else {
            (truth + rng.gen_range(1..3)) % 3
        };
        predictions.push(Prediction {
            request_id: format!("req-{i}"),
            model_id: "fraud".into(),
            model_version: "v1".into(),
            timestamp: t,
            features: vec![],
            predicted_label: Some(classes[predicted].into()),
            predicted_value: None,
            scores: None,
            tags: vec![],
        });
        labels.push(GroundTruth {
            request_id: format!("req-{i}"),
            model_id: Some("fraud".into()),
            timestamp: t + rng.gen_range(30_000..300_000),
            label: Some(classes[truth].into()),
            value: None,
        });
    }
    labels.sort_by_key(|l| l.timestamp);
    (predictions, labels)
}

fn replay(p: &[Prediction], l: &[GroundTruth]) -> usize {
    let mut c = BacktestConfig {
        fixed_interval_ms: DAY,
        ..BacktestConfig::default()
    };
    c.policies.push((
        "eager".into(),
        PolicyConfig {
            cooldown_ms: 3_600_000,
            daily_budget: 4,
            ..PolicyConfig::default()
        },
    ));
    let mut b = Backtest::new(c).unwrap_or_else(|e| panic!("{e}"));
    let (mut i, mut j) = (0, 0);
    while i < p.len() || j < l.len() {
        if j >= l.len() || (i < p.len() && p[i].timestamp <= l[j].timestamp) {
            b.push_prediction(&p[i]);
            i += 1;
        } else {
            b.push_label(&l[j]);
            j += 1;
        }
    }
    b.finish().models.len()
}

fn bench(c: &mut Criterion) {
    let (p, l) = history();
    let mut group = c.benchmark_group("backtest");
    group.sample_size(10);
    group.throughput(Throughput::Elements((p.len() + l.len()) as u64));
    group.bench_function("replay_one_day_2M_inputs", |b| {
        b.iter(|| black_box(replay(&p, &l)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
