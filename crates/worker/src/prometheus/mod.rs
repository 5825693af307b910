//! What a worker exposes to Prometheus, and how it is rendered.
//!
//! Design:
//! - **Decoupled from the stages.** A stage fills a plain [`WorkerStatus`] (counters, gauges,
//!   latency percentiles, readiness) when asked; [`render`] turns a snapshot into the Prometheus
//!   text format (version 0.0.4). The renderer knows nothing about Kafka or tasks, so it is
//!   tested with hand-made snapshots, and a stage is tested without HTTP.
//! - **Series names users know.** Consumer lag is `kafka_consumergroup_lag{consumergroup,topic,
//!   partition}` as kafka_exporter names it, so existing dashboards and alerts apply; everything
//!   else is `driftwatch_*`. [`MetricName`] is the one place that names every series.
//! - **Bounded cardinality.** Model ids come from the data, so one misbehaving producer could
//!   create unbounded label values. At most [`RenderOptions::max_models`] model ids (default
//!   100; the ones with the most join inputs, ties by name) are exported with their own label;
//!   the counters of all other models are summed into `model="_other", version="_other"`.
//!   Gauges of those other models (accuracy, coverage, drift state) are not exported, since a
//!   sum of accuracies means nothing; their drift events still reach the `drift-events` topic.
//! - Label values are escaped by `prometheus-client`; the processing-latency summary (a type
//!   `prometheus-client` does not model) is written after the registry's output, with fixed
//!   quantile labels only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;

use driftwatch_core::record::{DriftState, JoinCounters};
use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use summary::write_summary;
pub use summary::LatencySummary;

/// `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The label value that stands for every model beyond [`RenderOptions::max_models`].
pub const OTHER_MODELS: &str = "_other";

/// Every series a worker exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricName {
    /// `kafka_consumergroup_lag{consumergroup,topic,partition}`: records not yet consumed.
    ConsumerGroupLag,
    /// `driftwatch_events_in_total{topic}`: records read.
    EventsIn,
    /// `driftwatch_events_out_total{topic}`: records written.
    EventsOut,
    /// `driftwatch_join_inputs_total{model,version,outcome}`: how each join input ended.
    JoinInputs,
    /// `driftwatch_join_buffer_entries{partition}`: predictions waiting for a label.
    JoinBufferEntries,
    /// `driftwatch_join_oldest_pending_age_seconds{partition}`: event-time age of the oldest one.
    JoinOldestPendingAge,
    /// `driftwatch_processing_latency_seconds{quantile}` (summary): consume → produce.
    ProcessingLatency,
    /// `driftwatch_ready{condition}`: 1 when a readiness condition holds.
    Ready,
    /// `driftwatch_model_accuracy{model,version,window}` (monitor stage).
    ModelAccuracy,
    /// `driftwatch_model_estimated_accuracy{model,version,window}`: accuracy of the window's
    /// predictions still without a label, estimated from their scores (monitor stage).
    ModelEstimatedAccuracy,
    /// `driftwatch_model_estimated_f1{model,version,window,class}`: F1 of a binary classifier's
    /// class over the window's predictions still without a label, estimated from their scores.
    ModelEstimatedF1,
    /// `driftwatch_label_coverage{model,version,window}`: share of predictions labelled.
    LabelCoverage,
    /// `driftwatch_drift_state{model,version,detector,feature}`: 0 OK, 1 warning, 2 drift,
    /// 3 recovered.
    DriftState,
    /// `driftwatch_restore_records_total{stage}`: changelog records read by state restores.
    RestoreRecords,
    /// `driftwatch_restore_bytes_total{stage}`: their key and value bytes.
    RestoreBytes,
    /// `driftwatch_restore_entries_total{stage}`: state entries rebuilt (join: buffer
    /// entries; monitor: models).
    RestoreEntries,
    /// `driftwatch_restore_seconds{stage}`: wall-clock seconds spent restoring, summed.
    RestoreSeconds,
    /// `driftwatch_restore_resumed_total{stage}`: partitions restored from a sealed local
    /// store (only the changelog's tail replayed).
    RestoreResumed,
    /// `driftwatch_join_standby_partitions`: partitions owned elsewhere that this worker keeps
    /// a warm copy of (`join.standby_replicas`).
    JoinStandbyPartitions,
    /// `driftwatch_join_standby_records_total`: changelog records applied to those copies.
    JoinStandbyRecords,
    /// `driftwatch_transactions_total{stage,result}`: transactions committed / aborted.
    Transactions,
    /// `driftwatch_join_commit_seconds{quantile}` (summary): a join commit from its start to
    /// its transaction committed (exactly-once).
    JoinCommitDuration,
    /// `driftwatch_join_misrouted_total{topic}`: input records not on their key's murmur2
    /// partition.
    JoinMisrouted,
    /// `driftwatch_join_misrouted_share{topic}`: their share of the keyed records read.
    JoinMisroutedShare,
    /// `driftwatch_source_records_total{source}`: model-server records read (halves).
    SourceRecords,
    /// `driftwatch_source_halves_total{source,outcome}`: how each half ended.
    SourceHalves,
    /// `driftwatch_source_pending_halves{source}`: halves waiting for their other half.
    SourcePendingHalves,
    /// `driftwatch_source_predictions_total{source}`: predictions written.
    SourcePredictions,
}

/// Prometheus metric type of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Summary,
}

impl MetricName {
    /// Every series, in rendering order.
    pub const ALL: [MetricName; 28] = [
        MetricName::ConsumerGroupLag,
        MetricName::EventsIn,
        MetricName::EventsOut,
        MetricName::JoinInputs,
        MetricName::JoinBufferEntries,
        MetricName::JoinOldestPendingAge,
        MetricName::ProcessingLatency,
        MetricName::Ready,
        MetricName::ModelAccuracy,
        MetricName::ModelEstimatedAccuracy,
        MetricName::ModelEstimatedF1,
        MetricName::LabelCoverage,
        MetricName::DriftState,
        MetricName::RestoreRecords,
        MetricName::RestoreBytes,
        MetricName::RestoreEntries,
        MetricName::RestoreSeconds,
        MetricName::RestoreResumed,
        MetricName::JoinStandbyPartitions,
        MetricName::JoinStandbyRecords,
        MetricName::Transactions,
        MetricName::JoinCommitDuration,
        MetricName::JoinMisrouted,
        MetricName::JoinMisroutedShare,
        MetricName::SourceRecords,
        MetricName::SourceHalves,
        MetricName::SourcePendingHalves,
        MetricName::SourcePredictions,
    ];

    /// The exposed name (counters with their `_total` suffix).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricName::ConsumerGroupLag => "kafka_consumergroup_lag",
            MetricName::EventsIn => "driftwatch_events_in_total",
            MetricName::EventsOut => "driftwatch_events_out_total",
            MetricName::JoinInputs => "driftwatch_join_inputs_total",
            MetricName::JoinBufferEntries => "driftwatch_join_buffer_entries",
            MetricName::JoinOldestPendingAge => "driftwatch_join_oldest_pending_age_seconds",
            MetricName::ProcessingLatency => "driftwatch_processing_latency_seconds",
            MetricName::Ready => "driftwatch_ready",
            MetricName::ModelAccuracy => "driftwatch_model_accuracy",
            MetricName::ModelEstimatedAccuracy => "driftwatch_model_estimated_accuracy",
            MetricName::ModelEstimatedF1 => "driftwatch_model_estimated_f1",
            MetricName::LabelCoverage => "driftwatch_label_coverage",
            MetricName::DriftState => "driftwatch_drift_state",
            MetricName::RestoreRecords => "driftwatch_restore_records_total",
            MetricName::RestoreBytes => "driftwatch_restore_bytes_total",
            MetricName::RestoreEntries => "driftwatch_restore_entries_total",
            MetricName::RestoreSeconds => "driftwatch_restore_seconds",
            MetricName::RestoreResumed => "driftwatch_restore_resumed_total",
            MetricName::JoinStandbyPartitions => "driftwatch_join_standby_partitions",
            MetricName::JoinStandbyRecords => "driftwatch_join_standby_records_total",
            MetricName::Transactions => "driftwatch_transactions_total",
            MetricName::JoinCommitDuration => "driftwatch_join_commit_seconds",
            MetricName::JoinMisrouted => "driftwatch_join_misrouted_total",
            MetricName::JoinMisroutedShare => "driftwatch_join_misrouted_share",
            MetricName::SourceRecords => "driftwatch_source_records_total",
            MetricName::SourceHalves => "driftwatch_source_halves_total",
            MetricName::SourcePendingHalves => "driftwatch_source_pending_halves",
            MetricName::SourcePredictions => "driftwatch_source_predictions_total",
        }
    }

    /// The metric type.
    pub fn kind(self) -> MetricKind {
        match self {
            MetricName::EventsIn
            | MetricName::EventsOut
            | MetricName::JoinInputs
            | MetricName::RestoreRecords
            | MetricName::RestoreBytes
            | MetricName::RestoreEntries
            | MetricName::RestoreResumed
            | MetricName::JoinStandbyRecords
            | MetricName::Transactions
            | MetricName::JoinMisrouted
            | MetricName::SourceRecords
            | MetricName::SourceHalves
            | MetricName::SourcePredictions => MetricKind::Counter,
            MetricName::ProcessingLatency | MetricName::JoinCommitDuration => MetricKind::Summary,
            _ => MetricKind::Gauge,
        }
    }

    /// The `# HELP` text.
    pub fn help(self) -> &'static str {
        match self {
            MetricName::ConsumerGroupLag => {
                "Records of the partition not yet consumed by the group (log end offset minus position)"
            }
            MetricName::EventsIn => "Records read, by topic",
            MetricName::EventsOut => "Records written, by topic",
            MetricName::JoinInputs => {
                "Join inputs by model, version and outcome (matched counts each pair once)"
            }
            MetricName::JoinBufferEntries => "Predictions waiting for their label, by partition",
            MetricName::JoinOldestPendingAge => {
                "Event-time age of the oldest prediction waiting for its label, by partition"
            }
            MetricName::ProcessingLatency => "Time from consuming a record to producing its result",
            MetricName::Ready => "1 when the readiness condition holds, else 0",
            MetricName::ModelAccuracy => "Accuracy of the model over the window",
            MetricName::ModelEstimatedAccuracy => {
                "Accuracy of the window's predictions still without a label, estimated from their scores"
            }
            MetricName::ModelEstimatedF1 => {
                "F1 of a binary classifier's class over the window's unlabelled predictions, estimated from their scores"
            }
            MetricName::LabelCoverage => "Share of the window's predictions that got a label",
            MetricName::DriftState => "Drift detector state: 0 ok, 1 warning, 2 drift, 3 recovered",
            MetricName::RestoreRecords => "Changelog records read to restore a stage's state",
            MetricName::RestoreBytes => "Key and value bytes of the changelog records restored",
            MetricName::RestoreEntries => {
                "State entries rebuilt from the changelog (join buffer entries, monitor models)"
            }
            MetricName::RestoreSeconds => "Wall-clock seconds spent restoring state, summed",
            MetricName::RestoreResumed => {
                "Partitions restored from a sealed local store, replaying only the changelog's tail"
            }
            MetricName::JoinStandbyPartitions => {
                "Partitions owned elsewhere that this worker keeps a warm copy of"
            }
            MetricName::JoinStandbyRecords => "Changelog records applied to standby copies",
            MetricName::Transactions => "Kafka transactions by stage and result (committed, aborted)",
            MetricName::JoinCommitDuration => {
                "Time from the start of a join commit to its transaction committed"
            }
            MetricName::JoinMisrouted => {
                "Input records read that are not on their key's murmur2 partition, by topic"
            }
            MetricName::JoinMisroutedShare => {
                "Share of the keyed input records read that are not on their key's murmur2 partition"
            }
            MetricName::SourceRecords => "Model-server records (request or response halves) read, by source",
            MetricName::SourceHalves => {
                "Halves by source and outcome (paired, unmapped, expired, duplicate, dead_lettered)"
            }
            MetricName::SourcePendingHalves => "Halves waiting for their other half, by source",
            MetricName::SourcePredictions => "Predictions written from paired halves, by source",
        }
    }

    /// Name to register with `prometheus-client`, which appends `_total` to counters itself.
    fn registration_name(self) -> &'static str {
        let n = self.as_str();
        match self.kind() {
            MetricKind::Counter => n.strip_suffix("_total").unwrap_or(n),
            _ => n,
        }
    }
}

/// Reads one counter of [`JoinCounters`].
pub type CounterReader = fn(&JoinCounters) -> u64;

/// Values of `outcome` in `driftwatch_join_inputs_total`, with the counter each one reads.
pub const JOIN_OUTCOMES: [(&str, CounterReader); 7] = [
    ("matched", |c| c.matched),
    ("expired_unlabeled", |c| c.expired_unlabeled),
    ("orphan", |c| c.orphan_labels),
    ("duplicate_prediction", |c| c.duplicate_predictions),
    ("duplicate_label", |c| c.duplicate_labels),
    ("late", |c| c.late_labels),
    ("dead_lettered", |c| c.dead_lettered),
];

/// Join buffer gauges of one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JoinBufferGauge {
    /// Predictions waiting for a label.
    pub entries: u64,
    /// Event-time age of the oldest of them, seconds (0 when empty).
    pub oldest_pending_age_seconds: f64,
}

/// What `/readyz` checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// The consumer has partitions assigned.
    pub assigned: bool,
    /// The state of every assigned partition is restored.
    pub restored: bool,
    /// The producer is connected and delivering.
    pub producing: bool,
    /// The schema registry answers (or none is configured): no fetch keeps failing.
    pub schema_registry: bool,
}

impl Readiness {
    /// Every condition, by name.
    pub fn conditions(&self) -> [(&'static str, bool); 4] {
        [
            ("assigned", self.assigned),
            ("restored", self.restored),
            ("producing", self.producing),
            ("schema_registry", self.schema_registry),
        ]
    }

    /// Whether the worker is ready.
    pub fn is_ready(&self) -> bool {
        self.conditions().iter().all(|(_, ok)| *ok)
    }
}

/// Series of the monitor stage, keyed `(model, version, window)` or
/// `(model, version, detector, feature)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorStatus {
    pub accuracy: BTreeMap<(String, String, String), f64>,
    /// Only windows with scored predictions still without a label.
    pub estimated_accuracy: BTreeMap<(String, String, String), f64>,
    /// Keyed `(model, version, window, class)`; binary classifiers that send scores only.
    pub estimated_f1: BTreeMap<(String, String, String, String), f64>,
    pub label_coverage: BTreeMap<(String, String, String), f64>,
    pub drift_state: BTreeMap<(String, String, String, String), DriftState>,
}

/// Everything a worker exposes, as plain values; a stage fills one per scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerStatus {
    /// Consumer group the lag is reported for.
    pub consumer_group: String,
    /// Join accounting per (model, version).
    pub join: BTreeMap<(String, String), JoinCounters>,
    /// Join buffer per partition.
    pub join_buffers: BTreeMap<i32, JoinBufferGauge>,
    /// Consumer lag per (topic, partition).
    pub consumer_lag: BTreeMap<(String, i32), i64>,
    /// Records read per topic.
    pub events_in: BTreeMap<String, u64>,
    /// Records written per topic.
    pub events_out: BTreeMap<String, u64>,
    /// Processing latency, when anything was processed.
    pub latency: Option<LatencySummary>,
    /// Duration of the join's commits (exactly-once), once one committed.
    pub join_commit: Option<LatencySummary>,
    pub readiness: Readiness,
    /// Why the schema registry condition fails: the last error of a fetch that keeps failing.
    pub schema_registry_error: Option<String>,
    /// Filled by the monitor stage only.
    pub monitor: Option<MonitorStatus>,
    /// State restores (exactly-once) per stage (`join`, `monitor`).
    pub restore: BTreeMap<String, crate::changelog::RestoreTotals>,
    /// Standby replicas of the join (`join.standby_replicas`), when on.
    pub join_standby: Option<crate::join::StandbyCounters>,
    /// Transactions per (stage, result).
    pub transactions: BTreeMap<(String, String), u64>,
    /// Routing check of the join's inputs, per topic.
    pub misrouted: BTreeMap<String, crate::join::TopicRouting>,
    /// The sources stage's committed counts, per source.
    pub sources: BTreeMap<String, crate::sources::SourceCounts>,
}

/// Rendering options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Most model ids exported with their own label; the rest are `_other`. Default 100.
    pub max_models: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { max_models: 100 }
    }
}

/// Rendering failed (only a formatter error; writing to a `String` does not fail).
#[derive(Debug, thiserror::Error)]
#[error("rendering metrics: {0}")]
pub struct RenderError(#[from] std::fmt::Error);

type Labels = Vec<(&'static str, String)>;
type CounterFamily = Family<Labels, Counter<u64>>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;

/// Model ids exported under their own name: the `max_models` with the most join inputs.
fn kept_models(s: &WorkerStatus, max_models: usize) -> BTreeSet<String> {
    let mut volume: BTreeMap<&str, u64> = BTreeMap::new();
    for ((model, _), c) in &s.join {
        *volume.entry(model).or_default() += c.predictions.saturating_add(c.labels);
    }
    if let Some(m) = &s.monitor {
        let keys = m
            .accuracy
            .keys()
            .chain(m.estimated_accuracy.keys())
            .chain(m.label_coverage.keys())
            .map(|(model, _, _)| model)
            .chain(m.estimated_f1.keys().map(|(model, _, _, _)| model))
            .chain(m.drift_state.keys().map(|(model, _, _, _)| model));
        for model in keys {
            volume.entry(model).or_default();
        }
    }
    let mut ranked: Vec<(&str, u64)> = volume.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(max_models)
        .map(|(m, _)| m.to_string())
        .collect()
}

fn counter_family(registry: &mut Registry, name: MetricName) -> CounterFamily {
    let f = CounterFamily::default();
    registry.register(name.registration_name(), name.help(), f.clone());
    f
}

fn gauge_family(registry: &mut Registry, name: MetricName) -> GaugeFamily {
    let f = GaugeFamily::default();
    registry.register(name.registration_name(), name.help(), f.clone());
    f
}

/// Renders `snapshot` in the Prometheus text format.
pub fn render(snapshot: &WorkerStatus, options: &RenderOptions) -> Result<String, RenderError> {
    let s = snapshot;
    let kept = kept_models(s, options.max_models);
    let model_label = |model: &str, version: &str| -> Option<(String, String)> {
        kept.contains(model)
            .then(|| (model.to_string(), version.to_string()))
    };
    let mut registry = Registry::default();

    let lag = gauge_family(&mut registry, MetricName::ConsumerGroupLag);
    for ((topic, partition), v) in &s.consumer_lag {
        let labels = vec![
            ("consumergroup", s.consumer_group.clone()),
            ("topic", topic.clone()),
            ("partition", partition.to_string()),
        ];
        lag.get_or_create(&labels).set(*v as f64);
    }

    for (name, values) in [
        (MetricName::EventsIn, &s.events_in),
        (MetricName::EventsOut, &s.events_out),
    ] {
        let family = counter_family(&mut registry, name);
        for (topic, v) in values {
            family
                .get_or_create(&vec![("topic", topic.clone())])
                .inc_by(*v);
        }
    }

    let inputs = counter_family(&mut registry, MetricName::JoinInputs);
    for ((model, version), c) in &s.join {
        let (model, version) = model_label(model, version)
            .unwrap_or_else(|| (OTHER_MODELS.to_string(), OTHER_MODELS.to_string()));
        for (outcome, read) in JOIN_OUTCOMES {
            let labels = vec![
                ("model", model.clone()),
                ("version", version.clone()),
                ("outcome", outcome.to_string()),
            ];
            inputs.get_or_create(&labels).inc_by(read(c));
        }
    }

    let entries = gauge_family(&mut registry, MetricName::JoinBufferEntries);
    let age = gauge_family(&mut registry, MetricName::JoinOldestPendingAge);
    for (partition, b) in &s.join_buffers {
        let labels = vec![("partition", partition.to_string())];
        entries.get_or_create(&labels).set(b.entries as f64);
        age.get_or_create(&labels).set(b.oldest_pending_age_seconds);
    }

    // Only a stage that restores state (exactly-once) has these series.
    let restoring: Vec<_> = s.restore.iter().filter(|(_, r)| r.restores > 0).collect();
    if !restoring.is_empty() {
        let records = counter_family(&mut registry, MetricName::RestoreRecords);
        let bytes = counter_family(&mut registry, MetricName::RestoreBytes);
        let entries = counter_family(&mut registry, MetricName::RestoreEntries);
        let seconds = gauge_family(&mut registry, MetricName::RestoreSeconds);
        let resumed = counter_family(&mut registry, MetricName::RestoreResumed);
        for (stage, r) in restoring {
            let labels = vec![("stage", stage.clone())];
            resumed.get_or_create(&labels).inc_by(r.resumed);
            records.get_or_create(&labels).inc_by(r.records);
            bytes.get_or_create(&labels).inc_by(r.bytes);
            entries.get_or_create(&labels).inc_by(r.entries);
            seconds.get_or_create(&labels).set(r.seconds);
        }
    }
    if let Some(standby) = &s.join_standby {
        gauge_family(&mut registry, MetricName::JoinStandbyPartitions)
            .get_or_create(&Vec::new())
            .set(standby.partitions as f64);
        counter_family(&mut registry, MetricName::JoinStandbyRecords)
            .get_or_create(&Vec::new())
            .inc_by(standby.records);
    }
    let transactions = counter_family(&mut registry, MetricName::Transactions);
    for ((stage, result), n) in &s.transactions {
        transactions
            .get_or_create(&vec![("stage", stage.clone()), ("result", result.clone())])
            .inc_by(*n);
    }

    if !s.misrouted.is_empty() {
        let total = counter_family(&mut registry, MetricName::JoinMisrouted);
        let share = gauge_family(&mut registry, MetricName::JoinMisroutedShare);
        for (topic, r) in &s.misrouted {
            let labels = vec![("topic", topic.clone())];
            total.get_or_create(&labels).inc_by(r.tally.misrouted);
            share.get_or_create(&labels).set(r.share);
        }
    }

    if !s.sources.is_empty() {
        sources::register(&mut registry, &s.sources);
    }

    let ready = gauge_family(&mut registry, MetricName::Ready);
    for (condition, ok) in s.readiness.conditions() {
        ready
            .get_or_create(&vec![("condition", condition.to_string())])
            .set(if ok { 1.0 } else { 0.0 });
    }

    if let Some(m) = &s.monitor {
        for (name, values) in [
            (MetricName::ModelAccuracy, &m.accuracy),
            (MetricName::ModelEstimatedAccuracy, &m.estimated_accuracy),
            (MetricName::LabelCoverage, &m.label_coverage),
        ] {
            let family = gauge_family(&mut registry, name);
            for ((model, version, window), v) in values {
                if let Some((model, version)) = model_label(model, version) {
                    let labels = vec![
                        ("model", model),
                        ("version", version),
                        ("window", window.clone()),
                    ];
                    family.get_or_create(&labels).set(*v);
                }
            }
        }
        let f1 = gauge_family(&mut registry, MetricName::ModelEstimatedF1);
        for ((model, version, window, class), v) in &m.estimated_f1 {
            if let Some((model, version)) = model_label(model, version) {
                let labels = vec![
                    ("model", model),
                    ("version", version),
                    ("window", window.clone()),
                    ("class", class.clone()),
                ];
                f1.get_or_create(&labels).set(*v);
            }
        }
        let drift = gauge_family(&mut registry, MetricName::DriftState);
        for ((model, version, detector, feature), state) in &m.drift_state {
            if let Some((model, version)) = model_label(model, version) {
                let labels = vec![
                    ("model", model),
                    ("version", version),
                    ("detector", detector.clone()),
                    ("feature", feature.clone()),
                ];
                drift.get_or_create(&labels).set(drift_state_value(*state));
            }
        }
    }

    let mut out = String::new();
    encode(&mut out, &registry)?;
    for (metric, summary) in [
        (MetricName::ProcessingLatency, &s.latency),
        (MetricName::JoinCommitDuration, &s.join_commit),
    ] {
        if let Some(l) = summary {
            write_summary(&mut out, metric, l)?;
        }
    }
    Ok(out)
}

/// Writes a summary in the text format (`prometheus-client` has no summary type).
/// The number `driftwatch_drift_state` shows for a state.
pub fn drift_state_value(state: DriftState) -> f64 {
    match state {
        DriftState::Ok => 0.0,
        DriftState::Warning => 1.0,
        DriftState::Drift => 2.0,
        DriftState::Recovered => 3.0,
    }
}

mod sources;
mod summary;
#[cfg(test)]
pub(crate) mod tests;
