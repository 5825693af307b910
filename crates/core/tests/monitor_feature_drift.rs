//! Scenario: a covariate shift seen through the partials' signatures.
//!
//! Two classifiers serve 100 predictions a minute for 4 hours with four inputs: `income`
//! (normal, σ 10), `age` (normal), `country` (categorical) and `segment` (categorical, 5 %
//! missing). At hour 2, `income` of model `shifted` moves up by one standard deviation; nothing
//! else changes, and accuracy stays ~90 % for both (labels do not reveal the shift). Each
//! bucket's partial carries the signature of its predictions, as the join stage sends it. The
//! monitor evaluates every 5 minutes with the default configuration (1 h reference, 1 h
//! window, hysteresis 2/3).
//!
//! Asserted for every seed: a DRIFT event for (`shifted`, `income`) within [`MAX_DELAY_MS`]
//! of the change, from the default test of a large reference (normed Wasserstein); no WARNING
//! or DRIFT of any other detector or feature of either model, and none before the change; no
//! retrain event by default (data drift is advisory), but one when the policy lists the
//! feature's checks.

#![allow(clippy::unwrap_used)]

use driftwatch_core::join::partial::empty_partial;
use driftwatch_core::monitor::{Monitor, MonitorConfig, MonitorOutput};
use driftwatch_core::summary::{FeatureInterner, SignatureSummary};
use driftwatch_core::{ConfusionCell, DriftEvent, DriftState, ModelPartial, RetrainEvent};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const MIN: i64 = 60_000;
const HOURS: i64 = 4;
const CHANGE_MS: i64 = 2 * 60 * MIN;
/// Enough shifted traffic for the 1 h window's normed Wasserstein distance to reach 0.1
/// (~6 min of a 1 σ shift), a whole window (1 h) of drifting verdicts before a feature's
/// DRIFT verdict stands, two evaluations 5 min apart, and margin.
const MAX_DELAY_MS: i64 = 90 * MIN;
const COUNTRIES: [(&str, f64); 4] = [("FR", 0.4), ("DE", 0.3), ("ES", 0.2), ("IT", 0.1)];
const SEGMENTS: [&str; 3] = ["retail", "sme", "corporate"];

/// A normal sample (Box–Muller).
fn normal(rng: &mut SmallRng, mean: f64, sd: f64) -> f64 {
    let u: f64 = 1.0 - rng.gen::<f64>();
    let v: f64 = rng.gen();
    mean + sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// One bucket's partial: outcomes (~90 % accurate, all labeled at once) and the signature.
fn bucket(rng: &mut SmallRng, model: &str, minute: i64, shifted: bool) -> ModelPartial {
    let mut names = FeatureInterner::new();
    let [income, age, country, segment] =
        ["income", "age", "country", "segment"].map(|n| names.intern(n).unwrap());
    let income_mean = if shifted { 60.0 } else { 50.0 };
    let mut sig = SignatureSummary::new();
    let mut cells = [[0u64; 2]; 2];
    let n = rng.gen_range(90..=110);
    for _ in 0..n {
        sig.update_number(income, normal(rng, income_mean, 10.0));
        sig.update_number(age, normal(rng, 40.0, 12.0));
        let mut u: f64 = rng.gen();
        let c = COUNTRIES
            .iter()
            .find(|(_, w)| {
                u -= w;
                u < 0.0
            })
            .map_or("IT", |(c, _)| c);
        sig.update_category(country, c);
        if rng.gen_bool(0.05) {
            sig.update_missing(segment);
        } else {
            sig.update_category(segment, SEGMENTS[rng.gen_range(0..3)]);
        }
        let predicted = usize::from(rng.gen_bool(0.3));
        let actual = if rng.gen_bool(0.9) {
            predicted
        } else {
            1 - predicted
        };
        cells[predicted][actual] += 1;
        let label = ["legit", "fraud"][predicted];
        sig.update_output(Some(label), None, Some(rng.gen_range(0.5..1.0)));
    }
    sig.flush();
    let mut p = empty_partial(model, "v1", minute * MIN, MIN, 0);
    p.sequence = minute as u64;
    p.counters.predictions = n;
    p.counters.labels = n;
    p.counters.matched = n;
    for (i, row) in cells.iter().enumerate() {
        for (j, &count) in row.iter().enumerate() {
            if count > 0 {
                p.confusion.push(ConfusionCell {
                    predicted: ["legit", "fraud"][i].into(),
                    actual: ["legit", "fraud"][j].into(),
                    count,
                });
            }
        }
    }
    p.signature = Some(sig.to_bytes(&names).unwrap());
    p
}

struct Run {
    drift_events: Vec<DriftEvent>,
    retrain_events: Vec<RetrainEvent>,
}

fn run(seed: u64, config: MonitorConfig) -> Run {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut monitor = Monitor::new(config).unwrap();
    let mut out = MonitorOutput::default();
    for minute in 0..HOURS * 60 {
        for model in ["shifted", "stable"] {
            let shifted = model == "shifted" && minute * MIN >= CHANGE_MS;
            monitor
                .ingest(&bucket(&mut rng, model, minute, shifted))
                .unwrap();
        }
        let now = (minute + 1) * MIN;
        if now % (5 * MIN) == 0 {
            let o = monitor.evaluate(now);
            out.drift_events.extend(o.drift_events);
            out.retrain_events.extend(o.retrain_events);
        }
    }
    for model in ["shifted", "stable"] {
        let s = monitor.signatures(model, "v1").unwrap();
        assert_eq!(s.decode_errors(), 0);
        let (start, end, n) = s.reference().unwrap();
        assert_eq!((start, end), (0, 60 * MIN));
        assert!(n > 5_000, "{n}");
    }
    Run {
        drift_events: out.drift_events,
        retrain_events: out.retrain_events,
    }
}

fn alarming(e: &DriftEvent) -> bool {
    matches!(e.state, DriftState::Warning | DriftState::Drift)
}

#[test]
fn a_covariate_shift_drifts_its_feature_only() {
    for seed in 0..3 {
        let r = run(seed, MonitorConfig::default());
        let hits: Vec<&DriftEvent> = r
            .drift_events
            .iter()
            .filter(|e| {
                e.model_id == "shifted"
                    && e.feature.as_deref() == Some("income")
                    && e.state == DriftState::Drift
            })
            .collect();
        assert_eq!(hits.len(), 1, "seed {seed}: {:?}", r.drift_events);
        let hit = hits[0];
        assert_eq!(hit.detector, "wasserstein_normed", "large reference");
        assert!(hit.value >= hit.threshold, "{hit:?}");
        assert!(
            hit.detected_at > CHANGE_MS && hit.detected_at <= CHANGE_MS + MAX_DELAY_MS,
            "seed {seed}: detected at {} min",
            hit.detected_at / MIN
        );
        assert_eq!(hit.baseline_end, 60 * MIN);
        let others: Vec<&DriftEvent> = r
            .drift_events
            .iter()
            .filter(|e| alarming(e) && !std::ptr::eq(*e, hit))
            .filter(|e| !(e.model_id == "shifted" && e.feature.as_deref() == Some("income")))
            .collect();
        assert!(others.is_empty(), "seed {seed}: false alarms {others:?}");
        assert!(
            r.retrain_events.is_empty(),
            "data drift is advisory by default: {:?}",
            r.retrain_events
        );
    }
}

#[test]
fn a_policy_listing_the_feature_retrains_on_it() {
    let mut config = MonitorConfig::default();
    config.default.policy.detectors = vec!["accuracy_drop".into(), "*:income".into()];
    let r = run(11, config);
    assert_eq!(r.retrain_events.len(), 1, "{:?}", r.retrain_events);
    let e = &r.retrain_events[0];
    assert_eq!(e.model_id, "shifted");
    assert!(
        e.reasons.iter().any(|reason| reason.contains("income")),
        "{e:?}"
    );
}
