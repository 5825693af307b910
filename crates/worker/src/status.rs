//! Builds the [`WorkerStatus`] served on `/metrics` and `/readyz`, and the console's view,
//! from the stages' handles.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::console::ConsoleView;
use crate::join::JoinStageHandle;
use crate::monitor::MonitorStageHandle;
use crate::prometheus::{JoinBufferGauge, LatencySummary, MonitorStatus, Readiness, WorkerStatus};
use crate::sources::SourcesStageHandle;

/// The stages running in this process.
#[derive(Clone, Default)]
pub struct StageHandles {
    pub join: Option<(JoinStageHandle, String)>,
    pub monitor: Option<MonitorStageHandle>,
    /// The monitor's consumer group (the console names it).
    pub monitor_group: String,
    pub sources: Option<SourcesStageHandle>,
}

impl StageHandles {
    /// What the console shows: the models this process monitors.
    pub fn console(&self) -> ConsoleView {
        let join = self.join.as_ref().map(|(j, _)| j.stats());
        let monitor = self.monitor.as_ref().map(MonitorStageHandle::stats);
        crate::console::view::build(join.as_ref(), monitor.as_ref(), &self.monitor_group)
    }

    /// A snapshot of everything this process exposes.
    pub fn status(&self) -> WorkerStatus {
        let mut w = WorkerStatus::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut ready = Readiness {
            assigned: true,
            restored: true,
            producing: true,
            schema_registry: true,
        };
        if let Some((join, group)) = &self.join {
            let s = join.stats();
            w.consumer_group = group.clone();
            w.join = s.per_model.clone();
            w.join_buffers = s
                .buffers
                .iter()
                .map(|(p, (entries, oldest))| {
                    let age = oldest.map_or(0.0, |t| ((now - t).max(0)) as f64 / 1000.0);
                    (
                        *p,
                        JoinBufferGauge {
                            entries: *entries,
                            oldest_pending_age_seconds: age,
                        },
                    )
                })
                .collect();
            w.consumer_lag = s.consumer_lag.clone();
            w.events_in = s.events_in.clone();
            w.events_out = s.events_out.clone();
            w.misrouted = s.misrouted.clone();
            w.latency = s
                .processing_micros
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(LatencySummary::from_micros);
            w.join_commit = s
                .commit_micros
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(LatencySummary::from_micros);
            ready.assigned = !s.assigned.is_empty();
            // Exactly-once: partitions are processed only once restored (before the consumer
            // is given them); a failed restore stops the stage.
            ready.restored = !s.exactly_once || s.restore.restores > 0;
            w.restore.insert("join".into(), s.restore);
            w.join_standby = s.standby;
            w.transactions.insert(
                ("join".into(), "committed".into()),
                s.transactions_committed,
            );
            w.transactions
                .insert(("join".into(), "aborted".into()), s.transactions_aborted);
            // Before the first flush there is nothing to deliver: count that as producing.
            ready.producing = s.producing || s.events_out.is_empty();
            ready.schema_registry = s.schema_registry_error.is_none();
            w.schema_registry_error = s.schema_registry_error.clone();
        }
        if let Some(monitor) = &self.monitor {
            let s = monitor.stats();
            let mut m = MonitorStatus::default();
            for metrics in &s.latest_metrics {
                let key = (
                    metrics.model_id.clone(),
                    metrics.model_version.clone(),
                    metrics.window.clone(),
                );
                let value = |name: &str| {
                    metrics
                        .metrics
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| *v)
                };
                if let Some(v) = value("accuracy") {
                    m.accuracy.insert(key.clone(), v);
                }
                if let Some(v) = value("estimated_accuracy") {
                    m.estimated_accuracy.insert(key.clone(), v);
                }
                // `estimated_f1[<class>]`, one pair per class (core's `Metrics::pairs`).
                for (name, v) in &metrics.metrics {
                    let class = name
                        .strip_prefix("estimated_f1[")
                        .and_then(|rest| rest.strip_suffix(']'));
                    if let Some(class) = class {
                        let (model, version, window) = key.clone();
                        m.estimated_f1
                            .insert((model, version, window, class.to_string()), *v);
                    }
                }
                m.label_coverage.insert(key, metrics.label_coverage);
            }
            let mut states = BTreeMap::new();
            for e in &s.drift_events {
                states.insert(
                    (
                        e.model_id.clone(),
                        e.model_version.clone(),
                        e.detector.clone(),
                        e.feature.clone().unwrap_or_default(),
                    ),
                    e.state,
                );
            }
            m.drift_state = states;
            w.transactions.insert(
                ("monitor".into(), "committed".into()),
                s.transactions_committed,
            );
            w.transactions
                .insert(("monitor".into(), "aborted".into()), s.transactions_aborted);
            if s.restores > 0 {
                w.restore.insert(
                    "monitor".into(),
                    crate::changelog::RestoreTotals {
                        restores: s.restores,
                        resumed: 0,
                        records: s.restore_records,
                        bytes: s.restore_bytes,
                        entries: s.restored_models,
                        seconds: s.restore_seconds,
                    },
                );
            }
            w.monitor = Some(m);
        }
        if let Some(sources) = &self.sources {
            let s = sources.stats();
            w.sources = s.sources.clone();
            w.transactions.insert(
                ("sources".into(), "committed".into()),
                s.transactions_committed,
            );
            w.transactions
                .insert(("sources".into(), "aborted".into()), s.transactions_aborted);
            if s.restores > 0 {
                w.restore.insert(
                    "sources".into(),
                    crate::changelog::RestoreTotals {
                        restores: s.restores,
                        resumed: 0,
                        records: s.restore_records,
                        bytes: s.restore_bytes,
                        entries: s.restored_halves,
                        seconds: s.restore_seconds,
                    },
                );
            }
            ready.assigned &= !s.assigned.is_empty();
            ready.restored &= !sources.exactly_once() || s.restores > 0;
        }
        w.readiness = ready;
        w
    }
}
