//! The console's data model: what `/api/models` returns and the page draws. Built by a pure
//! function from the stages' stats ([`build`]), so it is tested without a broker or a browser.

use std::collections::{BTreeMap, BTreeSet};

use driftwatch_core::monitor::parse_duration_ms;
use driftwatch_core::{DriftEvent, DriftState, RetrainEvent};
use serde::Serialize;

use crate::join::JoinStats;
use crate::monitor::MonitorStats;

/// Most events listed in the console, newest first.
pub const RECENT_EVENTS: usize = 40;

/// Everything the console shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsoleView {
    /// What this worker runs and owns: the page shows only its own models.
    pub scope: Scope,
    /// The monitor's event time (the latest epoch judged), ms; 0 before the first.
    pub event_time_ms: i64,
    pub models: Vec<ModelView>,
    /// Drift and retrain events of the models shown, newest first, at most
    /// [`RECENT_EVENTS`].
    pub events: Vec<EventView>,
}

/// The stages this process runs and what it owns.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Scope {
    pub join: bool,
    pub monitor: bool,
    /// The monitor's consumer group (when it runs).
    pub monitor_group: String,
    /// Partitions of the partials topic the monitor owns: its models are those keyed to them.
    pub partitions: Vec<i32>,
}

/// One model version.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelView {
    pub model_id: String,
    pub model_version: String,
    /// The most severe state of its detectors (DRIFT, WARNING, RECOVERED, OK).
    pub state: DriftState,
    /// Latest snapshot per window, shortest window first.
    pub windows: Vec<WindowView>,
    /// Label delay of matched outcomes of the model (all versions), ms, when the join stage
    /// runs in this process.
    pub label_delay_p50_ms: Option<u64>,
    pub label_delay_p99_ms: Option<u64>,
    /// The fitted accuracy decay and suggested retrain interval, once estimated.
    pub estimated_decay_per_day: Option<f64>,
    pub suggested_retrain_interval_ms: Option<i64>,
    /// Accuracy over the latest snapshots of the shortest window with data.
    pub history: Option<History>,
    /// Drift (into DRIFT or back) and retrain events, for the chart's markers.
    pub markers: Vec<Marker>,
    /// Every detector, model-level and per feature, the most severe first.
    pub detectors: Vec<DetectorView>,
    /// The history and markers drawn as one `<svg>` by [`crate::chart::timeline`], the chart
    /// code of the cli's HTML reports; empty without history.
    pub chart: String,
}

/// Metrics of one window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowView {
    pub window: String,
    pub window_end: i64,
    pub predictions: u64,
    pub labeled: u64,
    pub label_coverage: f64,
    /// Realized accuracy over the window's matured labels.
    pub accuracy: Option<f64>,
    /// Accuracy of the window's scored predictions still without a label, estimated from
    /// their scores (CBPE); none once every prediction is labelled or without scores.
    pub estimated_accuracy: Option<f64>,
}

/// Accuracy points of one window: (window end ms, accuracy).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct History {
    pub window: String,
    pub points: Vec<(i64, f64)>,
}

/// An event drawn on the chart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Marker {
    pub at: i64,
    /// `drift`, `recovered` or `retrain`.
    pub kind: &'static str,
    pub label: String,
}

/// One detector's state with its latest verdict's statistic (or, for a model restored here and
/// not judged since, its latest transition's).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DetectorView {
    pub detector: String,
    pub feature: Option<String>,
    pub state: DriftState,
    pub statistic: Option<String>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// Window end of the latest verdict.
    pub judged: Option<i64>,
    /// Event time of the latest transition.
    pub since: Option<i64>,
}

/// A drift or retrain event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventView {
    /// `drift` or `retrain`.
    pub kind: &'static str,
    pub at: i64,
    pub model_id: String,
    pub model_version: String,
    pub event_id: String,
    /// For drift events `detector[:feature] FROM → TO`, for retrain events their reasons.
    pub summary: String,
    pub detail: String,
}

fn severity(s: DriftState) -> u8 {
    match s {
        DriftState::Drift => 3,
        DriftState::Warning => 2,
        DriftState::Recovered => 1,
        DriftState::Ok => 0,
    }
}

fn window_ms(name: &str) -> i64 {
    parse_duration_ms(name).unwrap_or(i64::MAX)
}

type VersionKey = (String, String);

/// Builds the console's view from what the stages of this process keep.
pub fn build(
    join: Option<&JoinStats>,
    monitor: Option<&MonitorStats>,
    monitor_group: &str,
) -> ConsoleView {
    let mut scope = Scope {
        join: join.is_some(),
        monitor: monitor.is_some(),
        ..Scope::default()
    };
    let Some(m) = monitor else {
        return ConsoleView {
            scope,
            event_time_ms: 0,
            models: Vec::new(),
            events: Vec::new(),
        };
    };
    scope.monitor_group = monitor_group.to_string();
    scope.partitions = m.assigned_partitions.clone();

    let mut keys: BTreeSet<VersionKey> = BTreeSet::new();
    keys.extend(
        m.latest_metrics
            .iter()
            .map(|s| (s.model_id.clone(), s.model_version.clone())),
    );
    keys.extend(
        m.accuracy_history
            .keys()
            .map(|(a, b, _)| (a.clone(), b.clone())),
    );
    keys.extend(
        m.detector_states
            .iter()
            .flat_map(|(model, states)| states.iter().map(|d| (model.clone(), d.version.clone()))),
    );
    let owned: BTreeSet<&str> = keys.iter().map(|(a, _)| a.as_str()).collect();

    // The latest event per detector machine gives its statistic in the table.
    let mut last_event: BTreeMap<(&str, &str, &str, Option<&str>), &DriftEvent> = BTreeMap::new();
    for e in &m.drift_events {
        last_event.insert(
            (
                &e.model_id,
                &e.model_version,
                &e.detector,
                e.feature.as_deref(),
            ),
            e,
        );
    }

    let models = keys
        .iter()
        .map(|(model, version)| model_view(model, version, m, join, &last_event))
        .collect();

    let mut events: Vec<EventView> = m
        .drift_events
        .iter()
        .filter(|e| owned.contains(e.model_id.as_str()))
        .map(drift_view)
        .chain(
            m.retrain_events
                .iter()
                .filter(|e| owned.contains(e.model_id.as_str()))
                .map(retrain_view),
        )
        .collect();
    events.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.event_id.cmp(&b.event_id)));
    events.truncate(RECENT_EVENTS);

    ConsoleView {
        scope,
        event_time_ms: m.progress_ms,
        models,
        events,
    }
}

fn model_view(
    model: &str,
    version: &str,
    m: &MonitorStats,
    join: Option<&JoinStats>,
    last_event: &BTreeMap<(&str, &str, &str, Option<&str>), &DriftEvent>,
) -> ModelView {
    let snapshots: Vec<_> = m
        .latest_metrics
        .iter()
        .filter(|s| s.model_id == model && s.model_version == version)
        .collect();
    let mut windows: Vec<WindowView> = snapshots
        .iter()
        .map(|s| WindowView {
            window: s.window.clone(),
            window_end: s.window_end,
            predictions: s.predictions,
            labeled: s.labeled,
            label_coverage: s.label_coverage,
            accuracy: metric(&s.metrics, "accuracy"),
            estimated_accuracy: metric(&s.metrics, "estimated_accuracy"),
        })
        .collect();
    windows.sort_by_key(|w| window_ms(&w.window));

    let history = m
        .accuracy_history
        .iter()
        .filter(|((a, b, _), points)| a == model && b == version && !points.is_empty())
        .min_by_key(|((_, _, w), _)| window_ms(w))
        .map(|((_, _, w), points)| History {
            window: w.clone(),
            points: points.clone(),
        });

    let mut detectors: Vec<DetectorView> = m
        .detector_states
        .get(model)
        .into_iter()
        .flatten()
        .filter(|d| d.version == version)
        .map(|d| {
            let e = last_event.get(&(model, version, d.detector.as_str(), d.feature.as_deref()));
            // The latest verdict when this process took one, else the latest transition's.
            let (statistic, value, threshold) = match (&d.latest, e) {
                (Some(l), _) => (Some(l.statistic.clone()), Some(l.value), Some(l.threshold)),
                (None, Some(e)) => (Some(e.statistic.clone()), Some(e.value), Some(e.threshold)),
                (None, None) => (None, None, None),
            };
            DetectorView {
                detector: d.detector.clone(),
                feature: d.feature.clone(),
                state: d.state,
                statistic,
                value,
                threshold,
                judged: d.latest.as_ref().map(|l| l.window_end),
                since: e.map(|e| e.detected_at),
            }
        })
        .collect();
    detectors.sort_by(|a, b| {
        severity(b.state)
            .cmp(&severity(a.state))
            .then_with(|| a.feature.is_some().cmp(&b.feature.is_some()))
            .then_with(|| a.detector.cmp(&b.detector))
            .then_with(|| a.feature.cmp(&b.feature))
    });
    let state = detectors
        .iter()
        .map(|d| d.state)
        .max_by_key(|s| severity(*s))
        .unwrap_or(DriftState::Ok);

    let mut markers: Vec<Marker> = m
        .drift_events
        .iter()
        .filter(|e| e.model_id == model && e.model_version == version)
        .filter_map(|e| {
            let kind = match (e.previous_state, e.state) {
                (_, DriftState::Drift) => "drift",
                (DriftState::Drift, _) => "recovered",
                _ => return None,
            };
            Some(Marker {
                at: e.window_end,
                kind,
                label: detector_name(e),
            })
        })
        .chain(
            m.retrain_events
                .iter()
                .filter(|e| e.model_id == model && e.model_version == version)
                .map(|e| Marker {
                    at: e.created_at,
                    kind: "retrain",
                    label: format!("retrain{}", if e.dry_run { " (dry run)" } else { "" }),
                }),
        )
        .collect();
    markers.sort_by_key(|k| k.at);

    let chart = history
        .as_ref()
        .map(|h| accuracy_chart(model, version, h, &markers))
        .unwrap_or_default();
    let delay = join.and_then(|j| j.label_delay_ms.get(model));
    let latest = snapshots.iter().max_by_key(|s| s.emitted_at);
    ModelView {
        model_id: model.to_string(),
        model_version: version.to_string(),
        state,
        windows,
        label_delay_p50_ms: delay.map(|d| d.0),
        label_delay_p99_ms: delay.map(|d| d.2),
        estimated_decay_per_day: latest.and_then(|s| s.estimated_decay_per_day),
        suggested_retrain_interval_ms: latest.and_then(|s| s.suggested_retrain_interval_ms),
        history,
        markers,
        detectors,
        chart,
    }
}

/// A named value of a metrics snapshot.
fn metric(pairs: &[(String, f64)], name: &str) -> Option<f64> {
    pairs.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// Colours of the chart's series: accuracy, drift, recovery, retrain.
const ACCURACY_COLOR: &str = "#2b6cd4";
const MARKER_COLORS: [(&str, &str); 3] = [
    ("drift", "#d0312d"),
    ("recovered", "#2f8f46"),
    ("retrain", "#8a45c9"),
];

/// Accuracy over the history, markers as their own series (each with its colour and legend).
fn accuracy_chart(model: &str, version: &str, h: &History, markers: &[Marker]) -> String {
    let (Some(first), Some(last)) = (h.points.first(), h.points.last()) else {
        return String::new();
    };
    let (mut x0, mut x1) = (first.0, last.0);
    if x1 <= x0 {
        (x0, x1) = (x0 - 60_000, x1 + 60_000);
    }
    let lowest = h.points.iter().map(|p| p.1).fold(0.5f64, f64::min);
    let y0 = ((lowest * 10.0).floor() / 10.0).clamp(0.0, 0.9);
    let marks: Vec<Vec<(i64, String)>> = MARKER_COLORS
        .iter()
        .map(|(kind, _)| {
            markers
                .iter()
                .filter(|m| m.kind == *kind && (x0..=x1).contains(&m.at))
                .map(|m| {
                    (
                        m.at,
                        format!("{} at {}", m.label, crate::chart::date_minutes(m.at)),
                    )
                })
                .collect()
        })
        .collect();
    let mut series = vec![crate::chart::TimeSeries {
        name: "accuracy",
        color: ACCURACY_COLOR,
        points: &h.points,
        marks: &[],
        dots: &[],
    }];
    for ((kind, color), marks) in MARKER_COLORS.iter().zip(&marks) {
        series.push(crate::chart::TimeSeries {
            name: kind,
            color,
            points: &[],
            marks,
            dots: &[],
        });
    }
    crate::chart::timeline(
        &format!("{model} {version}: accuracy ({} window)", h.window),
        (x0, x1),
        (y0, 1.0),
        &series,
        &[],
        i64::MAX,
        true,
    )
}

fn detector_name(e: &DriftEvent) -> String {
    match &e.feature {
        Some(f) => format!("{}:{f}", e.detector),
        None => e.detector.clone(),
    }
}

fn drift_view(e: &DriftEvent) -> EventView {
    EventView {
        kind: "drift",
        at: e.detected_at,
        model_id: e.model_id.clone(),
        model_version: e.model_version.clone(),
        event_id: e.event_id.clone(),
        summary: format!(
            "{} {} → {}",
            detector_name(e),
            e.previous_state.as_str(),
            e.state.as_str()
        ),
        detail: format!(
            "{} = {:.4} (threshold {:.4}), {} window samples",
            e.statistic, e.value, e.threshold, e.window_samples
        ),
    }
}

fn retrain_view(e: &RetrainEvent) -> EventView {
    EventView {
        kind: "retrain",
        at: e.created_at,
        model_id: e.model_id.clone(),
        model_version: e.model_version.clone(),
        event_id: e.event_id.clone(),
        summary: format!("retrain{}", if e.dry_run { " (dry run)" } else { "" }),
        detail: e.reasons.join("; "),
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
