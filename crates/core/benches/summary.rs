//! Cost of the summaries on the join stage's hot path.
//!
//! - per-value update of a `NumericSummary` (moments + distinct-value sample) and a `CategoricalSummary`
//!   (staged exact counts → frequent items + HLL), 20 categories;
//! - a whole prediction into a `SignatureSummary`: 12 numeric + 8 categorical features by
//!   interned id plus the output (label, score);
//! - merging two 10k-prediction signatures, and encoding / decoding one (the size of a
//!   1-minute bucket of 10k predictions is printed);
//! - one feature judgement: `drift::default_test` of a numeric feature (normed Wasserstein with
//!   its calibrated threshold; KS with its exact p-value at 1 000 values) and a categorical one
//!   (Jensen–Shannon; χ²), the monitor's cost per feature per evaluation.
//!
//! Run: `cargo bench -p driftwatch-core --bench summary`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch_core::summary::drift;
use driftwatch_core::summary::{
    CategoricalSummary, FeatureId, FeatureInterner, FeatureSummary, NumericSummary,
    SignatureSummary,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const CHUNK: usize = 1024;
const CATEGORIES: [&str; 20] = [
    "FR", "DE", "US", "GB", "ES", "IT", "NL", "BE", "PL", "SE", "NO", "DK", "FI", "IE", "PT", "AT",
    "CH", "CZ", "GR", "HU",
];

/// Roughly normal values (sum of four uniforms).
fn normals(rng: &mut SmallRng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| (0..4).map(|_| rng.gen::<f64>()).sum::<f64>() * 10.0 - 20.0)
        .collect()
}

struct Workload {
    ids: Vec<FeatureId>,
    interner: FeatureInterner,
    numbers: Vec<f64>,
    categories: Vec<&'static str>,
}

fn workload() -> Workload {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut interner = FeatureInterner::new();
    let ids = (0..20)
        .map(|i| interner.intern(&format!("feature_{i:02}")).unwrap())
        .collect();
    Workload {
        ids,
        interner,
        numbers: normals(&mut rng, 1 << 16),
        categories: (0..1 << 16)
            .map(|_| CATEGORIES[rng.gen_range(0..CATEGORIES.len())])
            .collect(),
    }
}

/// Adds prediction `i` of the workload: features 0..12 numeric, 12..20 categorical.
#[inline]
fn add_prediction(s: &mut SignatureSummary, w: &Workload, i: usize) {
    let mask = w.numbers.len() - 1;
    for (j, id) in w.ids.iter().enumerate() {
        let k = (i * 20 + j) & mask;
        if j < 12 {
            s.update_number(*id, w.numbers[k]);
        } else {
            s.update_category(*id, w.categories[k]);
        }
    }
    let label = if w.numbers[i & mask] > 0.0 {
        "fraud"
    } else {
        "legit"
    };
    s.update_output(
        Some(label),
        None,
        Some(0.5 + w.numbers[i & mask].abs() / 100.0),
    );
}

fn bucket(w: &Workload, n: usize, offset: usize) -> SignatureSummary {
    let mut s = SignatureSummary::new();
    for i in 0..n {
        add_prediction(&mut s, w, i + offset);
    }
    s
}

fn bench(c: &mut Criterion) {
    let w = workload();
    let mut group = c.benchmark_group("summary_update");
    group.throughput(Throughput::Elements(CHUNK as u64));

    let mut numeric = NumericSummary::new();
    let mut at = 0usize;
    group.bench_function("numeric_value", |b| {
        b.iter(|| {
            let start = at & (w.numbers.len() - 1) & !(CHUNK - 1);
            for &x in &w.numbers[start..start + CHUNK] {
                numeric.update(black_box(x));
            }
            at += CHUNK;
        })
    });
    black_box(numeric.count());

    let mut categorical = CategoricalSummary::new();
    let mut at = 0usize;
    group.bench_function("categorical_value", |b| {
        b.iter(|| {
            let start = at & (w.categories.len() - 1) & !(CHUNK - 1);
            for v in &w.categories[start..start + CHUNK] {
                categorical.update(black_box(v));
            }
            at += CHUNK;
        })
    });
    black_box(categorical.count());

    let mut names = 0usize;
    group.bench_function("intern_known_name", |b| {
        let mut interner = w.interner.clone();
        let all: Vec<String> = (0..20).map(|i| format!("feature_{i:02}")).collect();
        b.iter(|| {
            for k in 0..CHUNK {
                names += interner.intern(black_box(&all[k % 20])).unwrap().index();
            }
        })
    });
    black_box(names);
    group.finish();

    let mut group = c.benchmark_group("signature");
    group.throughput(Throughput::Elements(CHUNK as u64));
    let mut sig = SignatureSummary::new();
    let mut at = 0usize;
    group.bench_function("prediction_20_features", |b| {
        b.iter(|| {
            for i in 0..CHUNK {
                add_prediction(&mut sig, &w, at + i);
            }
            at += CHUNK;
        })
    });
    black_box(sig.predictions());

    group.throughput(Throughput::Elements(1));
    let a = bucket(&w, 10_000, 0);
    let other = bucket(&w, 10_000, 10_000);
    group.bench_function("merge_10k_buckets", |b| {
        b.iter_batched(
            || a.clone(),
            |mut m| {
                m.merge(&other);
                m
            },
            BatchSize::SmallInput,
        )
    });

    let mut flushed = a.clone();
    flushed.flush();
    let bytes = flushed.to_bytes(&w.interner).unwrap();
    println!(
        "to_bytes of a 10k-prediction, 20-feature bucket: {} bytes ({:.1} B/feature)",
        bytes.len(),
        bytes.len() as f64 / 20.0
    );
    group.bench_function("to_bytes_10k_bucket", |b| {
        b.iter(|| black_box(flushed.to_bytes(&w.interner).unwrap()))
    });
    group.bench_function("from_bytes_10k_bucket", |b| {
        let mut interner = FeatureInterner::new();
        b.iter(|| black_box(SignatureSummary::from_bytes(&bytes, &mut interner).unwrap()))
    });
    group.finish();

    let mut group = c.benchmark_group("drift");
    let feature = |xs: &[f64]| {
        let mut f = FeatureSummary::default();
        for &x in xs {
            f.update_number(x);
        }
        f.flush();
        f
    };
    let category = |n: usize, offset: usize| {
        let mut f = FeatureSummary::default();
        for i in 0..n {
            f.update_category(w.categories[(i + offset) % w.categories.len()]);
        }
        f.flush();
        f
    };
    for n in [1_000usize, 10_000, 100_000] {
        let r = feature(&w.numbers[..n.min(w.numbers.len())]);
        let c = feature(&normals(&mut SmallRng::seed_from_u64(n as u64), n));
        let method = drift::default_test(&r, &c).unwrap().method.as_str();
        group.bench_function(format!("default_test_numeric_{n}_{method}"), |b| {
            b.iter(|| black_box(drift::default_test(&r, &c).unwrap()))
        });
        let (r, c) = (category(n, 0), category(n, 7));
        let method = drift::default_test(&r, &c).unwrap().method.as_str();
        group.bench_function(format!("default_test_categorical_{n}_{method}"), |b| {
            b.iter(|| black_box(drift::default_test(&r, &c).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
