//! What the monitor stage committed — metrics snapshots, drift and retrain events — checked
//! against the committed partials it read, for the tests that run both stages on the scenario
//! of [`crate::scenario`] (whose `model-0` drifts halfway).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use driftwatch_codec::from_avro;
use driftwatch_core::{DriftEvent, DriftState, ModelMetrics, RetrainEvent};
use driftwatch_worker::settings::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::outcomes::PartialsReader;

/// The monitor window that spans the whole run.
pub const WHOLE_RUN: &str = "30d";

/// Monitor settings for the scenario, as a configuration file. It spans minutes of event time
/// (hours in long runs): two-minute windows to judge, one spanning the whole run to count;
/// labels come within 5 minutes (or too late for the 10-minute timeout), so buckets are
/// complete 6 minutes behind the data.
pub const MONITOR_TOML: &str = r#"
[monitor]
commit_interval = "500ms"
metrics_interval = "1s"

[monitor.detection.default]
windows = ["2m", "30d"]
maturity_ms = 360000

[monitor.detection.default.accuracy_drop]
window = "2m"

[monitor.detection.default.feature_drift]
window = "2m"
reference = "2m"
"#;

/// The same monitor settings, applied in place (for stages run in the test's process).
pub fn apply_monitor_settings(s: &mut Settings) {
    s.monitor.commit_interval = Duration::from_millis(500);
    s.monitor.metrics_interval = Duration::from_secs(1);
    let d = &mut s.monitor.detection.default;
    d.windows = vec!["2m".into(), WHOLE_RUN.into()];
    d.maturity_ms = 360_000;
    d.accuracy_drop.window = "2m".into();
    d.feature_drift.window = "2m".into();
    d.feature_drift.reference = "2m".into();
}

/// Gives the settings' groups and topics unique names and creates the topics the run owns
/// ([`driftwatch_worker::topics::owned_by_run`]): inputs, partials and changelogs with
/// `partitions`, the others with one.
pub async fn create_topics_of(s: &mut Settings, partitions: i32) {
    use crate::unique;
    s.kafka.join_group_id = unique("join");
    s.monitor.group_id = unique("monitor");
    let t = &mut s.topics;
    t.predictions = unique("predictions");
    t.ground_truth = unique("ground-truth");
    t.model_partials = unique("partials");
    t.dead_letter = unique("dead-letter");
    t.drift_events = unique("drift-events");
    t.retrain_events = unique("retrain-events");
    t.model_metrics = unique("model-metrics");
    let specs = driftwatch_worker::topics::owned_by_run(s, partitions);
    driftwatch_worker::clients::create_topics(&s.kafka, &specs)
        .await
        .unwrap_or_else(|e| panic!("creating topics {specs:?}: {e}"));
}

/// Every record of a one-partition topic as a `read_committed` consumer sees it now.
pub fn read_committed<T: driftwatch_codec::AvroRecord>(s: &Settings, topic: &str) -> Vec<T> {
    let consumer: BaseConsumer =
        driftwatch_worker::clients::consumer_config(&s.kafka, &crate::unique("output-reader"))
            .create()
            .expect("reader");
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut out = Vec::new();
    if high <= low {
        return out;
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    // The end as this consumer sees it: the last stable offset, past which nothing is read.
    let mut idle = 0;
    while Instant::now() < deadline && idle < 10 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = 0;
                let payload = m.payload().expect("payload");
                out.push(from_avro::<T>(payload).expect("output decodes"));
                if m.offset() + 1 >= high {
                    break;
                }
            }
            _ => idle += 1,
        }
    }
    out
}

/// Counts (predictions, matched, correct) of a metrics snapshot of the whole-run window.
fn snapshot_counts(m: &ModelMetrics) -> [u64; 3] {
    let accuracy = m
        .metrics
        .iter()
        .find(|(n, _)| n == "accuracy")
        .map_or(0.0, |(_, v)| *v);
    [
        m.predictions,
        m.labeled,
        (accuracy * m.labeled as f64).round() as u64,
    ]
}

/// What the committed partials of the buckets lying in `[start, end)` sum to, and the share of
/// the model's predictions those buckets hold.
fn partials_counts(reader: &PartialsReader, model: &str, start: i64, end: i64) -> ([u64; 3], f64) {
    let mut inside = [0u64; 3];
    let mut all = 0u64;
    for (&(s, width), b) in reader.buckets.get(model).into_iter().flatten() {
        all += b[0];
        if s >= start && s.saturating_add(width) <= end {
            for (x, y) in inside.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
    (inside, inside[0] as f64 / all.max(1) as f64)
}

/// Per model: the latest whole-run snapshot's counts, and what the committed partials of its
/// buckets sum to.
fn monitor_vs_partials(
    s: &Settings,
    reader: &PartialsReader,
) -> BTreeMap<String, ([u64; 3], [u64; 3], f64)> {
    let mut latest: BTreeMap<String, ModelMetrics> = BTreeMap::new();
    for m in read_committed::<ModelMetrics>(s, &s.topics.model_metrics) {
        if m.window == WHOLE_RUN {
            latest.insert(m.model_id.clone(), m);
        }
    }
    latest
        .into_iter()
        .map(|(model, m)| {
            let (expected, share) = partials_counts(reader, &model, m.window_start, m.window_end);
            (model, (snapshot_counts(&m), expected, share))
        })
        .collect()
}

/// Waits (up to `timeout`) until the monitor's latest whole-run metrics count exactly what the committed partials
/// of their buckets hold (for every model, over most of its predictions: the window ends a
/// maturity delay behind the data), then checks its events: no id twice, and the drifting
/// model's drift and retrain events.
pub fn assert_monitor(s: &Settings, reader: &PartialsReader, logs: &[PathBuf], timeout: Duration) {
    let models: BTreeSet<&String> = reader.buckets.keys().collect();
    let settled = |seen: &BTreeMap<String, ([u64; 3], [u64; 3], f64)>| {
        seen.len() == models.len()
            && seen
                .values()
                .all(|(got, want, share)| got == want && *share >= 0.9)
    };
    let deadline = Instant::now() + timeout;
    let mut seen = monitor_vs_partials(s, reader);
    while !settled(&seen) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        seen = monitor_vs_partials(s, reader);
    }
    if !settled(&seen) {
        for l in logs {
            eprintln!("worker log: {}", l.display());
        }
        panic!(
            "the monitor's whole-run (predictions, matched, correct) differ from the committed partials of the same buckets, or cover less than 90 % of them (model: monitor, partials, share): {seen:?}"
        );
    }
    let drift: Vec<DriftEvent> = read_committed(s, &s.topics.drift_events);
    let retrain: Vec<RetrainEvent> = read_committed(s, &s.topics.retrain_events);
    let mut ids = BTreeSet::new();
    for e in &drift {
        assert!(
            ids.insert(&e.event_id),
            "drift event published twice: {e:?}"
        );
    }
    let mut ids = BTreeSet::new();
    for e in &retrain {
        assert!(
            ids.insert(&e.event_id),
            "retrain event published twice: {e:?}"
        );
    }
    assert!(
        drift
            .iter()
            .any(|e| e.model_id == "model-0" && e.state == DriftState::Drift),
        "no drift event for the drifting model: {drift:?}"
    );
    assert!(
        retrain.iter().any(|e| e.model_id == "model-0"),
        "no retrain event for the drifting model: {retrain:?}"
    );
}
