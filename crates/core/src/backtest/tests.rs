use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// A classifier's history: `per_minute` predictions a minute for `hours`, correct with
/// probability `accuracy(t)` (t: ms since the start); every label arrives 30 s to 5 min later.
fn history(
    seed: u64,
    hours: i64,
    per_minute: i64,
    accuracy: impl Fn(i64) -> f64,
) -> (Vec<Prediction>, Vec<GroundTruth>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let classes = ["cat", "dog", "fox"];
    let mut predictions = Vec::new();
    let mut labels = Vec::new();
    for i in 0..hours * 60 * per_minute {
        let t = START + i * MIN / per_minute;
        let truth = rng.gen_range(0..3);
        let predicted = if rng.gen_bool(accuracy(t - START).clamp(0.0, 1.0)) {
            truth
        } else {
            (truth + rng.gen_range(1..3)) % 3
        };
        let request_id = format!("r{i}");
        predictions.push(Prediction {
            request_id: request_id.clone(),
            model_id: "m".into(),
            model_version: "v1".into(),
            timestamp: t,
            features: vec![],
            predicted_label: Some(classes[predicted].into()),
            predicted_value: None,
            scores: None,
            tags: vec![],
        });
        labels.push(GroundTruth {
            request_id,
            model_id: Some("m".into()),
            timestamp: t + rng.gen_range(30_000..5 * MIN),
            label: Some(classes[truth].into()),
            value: None,
        });
    }
    labels.sort_by_key(|l| l.timestamp);
    (predictions, labels)
}

/// Both inputs merged by event time (predictions first on ties), as a join task reads them.
fn replay(config: BacktestConfig, p: &[Prediction], l: &[GroundTruth]) -> BacktestReport {
    let mut b = Backtest::new(config).unwrap();
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
    b.finish()
}

fn config() -> BacktestConfig {
    let mut c = BacktestConfig::default();
    c.monitor.default.maturity_ms = 6 * MIN;
    c.fixed_interval_ms = DAY;
    c
}

fn policy<'a>(m: &'a ModelReport, name: &str) -> &'a PolicyReport {
    m.policies.iter().find(|p| p.name == name).unwrap()
}

#[test]
fn the_configured_policy_retrains_after_the_drop_and_beats_never_retraining() {
    let drop_at = 30 * HOUR;
    let (p, l) = history(7, 72, 40, |t| if t < drop_at { 0.92 } else { 0.70 });
    let report = replay(config(), &p, &l);
    assert_eq!(report.models.len(), 1);
    let m = &report.models[0];
    assert!((m.reference_accuracy - 0.92).abs() < 0.03, "{m:?}");
    let names: Vec<&str> = m.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["configured", "no-retrain", "fixed-1d"]);

    let configured = policy(m, "configured");
    let first = *configured.retrains.first().expect("a retrain");
    assert!(
        first > START + drop_at && first < START + drop_at + 3 * HOUR,
        "retrained at +{} h",
        (first - START) as f64 / HOUR as f64
    );
    // The retrained model recovers: no retrain storm under the cooldown.
    assert_eq!(configured.retrains.len(), 1, "{:?}", configured.retrains);
    let never = policy(m, "no-retrain");
    assert!(never.retrains.is_empty());
    assert!(
        never.hours_below_slo > configured.hours_below_slo + 30.0,
        "{} vs {}",
        never.hours_below_slo,
        configured.hours_below_slo
    );
    assert!(never.accuracy_hours_lost > configured.accuracy_hours_lost);
    assert!(never.cost > configured.cost);
    assert!(never
        .drift_events
        .iter()
        .any(|d| d.detector == "accuracy_drop" && d.at > START + drop_at));
    let fixed = policy(m, "fixed-1d");
    assert_eq!(fixed.retrains, [START + DAY, START + 2 * DAY]);
    // The daily retrain after the drop (day 2, at +48 h) helps, later than the policy.
    assert!(fixed.hours_below_slo < never.hours_below_slo);
    assert!(fixed.hours_below_slo > configured.hours_below_slo);
    assert_eq!(report.inputs.matched, p.len() as u64);
}

#[test]
fn the_same_history_gives_the_same_report() {
    let (p, l) = history(3, 30, 20, |t| if t < 15 * HOUR { 0.9 } else { 0.6 });
    let a = replay(config(), &p, &l);
    let b = replay(config(), &p, &l);
    assert_eq!(a, b);
    let json = serde_json::to_value(&a).unwrap();
    let pol = &json["models"][0]["policies"][0];
    for key in [
        "name",
        "retrains",
        "hours_below_slo",
        "accuracy_hours_lost",
        "cost",
    ] {
        assert!(pol.get(key).is_some(), "{key} missing: {pol}");
    }
    assert!(pol.get("timeline").is_none());
}

#[test]
fn named_policies_run_next_to_the_configured_one() {
    let (p, l) = history(5, 30, 20, |t| if t < 12 * HOUR { 0.9 } else { 0.6 });
    let mut c = config();
    let off = PolicyConfig {
        enabled: false,
        ..PolicyConfig::default()
    };
    c.policies.push(("off".into(), off));
    c.retrain_cost = Some(5.0);
    c.slo_accuracy = Some(0.8);
    let report = replay(c, &p, &l);
    let m = &report.models[0];
    assert_eq!((m.retrain_cost, m.slo_accuracy), (5.0, 0.8));
    let off = policy(m, "off");
    assert!(off.retrains.is_empty());
    assert_eq!(off.hours_below_slo, policy(m, "no-retrain").hours_below_slo);
    let configured = policy(m, "configured");
    assert!(
        (configured.cost
            - (5.0 * configured.retrains.len() as f64 + configured.accuracy_hours_lost))
            .abs()
            < 1e-9
    );
}

#[test]
fn refused_records_are_counted_and_regressors_skipped() {
    let mut b = Backtest::new(config()).unwrap();
    let (p, _) = history(1, 1, 1, |_| 0.9);
    let mut bad = p[0].clone();
    bad.request_id.clear();
    b.push_prediction(&bad);
    let mut reg = p[1].clone();
    reg.model_id = "reg".into();
    reg.predicted_label = None;
    reg.predicted_value = Some(1.0);
    b.push_prediction(&reg);
    b.push_label(&GroundTruth {
        request_id: reg.request_id.clone(),
        model_id: None,
        timestamp: reg.timestamp + 1_000,
        label: None,
        value: Some(1.5),
    });
    let report = b.finish();
    assert_eq!(report.rejected, 1);
    assert!(report.models.is_empty());
    assert_eq!(report.skipped_models, ["reg"]);
}

/// The decay estimate through the whole replay (join, partials, windows, fit) lands within
/// 20 % of the known rate, for linear and for exponential decay.
#[test]
fn decay_of_synthetic_streams_is_estimated_within_twenty_percent() {
    let days = 8;
    let linear = |t: i64| 0.95 - 0.03 * t as f64 / DAY as f64;
    let k = 0.15;
    let exponential = move |t: i64| 0.95 * (-k * t as f64 / DAY as f64).exp();
    for (name, acc, want) in [
        ("linear", &linear as &dyn Fn(i64) -> f64, 0.03),
        ("exponential", &exponential, 0.95 * k),
    ] {
        let (p, l) = history(11, days * 24, 20, acc);
        let report = replay(config(), &p, &l);
        let v = &report.models[0].versions[0];
        let got = v.estimated_decay_per_day.unwrap();
        assert!(
            (got - want).abs() < 0.2 * want,
            "{name}: estimated {got}, known {want}"
        );
        assert!(v.suggested_retrain_interval_ms.is_some(), "{name}");
    }
}

#[test]
fn durations_are_named_exactly() {
    assert_eq!(duration_name(7 * DAY), "7d");
    assert_eq!(duration_name(36 * HOUR), "36h");
    assert_eq!(duration_name(90 * MIN), "90m");
    assert_eq!(duration_name(1_500), "1500ms");
}
