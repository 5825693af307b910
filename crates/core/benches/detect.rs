//! Cost of one detector update, on a long Bernoulli stream with a change in the middle.
//!
//! Each iteration feeds the whole stream (detections and the restarts after them included), and
//! criterion reports throughput in elements, so `time / 1` element is ns per update.
//!
//! `cargo bench -p driftwatch-core --bench detect -- --quick`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use driftwatch_core::detect::{
    AdwinConfig, ChangeDetector, DdmConfig, DetectorConfig, EddmConfig, HddmAConfig, HddmWConfig,
    PageHinkleyConfig,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const LEN: usize = 100_000;

/// Error bits: rate 0.2 for the first half, 0.4 after.
fn bernoulli_stream() -> Vec<f64> {
    let mut rng = SmallRng::seed_from_u64(12345);
    (0..LEN)
        .map(|i| {
            let p = if i < LEN / 2 { 0.2 } else { 0.4 };
            f64::from(u8::from(rng.gen_bool(p)))
        })
        .collect()
}

fn detectors(c: &mut Criterion) {
    let stream = bernoulli_stream();
    let mut group = c.benchmark_group("detect_update");
    group.throughput(Throughput::Elements(LEN as u64));
    for (name, config) in [
        ("adwin", DetectorConfig::Adwin(AdwinConfig::default())),
        (
            "adwin_clock1",
            DetectorConfig::Adwin(AdwinConfig {
                clock: 1,
                ..AdwinConfig::default()
            }),
        ),
        ("ddm", DetectorConfig::Ddm(DdmConfig::default())),
        ("eddm", DetectorConfig::Eddm(EddmConfig::default())),
        ("hddm_a", DetectorConfig::HddmA(HddmAConfig::default())),
        ("hddm_w", DetectorConfig::HddmW(HddmWConfig::default())),
        (
            "page_hinkley",
            DetectorConfig::PageHinkley(PageHinkleyConfig::default()),
        ),
    ] {
        let Ok(mut detector) = config.build() else {
            continue;
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                detector.reset();
                let mut drifts = 0u32;
                for &x in &stream {
                    drifts += u32::from(detector.update(black_box(x)).drift);
                }
                drifts
            })
        });
    }
    group.finish();
}

criterion_group!(benches, detectors);
criterion_main!(benches);
