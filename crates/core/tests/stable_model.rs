//! A stable model with 50 features, judged every minute, raises no feature-drift event.
//!
//! 25 numeric features (N(0, 1)) and 25 categorical ones (five categories, 40/30/15/10/5 %),
//! 30 predictions a minute: a one-hour reference and one-hour windows of 1 800 values per
//! feature, the size at which the false alarms were seen. Every minute a
//! [`SignatureTracker`] judges the last hour against the reference (default settings:
//! normed Wasserstein and Jensen–Shannon, Benjamini–Hochberg across the features) and each
//! verdict steps its feature's drift state machine (default hysteresis).
//!
//! `cargo test -p driftwatch-core --release --test stable_model -- --ignored` runs the full 30
//! days (43 200 judgements, 2.2 million tests), at 30 and at 15 predictions a minute (900
//! values per window: the p-value tests KS and χ²); the default runs cover one day each.
#![allow(clippy::unwrap_used)]

use driftwatch_core::monitor::{
    DriftMachine, FeatureDriftConfig, Hysteresis, Level, SignatureTracker,
};
use driftwatch_core::summary::{FeatureInterner, SignatureSummary};
use driftwatch_core::DriftState;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

const MIN: i64 = 60_000;
const NUMERIC: usize = 25;
const CATEGORICAL: usize = 25;
const CATEGORIES: [&str; 5] = ["a", "b", "c", "d", "e"];
const SHARES: [f64; 5] = [0.40, 0.30, 0.15, 0.10, 0.05];

fn normal(rng: &mut SmallRng) -> f64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    let v: f64 = rng.gen();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn category(rng: &mut SmallRng) -> &'static str {
    let mut u: f64 = rng.gen();
    for (k, s) in SHARES.iter().enumerate() {
        if u < *s {
            return CATEGORIES[k];
        }
        u -= s;
    }
    CATEGORIES[SHARES.len() - 1]
}

/// One minute's signature bytes.
fn bucket(
    rng: &mut SmallRng,
    names: &mut FeatureInterner,
    ids: &[String],
    per_minute: usize,
) -> Vec<u8> {
    let mut sig = SignatureSummary::new();
    for _ in 0..per_minute {
        for (i, name) in ids.iter().enumerate() {
            let id = names.intern(name).unwrap();
            if i < NUMERIC {
                sig.update_number(id, normal(rng));
            } else {
                sig.update_category(id, category(rng));
            }
        }
    }
    sig.flush();
    sig.to_bytes(names).unwrap()
}

/// Runs `days` of minutes after the reference hour at `per_minute` predictions a minute; the
/// drift events (transitions into WARNING or DRIFT) and the number of tests judged.
fn run(days: i64, seed: u64, per_minute: usize) -> (Vec<(String, i64)>, usize) {
    let cfg = FeatureDriftConfig {
        data_quality: false,
        prediction_drift: false,
        ..FeatureDriftConfig::default()
    };
    let ids: Vec<String> = (0..NUMERIC + CATEGORICAL)
        .map(|i| format!("f{i:02}"))
        .collect();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut names = FeatureInterner::new();
    let mut tracker = SignatureTracker::new(60 * MIN, 60 * MIN);
    let mut machines: BTreeMap<(String, String), DriftMachine> = BTreeMap::new();
    let mut events = Vec::new();
    let mut tests = 0;
    for minute in 0..60 + days * 24 * 60 {
        let bytes = bucket(&mut rng, &mut names, &ids, per_minute);
        tracker.ingest(&bytes, minute * MIN, MIN).unwrap();
        for j in tracker.judge(&cfg) {
            tests += 1;
            let key = (j.detector.clone(), j.feature.clone().unwrap_or_default());
            let m = machines.entry(key.clone()).or_default();
            if let Some(e) = m.step("m", "v", &j, Hysteresis::default(), j.window_end) {
                if matches!(e.state, DriftState::Drift | DriftState::Warning) {
                    events.push((format!("{}:{}", key.0, key.1), e.window_end));
                }
            }
            assert!(j.level != Level::Warning);
        }
    }
    (events, tests)
}

#[test]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "prints how long the run took; nothing asserts it"
)]
fn fifty_stable_features_raise_no_event_in_a_day() {
    let started = std::time::Instant::now();
    let (events, tests) = run(1, 1, 30);
    println!("1 day: {tests} tests in {:?}", started.elapsed());
    // One judgement a minute from the minute the window clears the reference hour.
    assert_eq!(tests, (24 * 60 - 60 + 1) * 50);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_small_reference_model_raises_no_event_in_a_day() {
    // 15 predictions a minute: 900 values per window and reference, so the defaults are the
    // p-value tests (KS and χ²), with no minimum effect.
    let (events, tests) = run(1, 3, 15);
    assert_eq!(tests, (24 * 60 - 60 + 1) * 50);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
#[ignore = "30 simulated days: run with --release -- --ignored"]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "prints how long the run took; nothing asserts it"
)]
fn fifty_stable_features_raise_no_event_in_thirty_days() {
    let started = std::time::Instant::now();
    let (events, tests) = run(30, 2, 30);
    println!("30 days: {tests} tests in {:?}", started.elapsed());
    assert!(events.is_empty(), "{events:?}");
}

#[test]
#[ignore = "30 simulated days: run with --release -- --ignored"]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "prints how long the run took; nothing asserts it"
)]
fn a_small_reference_model_raises_no_event_in_thirty_days() {
    let started = std::time::Instant::now();
    let (events, tests) = run(30, 4, 15);
    println!(
        "30 days, 15 a minute: {tests} tests in {:?}",
        started.elapsed()
    );
    assert!(events.is_empty(), "{events:?}");
}
