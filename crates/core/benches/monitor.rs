//! Cost of the monitor stage.
//!
//! - `monitor_ingest/outcomes`: a day of one model's partials (two pieces per one-minute bucket,
//!   ~200 outcomes each, 3-class confusion) ingested into a fresh monitor; throughput in
//!   *outcomes* the partials represent, the figure to compare with the 5M outcome updates/s
//!   target.
//! - `monitor_ingest/partials`: the same run, throughput in partials (`ingest` calls).
//! - `monitor_ingest/outcomes_windows_only`: the same with the stream detectors off, i.e. the
//!   merges into windows and the baseline alone (ADWIN's per-outcome feed dominates otherwise).
//! - `monitor_evaluate/one_model_24h`: one `evaluate` of a model holding 24 h of buckets
//!   (windows 15m, 1h, 24h; all detectors on).
//! - `monitor_state/commit_one_minute`: the changelog records of one minute of a model
//!   holding 24 h of buckets with signatures of 10 numeric features (two partials, each with
//!   a signature of ~200 predictions): the state a commit writes (`export_model`).
//! - `monitor_state/restore_model_24h`: rebuilding that model from its live changelog records
//!   (`group_records` + `import_model`). The record sizes are printed once.
//!
//! `CARGO_TARGET_DIR=/work/target-monitor cargo bench -p driftwatch-core --bench monitor`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch_core::join::partial::empty_partial;
use driftwatch_core::monitor::snapshot::group_records;
use driftwatch_core::monitor::{Monitor, MonitorConfig};
use driftwatch_core::summary::{FeatureInterner, SignatureSummary};
use driftwatch_core::{ConfusionCell, ModelPartial};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const MIN: i64 = 60_000;
const CLASSES: [&str; 3] = ["cat", "dog", "fox"];

/// One day of partials in arrival order: the quick piece of bucket `b` arrives with the slow
/// piece of bucket `b − 10`.
fn day_of_partials() -> (Vec<ModelPartial>, u64) {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut out = Vec::new();
    let mut outcomes = 0u64;
    let mut seq = 0u64;
    let piece = |bucket: i64, rng: &mut SmallRng, seq: &mut u64| {
        let mut p = empty_partial("model", "v1", bucket * MIN, MIN, 0);
        p.sequence = *seq;
        *seq += 1;
        let mut n = 0;
        for (i, pr) in CLASSES.iter().enumerate() {
            for (j, ac) in CLASSES.iter().enumerate() {
                let count = if i == j {
                    rng.gen_range(55..65)
                } else {
                    rng.gen_range(2..5)
                };
                n += count;
                p.confusion.push(ConfusionCell {
                    predicted: (*pr).into(),
                    actual: (*ac).into(),
                    count,
                });
            }
        }
        p.counters.predictions = n;
        p.counters.labels = n;
        p.counters.matched = n;
        p.scored = n;
        p.log_loss_sum = n as f64 * 0.3;
        p.brier_sum = n as f64 * 0.08;
        (p, n)
    };
    for b in 0..24 * 60 + 10 {
        if b < 24 * 60 {
            let (p, n) = piece(b, &mut rng, &mut seq);
            outcomes += n;
            out.push(p);
        }
        if b >= 10 {
            let (p, n) = piece(b - 10, &mut rng, &mut seq);
            outcomes += n;
            out.push(p);
        }
    }
    (out, outcomes)
}

fn config() -> MonitorConfig {
    MonitorConfig::default()
}

/// Windows and baseline only: the cost of the merges themselves.
fn windows_only() -> MonitorConfig {
    let mut c = MonitorConfig::default();
    c.default.adwin.enabled = false;
    c.default.page_hinkley.enabled = false;
    c.default.ddm.enabled = false;
    c
}

fn ingest(c: &mut Criterion) {
    let (partials, outcomes) = day_of_partials();
    let mut group = c.benchmark_group("monitor_ingest");
    let n = partials.len() as u64;
    for (name, elements, cfg) in [
        ("outcomes", outcomes, config as fn() -> MonitorConfig),
        ("partials", n, config),
        ("outcomes_windows_only", outcomes, windows_only),
    ] {
        group.throughput(Throughput::Elements(elements));
        group.bench_function(name, |b| {
            b.iter_batched(
                || Monitor::new(cfg()).unwrap_or_else(|e| panic!("{e}")),
                |mut m| {
                    for p in &partials {
                        let _ = black_box(m.ingest(p));
                    }
                    m
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn evaluate(c: &mut Criterion) {
    let (partials, _) = day_of_partials();
    let mut m = Monitor::new(config()).unwrap_or_else(|e| panic!("{e}"));
    for p in &partials {
        let _ = m.ingest(p);
    }
    let now = 24 * 60 * MIN;
    let mut group = c.benchmark_group("monitor_evaluate");
    group.bench_function("one_model_24h", |b| {
        // Each evaluation starts from the same state, so every detector judges (none abstains
        // because it already judged this window).
        b.iter_batched(
            || m.clone(),
            // The monitor is returned so that dropping it is not timed.
            |mut m| {
                let out = m.evaluate(now);
                (m, out)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Attaches to each partial a signature of `n` predictions with 10 numeric features.
fn with_signatures(partials: &mut [ModelPartial], n: usize) {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut names = FeatureInterner::new();
    let ids: Vec<_> = (0..10)
        .map(|i| names.intern(&format!("feature_{i}")))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    for p in partials {
        let mut sig = SignatureSummary::new();
        for _ in 0..n {
            for id in &ids {
                sig.update_number(*id, rng.gen::<f64>() * 100.0);
            }
            sig.update_output(Some("cat"), None, Some(0.7));
        }
        p.signature = Some(sig.to_bytes(&names).unwrap_or_else(|e| panic!("{e}")));
    }
}

fn state(c: &mut Criterion) {
    let (mut partials, _) = day_of_partials();
    with_signatures(&mut partials, 200);
    let (warm, last_minute) = partials.split_at(partials.len() - 2);
    let mut m = Monitor::new(config()).unwrap_or_else(|e| panic!("{e}"));
    let mut log = std::collections::BTreeMap::new();
    let mut written_last_hour = (0usize, 0usize);
    for (i, pair) in warm.chunks(2).enumerate() {
        for p in pair {
            let _ = m.ingest(p);
        }
        let _ = m.evaluate(pair[0].bucket_start + MIN);
        let records = m.export_model("model").unwrap_or_else(|e| panic!("{e}"));
        if i + 60 >= warm.len() / 2 {
            written_last_hour.0 += 1;
            written_last_hour.1 += records
                .iter()
                .map(|r| r.key.len() + r.value.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
        }
        for r in records {
            match r.value {
                Some(v) => log.insert(r.key, v),
                None => log.remove(&r.key),
            };
        }
    }
    let live: usize = log.iter().map(|(k, v)| k.len() + v.len()).sum();
    eprintln!(
        "monitor state: {} live records, {} bytes; a commit of one minute writes {} bytes on average (last hour)",
        log.len(),
        live,
        written_last_hour.1 / written_last_hour.0.max(1)
    );
    let mut group = c.benchmark_group("monitor_state");
    group.bench_function("commit_one_minute", |b| {
        b.iter_batched(
            || m.clone(),
            |mut m| {
                for p in last_minute {
                    let _ = m.ingest(p);
                }
                let records = m.export_model("model");
                (m, records)
            },
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Bytes(live as u64));
    group.bench_function("restore_model_24h", |b| {
        b.iter_batched(
            || log.clone(),
            |log| {
                let mut fresh = Monitor::new(config()).unwrap_or_else(|e| panic!("{e}"));
                let (models, _) = group_records(log);
                for (model, records) in models {
                    let _ = black_box(fresh.import_model(&model, records));
                }
                fresh
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, ingest, evaluate, state);
criterion_main!(benches);
