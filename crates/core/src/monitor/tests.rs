//! Façade tests: the whole path from partials to events.

use super::*;
use crate::join::partial::empty_partial;
use crate::ConfusionCell;

const MIN: i64 = 60_000;

fn partial(model: &str, minute: i64, seq: u64, right: u64, wrong: u64) -> ModelPartial {
    let mut p = empty_partial(model, "v1", minute * MIN, MIN, 0);
    p.sequence = seq;
    p.counters.predictions = right + wrong;
    p.counters.matched = right + wrong;
    p.confusion = vec![
        ConfusionCell {
            predicted: "a".into(),
            actual: "a".into(),
            count: right,
        },
        ConfusionCell {
            predicted: "a".into(),
            actual: "b".into(),
            count: wrong,
        },
    ];
    p
}

fn config() -> MonitorConfig {
    let mut c = MonitorConfig::default();
    c.default.maturity_ms = 2 * MIN;
    c
}

/// 100 outcomes a minute, 8 % wrong until `change`, 30 % after.
fn run(m: &mut Monitor, model: &str, minutes: i64, change: Option<i64>) -> MonitorOutput {
    let mut all = MonitorOutput::default();
    for t in 0..minutes {
        let wrong = match change {
            Some(c) if t >= c => 30,
            _ => 7 + (t % 3) as u64,
        };
        m.ingest(&partial(model, t, t as u64, 100 - wrong, wrong))
            .unwrap();
        if t % 5 == 4 {
            let out = m.evaluate((t + 1) * MIN);
            all.drift_events.extend(out.drift_events);
            all.retrain_events.extend(out.retrain_events);
            all.metrics.extend(out.metrics);
        }
    }
    all
}

#[test]
fn drop_produces_drift_and_one_retrain() {
    let mut m = Monitor::new(config()).unwrap();
    let out = run(&mut m, "m", 240, Some(120));
    let acc: Vec<_> = out
        .drift_events
        .iter()
        .filter(|e| e.detector == "accuracy_drop" && e.state == DriftState::Drift)
        .collect();
    assert_eq!(acc.len(), 1, "{:?}", out.drift_events);
    assert!(acc[0].window_end > 120 * MIN);
    assert!(acc[0].value < acc[0].threshold);
    assert!(
        out.drift_events.iter().all(|e| e.window_end > 120 * MIN),
        "event before the change: {:?}",
        out.drift_events
    );
    assert_eq!(out.retrain_events.len(), 1);
    let r = &out.retrain_events[0];
    assert!(r.drift_event_ids.contains(&acc[0].event_id));
    assert!(
        r.train_from >= 60 * MIN && r.train_from <= r.train_to,
        "{r:?}"
    );
    assert_eq!(
        m.drift_state("m", "v1", "accuracy_drop", None),
        Some(DriftState::Drift)
    );
    assert!(m.baseline("m", "v1").unwrap().is_ready());
    assert!(!out.metrics.is_empty());
    let now = 240 * MIN;
    let snap = m.metrics("m", "v1", "15m", now).unwrap();
    assert_eq!(snap.labeled, 1500);
    assert_eq!(m.model_metrics("m", now).len(), 3);
}

#[test]
fn same_input_same_output() {
    let mut a = Monitor::new(config()).unwrap();
    let mut b = Monitor::new(config()).unwrap();
    assert_eq!(
        run(&mut a, "m", 200, Some(100)),
        run(&mut b, "m", 200, Some(100))
    );
}

#[test]
fn stable_model_stays_quiet() {
    let mut m = Monitor::new(config()).unwrap();
    let out = run(&mut m, "m", 600, None);
    assert!(out.drift_events.is_empty(), "{:?}", out.drift_events);
    assert!(out.retrain_events.is_empty());
}

#[test]
fn submitted_judgements_share_machines_and_policy() {
    let mut c = config();
    c.default.policy.detectors = vec!["psi:age".into()];
    let mut m = Monitor::new(c).unwrap();
    m.ingest(&partial("m", 0, 0, 90, 10)).unwrap();
    let j = |end: i64| Judgement {
        detector: "psi".into(),
        feature: Some("age".into()),
        level: Level::Drift,
        statistic: "psi".into(),
        value: 0.4,
        threshold: 0.2,
        baseline_start: 0,
        baseline_end: MIN,
        baseline_samples: 1000,
        window_start: end - MIN,
        window_end: end,
        window_samples: 500,
        severity: 0.8,
        onset: None,
    };
    m.submit("m", "v1", j(MIN)).unwrap();
    assert!(m.evaluate(MIN).drift_events.is_empty());
    m.submit("m", "v1", j(2 * MIN)).unwrap();
    let out = m.evaluate(2 * MIN);
    assert_eq!(out.drift_events.len(), 1);
    assert_eq!(out.drift_events[0].feature.as_deref(), Some("age"));
    // The policy needs labeled outcomes in the judged window: none are mature yet.
    assert!(out.retrain_events.is_empty());
    assert_eq!(
        m.drift_state("m", "v1", "psi", Some("age")),
        Some(DriftState::Drift)
    );
}

#[test]
fn external_baseline_and_restored_policy_state() {
    let mut m = Monitor::new(config()).unwrap();
    let mut reference = partial("m", -1000, 0, 990, 10);
    reference.bucket_width_ms = 1000 * MIN;
    m.set_baseline("m", "v1", &reference).unwrap();
    assert_eq!(
        m.baseline("m", "v1").unwrap().source(),
        BaselineSource::External
    );
    m.restore_policy_state(
        "m",
        PolicyState {
            last_retrain_at: Some(0),
            ..PolicyState::default()
        },
    );
    // 92 % against a 99 % reference: drift, but the restored cooldown holds the retrain back.
    let out = run(&mut m, "m", 120, None);
    assert!(out
        .drift_events
        .iter()
        .any(|e| e.detector == "accuracy_drop" && e.state == DriftState::Drift));
    assert!(out.retrain_events.is_empty());
    assert!(m.policy_state("m").unwrap().suppressed_by_cooldown > 0);
}

#[test]
fn invalid_config_and_partials_are_refused() {
    let mut c = MonitorConfig::default();
    c.default.windows.clear();
    assert!(matches!(Monitor::new(c), Err(MonitorError::Config(_))));
    let mut m = Monitor::new(config()).unwrap();
    let mut p = partial("m", 0, 0, 1, 0);
    p.bucket_width_ms = -5;
    assert!(matches!(m.ingest(&p), Err(MonitorError::Window(_))));
    m.ingest(&partial("m", 0, 0, 1, 0)).unwrap();
    assert_eq!(
        m.ingest(&partial("m", 0, 0, 1, 0)).unwrap(),
        Placement::Duplicate
    );
    assert_eq!(m.window_stats("m", "v1").unwrap().duplicates, 1);
}

/// A backlog merged at once and evaluated once is judged window by window: the drop test's
/// events are those of an evaluation after every minute, with the same ids, and the retrain
/// policy fires on the same drift.
#[test]
fn a_burst_is_judged_window_by_window() {
    let drop_events = |out: &MonitorOutput| -> Vec<DriftEvent> {
        out.drift_events
            .iter()
            .filter(|e| e.detector == "accuracy_drop")
            .cloned()
            .collect()
    };
    let mut live = Monitor::new(config()).unwrap();
    let mut live_out = MonitorOutput::default();
    let mut burst = Monitor::new(config()).unwrap();
    for t in 0..240 {
        let wrong = if t >= 120 { 30 } else { 7 + (t % 3) as u64 };
        let p = partial("m", t, t as u64, 100 - wrong, wrong);
        live.ingest(&p).unwrap();
        let out = live.evaluate((t + 1) * MIN);
        live_out.drift_events.extend(out.drift_events);
        live_out.retrain_events.extend(out.retrain_events);
        // The burst monitor sees the first hour live, then the rest at once.
        burst.ingest(&p).unwrap();
        if t < 60 {
            burst.evaluate((t + 1) * MIN);
        }
    }
    let burst_out = burst.evaluate(240 * MIN);
    // A monitor that sees the whole backlog before its first evaluation judges it all too.
    let mut cold = Monitor::new(config()).unwrap();
    for t in 0..240 {
        let wrong = if t >= 120 { 30 } else { 7 + (t % 3) as u64 };
        cold.ingest(&partial("m", t, t as u64, 100 - wrong, wrong))
            .unwrap();
    }
    let cold_out = cold.evaluate(240 * MIN);
    let expected: Vec<String> = drop_events(&live_out)
        .iter()
        .map(|e| e.event_id.clone())
        .collect();
    let got: Vec<String> = drop_events(&burst_out)
        .iter()
        .map(|e| e.event_id.clone())
        .collect();
    assert!(
        drop_events(&live_out)
            .iter()
            .any(|e| e.state == DriftState::Drift),
        "{live_out:?}"
    );
    assert_eq!(got, expected);
    let cold_ids: Vec<String> = drop_events(&cold_out)
        .iter()
        .map(|e| e.event_id.clone())
        .collect();
    assert_eq!(cold_ids, expected);
    let causes = |out: &MonitorOutput| -> Vec<Vec<String>> {
        out.retrain_events
            .iter()
            .map(|e| e.drift_event_ids.clone())
            .collect()
    };
    assert_eq!(live_out.retrain_events.len(), 1);
    assert_eq!(causes(&burst_out), causes(&live_out));
    assert_eq!(causes(&cold_out), causes(&live_out));
}

/// A stable classifier (90 % accurate, 30 outcomes a minute: 1 800 per one-hour window),
/// baseline learned from its first 1 000 outcomes, evaluated every minute for `days`; then,
/// with `drop_to`, accuracy falls for six hours. The accuracy-drop events.
fn accuracy_run(seed: u64, days: i64, drop_to: Option<f64>) -> (Vec<DriftEvent>, i64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut m = Monitor::new(config()).unwrap();
    let stable = days * 24 * 60;
    let end = stable + drop_to.map_or(0, |_| 6 * 60);
    let mut events = Vec::new();
    for t in 0..end {
        let p = if t < stable {
            0.9
        } else {
            drop_to.unwrap_or(0.9)
        };
        let right = (0..30).filter(|_| rng.gen_bool(p)).count() as u64;
        m.ingest(&partial("m", t, t as u64, right, 30 - right))
            .unwrap();
        let out = m.evaluate((t + 1) * MIN);
        events.extend(
            out.drift_events
                .into_iter()
                .filter(|e| e.detector == "accuracy_drop"),
        );
    }
    (events, stable * MIN)
}

#[test]
fn stable_accuracy_does_not_flap_and_a_drop_is_still_found() {
    // Ten baselines (seeds) × three days of one-minute evaluations: 43 200 windows judged.
    for seed in 0..10 {
        let (events, _) = accuracy_run(seed, 3, None);
        assert!(events.is_empty(), "seed {seed}: {events:?}");
    }
    // A 10-point drop after a day: DRIFT within the hour that follows.
    let (events, change) = accuracy_run(42, 1, Some(0.8));
    let drift = events
        .iter()
        .find(|e| e.state == DriftState::Drift)
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(drift.window_end > change && drift.window_end <= change + 60 * MIN);
    assert!(events.iter().all(|e| e.window_end > change), "{events:?}");
}

/// The decay fit reaches the published records: metrics snapshots carry it once six hours
/// matured, and so do retrain events; a decaying model gets a suggested interval.
#[test]
fn decay_and_suggested_interval_are_published_in_metrics_and_retrain_events() {
    let mut m = Monitor::new(config()).unwrap();
    let early = run(&mut m, "m", 6 * 60, None);
    assert!(early
        .metrics
        .iter()
        .all(|s| s.estimated_decay_per_day.is_none()));
    // Stable for eight hours, then a drop: the event carries the (flat) fit, no interval.
    let mut m = Monitor::new(config()).unwrap();
    let out = run(&mut m, "m", 10 * 60, Some(8 * 60));
    assert_eq!(out.retrain_events.len(), 1);
    let e = &out.retrain_events[0];
    assert!(
        e.estimated_decay_per_day.is_some_and(|d| d.abs() < 0.01),
        "{e:?}"
    );
    assert_eq!(e.suggested_retrain_interval_ms, None);
    // One more wrong outcome in 100 every 20 minutes: 0.72 accuracy a day.
    let mut m = Monitor::new(config()).unwrap();
    let mut last = None;
    for t in 0..12 * 60 {
        let wrong = 5 + (t / 20) as u64;
        m.ingest(&partial("m", t, t as u64, 100 - wrong, wrong))
            .unwrap();
        if t % 5 == 4 {
            last = m.evaluate((t + 1) * MIN).metrics.pop();
        }
    }
    let last = last.unwrap();
    let per_day = last.estimated_decay_per_day.unwrap();
    assert!((per_day - 0.72).abs() < 0.72 * 0.1, "{last:?}");
    assert!(last.suggested_retrain_interval_ms.is_some_and(|t| t > 0));
}
