use super::*;
use driftwatch_core::monitor::{DetectorState, LatestVerdict};
use driftwatch_core::ModelMetrics;

fn metrics(model: &str, window: &str, end: i64, accuracy: f64) -> ModelMetrics {
    ModelMetrics {
        model_id: model.into(),
        model_version: "v1".into(),
        window: window.into(),
        window_start: end - 900_000,
        window_end: end,
        predictions: 100,
        labeled: 80,
        label_coverage: 0.8,
        metrics: vec![("accuracy".into(), accuracy), ("f1_macro".into(), 0.5)],
        emitted_at: end,
        estimated_decay_per_day: Some(0.01),
        suggested_retrain_interval_ms: None,
    }
}

fn drift(
    model: &str,
    feature: Option<&str>,
    from: DriftState,
    to: DriftState,
    at: i64,
) -> DriftEvent {
    DriftEvent {
        event_id: format!("{model}-{at}"),
        model_id: model.into(),
        model_version: "v1".into(),
        detector: if feature.is_some() {
            "ks"
        } else {
            "accuracy_drop"
        }
        .into(),
        feature: feature.map(str::to_owned),
        previous_state: from,
        state: to,
        statistic: "p_value".into(),
        value: 0.001,
        threshold: 0.05,
        baseline_start: 0,
        baseline_end: 0,
        window_start: at - 60_000,
        window_end: at,
        baseline_samples: 10,
        window_samples: 10,
        severity: 0.5,
        detected_at: at,
    }
}

fn stats() -> MonitorStats {
    let mut m = MonitorStats {
        progress_ms: 5_000_000,
        assigned_partitions: vec![0, 3],
        ..MonitorStats::default()
    };
    let mut scored = metrics("fraud", "15m", 4_000_000, 0.7);
    scored.metrics.push(("estimated_accuracy".into(), 0.61));
    m.latest_metrics = vec![
        metrics("fraud", "1h", 4_000_000, 0.8),
        scored,
        metrics("churn", "15m", 4_000_000, 0.9),
    ];
    let key = |model: &str, w: &str| (model.to_string(), "v1".to_string(), w.to_string());
    m.accuracy_history
        .insert(key("fraud", "1h"), vec![(3_000_000, 0.9), (4_000_000, 0.8)]);
    m.accuracy_history.insert(
        key("fraud", "15m"),
        vec![(2_000_000, 0.92), (3_000_000, 0.8), (4_000_000, 0.7)],
    );
    m.accuracy_history
        .insert(key("churn", "15m"), vec![(4_000_000, 0.9)]);
    let det = |d: &str, f: Option<&str>, state: DriftState, value: Option<f64>| DetectorState {
        version: "v1".into(),
        detector: d.into(),
        feature: f.map(str::to_owned),
        state,
        latest: value.map(|value| LatestVerdict {
            statistic: "p_value".into(),
            value,
            threshold: 0.05,
            window_end: 4_000_000,
        }),
    };
    m.detector_states.insert(
        "fraud".into(),
        vec![
            det("ks", Some("x1"), DriftState::Ok, Some(0.4)),
            det("accuracy_drop", None, DriftState::Drift, None),
            det("ks", Some("x0"), DriftState::Drift, Some(0.0001)),
        ],
    );
    m.detector_states.insert(
        "churn".into(),
        vec![det("accuracy_drop", None, DriftState::Ok, None)],
    );
    m.drift_events = vec![
        drift("fraud", None, DriftState::Ok, DriftState::Drift, 3_000_000),
        drift(
            "fraud",
            Some("x0"),
            DriftState::Ok,
            DriftState::Warning,
            3_100_000,
        ),
        drift(
            "fraud",
            Some("x0"),
            DriftState::Warning,
            DriftState::Drift,
            3_500_000,
        ),
        // A model this worker no longer owns: its events are not listed.
        drift("gone", None, DriftState::Ok, DriftState::Drift, 3_600_000),
    ];
    m.retrain_events = vec![RetrainEvent {
        event_id: "r1".into(),
        model_id: "fraud".into(),
        model_version: "v1".into(),
        reasons: vec!["accuracy fell".into()],
        drift_event_ids: vec![],
        metrics: vec![],
        train_from: 3_000_000,
        train_to: 3_600_000,
        dry_run: false,
        created_at: 3_600_000,
        estimated_decay_per_day: None,
        suggested_retrain_interval_ms: None,
    }];
    m
}

#[test]
fn each_owned_model_version_is_listed_with_its_worst_state_and_shortest_window_first() {
    let mut join = JoinStats::default();
    join.label_delay_ms
        .insert("fraud".into(), (60_000, 90_000, 120_000, 10));
    let v = build(Some(&join), Some(&stats()), "g");
    let names: Vec<&str> = v.models.iter().map(|m| m.model_id.as_str()).collect();
    assert_eq!(names, ["churn", "fraud"]);
    let fraud = &v.models[1];
    assert_eq!(fraud.state, DriftState::Drift);
    assert_eq!(v.models[0].state, DriftState::Ok);
    let windows: Vec<&str> = fraud.windows.iter().map(|w| w.window.as_str()).collect();
    assert_eq!(windows, ["15m", "1h"]);
    assert_eq!(fraud.windows[0].accuracy, Some(0.7));
    // The estimate sits beside the realized accuracy; a window without scores has none.
    assert_eq!(fraud.windows[0].estimated_accuracy, Some(0.61));
    assert_eq!(fraud.windows[1].estimated_accuracy, None);
    assert_eq!(fraud.windows[0].label_coverage, 0.8);
    assert_eq!(fraud.label_delay_p50_ms, Some(60_000));
    assert_eq!(fraud.label_delay_p99_ms, Some(120_000));
    assert_eq!(v.models[0].label_delay_p50_ms, None);
    assert_eq!(fraud.estimated_decay_per_day, Some(0.01));
    let h = fraud.history.as_ref().unwrap();
    assert_eq!(h.window, "15m");
    assert_eq!(h.points.len(), 3);
    assert_eq!(v.scope.partitions, [0, 3]);
    assert_eq!(v.scope.monitor_group, "g");
    assert_eq!(v.event_time_ms, 5_000_000);
}

#[test]
fn the_drift_table_has_every_detector_drifting_first_with_its_latest_statistic() {
    let v = build(None, Some(&stats()), "g");
    let fraud = &v.models[1];
    let rows: Vec<(Option<&str>, DriftState)> = fraud
        .detectors
        .iter()
        .map(|d| (d.feature.as_deref(), d.state))
        .collect();
    assert_eq!(
        rows,
        [
            (None, DriftState::Drift),
            (Some("x0"), DriftState::Drift),
            (Some("x1"), DriftState::Ok)
        ]
    );
    // x0: its latest verdict; the accuracy drop, never judged here: its latest transition.
    let x0 = &fraud.detectors[1];
    assert_eq!(x0.since, Some(3_500_000));
    assert_eq!((x0.value, x0.judged), (Some(0.0001), Some(4_000_000)));
    let drop = &fraud.detectors[0];
    assert_eq!((drop.value, drop.judged), (Some(0.001), None));
    assert_eq!(fraud.detectors[2].value, Some(0.4));
    assert_eq!(v.models[0].detectors[0].statistic, None);
}

#[test]
fn markers_are_drift_entries_and_retrains_and_events_are_newest_first() {
    let v = build(None, Some(&stats()), "g");
    let kinds: Vec<(&str, i64)> = v.models[1].markers.iter().map(|m| (m.kind, m.at)).collect();
    assert_eq!(
        kinds,
        [
            ("drift", 3_000_000),
            ("drift", 3_500_000),
            ("retrain", 3_600_000)
        ]
    );
    let events: Vec<(&str, i64)> = v.events.iter().map(|e| (e.kind, e.at)).collect();
    assert_eq!(
        events,
        [
            ("retrain", 3_600_000),
            ("drift", 3_500_000),
            ("drift", 3_100_000),
            ("drift", 3_000_000)
        ]
    );
    assert_eq!(v.events[0].detail, "accuracy fell");
    let chart = &v.models[1].chart;
    assert!(chart.starts_with("<svg ") && chart.ends_with("</svg>"));
    assert!(
        chart.contains("data-series=\"accuracy\" data-points=\"3\""),
        "{chart}"
    );
    assert_eq!(
        chart
            .matches("<g class=\"mark\" data-series=\"drift\"")
            .count(),
        2
    );
    assert_eq!(
        chart
            .matches("<g class=\"mark\" data-series=\"retrain\"")
            .count(),
        1
    );
    assert_eq!(v.events[1].summary, "ks:x0 WARNING → DRIFT");
}

#[test]
fn a_worker_without_monitor_says_so_and_lists_nothing() {
    let v = build(Some(&JoinStats::default()), None, "g");
    assert!(v.scope.join && !v.scope.monitor);
    assert!(v.models.is_empty() && v.events.is_empty());
}
