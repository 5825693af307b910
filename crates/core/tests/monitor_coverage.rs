//! From join to monitor: what a window's `predictions` and `label_coverage` count, and that
//! labels of no known version make no version series.
//!
//! A join task gets an hour of predictions of `fraud/v1`; the first half is fully labeled,
//! the second half only partly, and the label timeout is long, so the rest is still pending
//! when the monitor looks. Orphan and duplicate labels name the model but, as labels do, no
//! version. Its partials, flushed every ten minutes, go through the monitor.

#![allow(clippy::unwrap_used)]

use driftwatch_core::join::partial::PartialAggregator;
use driftwatch_core::join::{
    Actual, Input, JoinConfig, JoinTask, LabelIn, Predicted, PredictionIn, RequestKey, HOUR_MS,
};
use driftwatch_core::monitor::{Monitor, MonitorConfig, Placement};
use driftwatch_core::{JoinCounters, ModelPartial};

const BASE: i64 = 1_750_000_000_000 / HOUR_MS * HOUR_MS;
const MIN: i64 = 60_000;

fn key(s: &str) -> RequestKey {
    RequestKey::from_request_id(s)
}

struct Run {
    task: JoinTask,
    partials: Vec<ModelPartial>,
}

/// Feeds the join in time order (30 predictions a minute for an hour) and collects the
/// partials of flushes every ten minutes of event time and one at the end.
fn run(version: &str) -> Run {
    let config = JoinConfig {
        label_timeout_ms: 2 * HOUR_MS,
        orphan_timeout_ms: 10 * MIN,
        allowed_lateness_ms: 0,
        ..JoinConfig::default()
    };
    let mut task = JoinTask::new(config).unwrap();
    task.set_caught_up(Input::Predictions, true);
    task.set_caught_up(Input::Labels, true);
    let model = task.intern_model("fraud", version).unwrap();
    let hint = task.intern_model_hint("fraud").unwrap();
    let yes = task.intern_class("yes").unwrap();
    let mut agg = PartialAggregator::new(0, MIN).unwrap();
    let mut partials = Vec::new();
    for minute in 0..60 {
        for i in 0..30 {
            let t = BASE + minute * MIN + i * 2_000;
            let id = format!("r{minute}-{i}");
            task.push_prediction(PredictionIn {
                key: key(&id),
                model,
                time: t,
                predicted: Predicted::Class(yes),
                score: None,
            });
            // Every prediction of the first half hour is labeled, one in two of the second.
            if minute < 30 || i % 2 == 0 {
                task.push_label(LabelIn {
                    key: key(&id),
                    model_hint: Some(hint),
                    time: t + 1_000,
                    actual: Actual::Class(yes),
                });
            }
            // A duplicate of a label now and then.
            if i == 8 {
                task.push_label(LabelIn {
                    key: key(&id),
                    model_hint: Some(hint),
                    time: t + 1_500,
                    actual: Actual::Class(yes),
                });
            }
        }
        // A label whose prediction never comes, once the orphan timeout has passed.
        task.push_label(LabelIn {
            key: key(&format!("orphan-{minute}")),
            model_hint: Some(hint),
            time: BASE + minute * MIN + 59_000,
            actual: Actual::Class(yes),
        });
        task.poll(0, &mut |e| agg.fold(&e));
        if minute % 10 == 9 {
            partials.extend(agg.flush(task.interner(), task.watermark()));
        }
    }
    // The last orphans: the watermark passes their timeout (predictions still have time).
    task.advance_to(BASE + 75 * MIN, &mut |e| agg.fold(&e));
    partials.extend(agg.flush(task.interner(), task.watermark()));
    Run { task, partials }
}

fn monitor() -> Monitor {
    let mut c = MonitorConfig::default();
    c.default.maturity_ms = 0;
    c.default.windows = vec!["1h".into()];
    Monitor::new(c).unwrap()
}

#[test]
fn coverage_divides_by_every_prediction_of_the_window_pending_ones_included() {
    let Run { task, partials } = run("v1");
    let c = task.total_counters();
    // The join: 1 800 predictions taken in, 1 350 matched, 450 pending (none expired yet).
    assert_eq!(c.received_predictions, 1_800, "{c:?}");
    assert_eq!((c.matched, c.expired_unlabeled), (1_350, 0), "{c:?}");
    assert_eq!(task.buffer().stats().pending_predictions, 450);
    let sum = partials
        .iter()
        .fold(JoinCounters::default(), |a, p| a.merged(&p.counters));
    assert_eq!(sum, c, "the partials carry the task's counters");

    let mut m = monitor();
    for p in &partials {
        m.ingest(p).unwrap();
    }
    let out = m.evaluate(BASE + 90 * MIN);
    let w = m.metrics("fraud", "v1", "1h", BASE + 90 * MIN).unwrap();
    assert_eq!((w.window_start, w.window_end), (BASE, BASE + HOUR_MS));
    assert_eq!((w.predictions, w.labeled), (1_800, 1_350));
    // Resolved predictions alone would say 1 350 / 1 350 = 1.0.
    assert!((w.label_coverage - 0.75).abs() < 1e-12, "{w:?}");
    assert!(out.metrics.contains(&w));
}

#[test]
fn labels_of_no_known_version_make_no_version_series() {
    let Run { task, partials } = run("v1");
    let c = task.total_counters();
    assert_eq!((c.orphan_labels, c.duplicate_labels), (60, 60), "{c:?}");
    let mut m = monitor();
    let mut unversioned = JoinCounters::default();
    for p in &partials {
        if m.ingest(p).unwrap() == Placement::Unversioned {
            assert_eq!(p.model_version, "");
            unversioned = unversioned.merged(&p.counters);
        }
    }
    // Accounted on the partials topic, but no series of their own.
    assert_eq!(unversioned.orphan_labels, 60);
    assert_eq!(unversioned.duplicate_labels, 60);
    let out = m.evaluate(BASE + 90 * MIN);
    let versions: Vec<&str> = out
        .metrics
        .iter()
        .map(|x| x.model_version.as_str())
        .collect();
    assert_eq!(versions, vec!["v1"]);
    assert!(m
        .model_metrics("fraud", BASE + 90 * MIN)
        .iter()
        .all(|x| x.model_version == "v1"));
    assert!(m.window_stats("fraud", "").is_none());
    assert!(m.baseline("fraud", "").is_none());
}

/// Predictions that really have an empty version are a series like any other, and the
/// version-less labels of that model then merge into it.
#[test]
fn a_model_whose_predictions_have_an_empty_version_keeps_its_series() {
    let Run { partials, .. } = run("");
    let mut m = monitor();
    for p in &partials {
        assert_ne!(m.ingest(p).unwrap(), Placement::Unversioned, "{p:?}");
    }
    let w = m.metrics("fraud", "", "1h", BASE + 90 * MIN).unwrap();
    assert_eq!((w.predictions, w.labeled), (1_800, 1_350));
}
