//! Verdicts follow event time, not replay speed.
//!
//! The same traffic (two classifiers over two hours of event time, one of which drifts
//! halfway; labels delayed up to 20 minutes) goes through both stages twice on the real
//! broker:
//! - **backlog**: published in full first, then read as fast as the stages go, with short
//!   flush and commit intervals;
//! - **paced**: published at 360× event time while the stages run, with other flush and commit
//!   intervals and other fetch sizes, and both stages stopped and started again halfway (the
//!   second incarnation restores the state from the changelogs).
//!
//! Both runs must publish the same drift events and the same retrain events: same ids, event
//! times and verdict fields (floating-point values equal up to the rounding of sums merged in
//! another grouping). Feature drift is judged too: its numeric distributions are
//! distinct-value samples, a pure function of the values whatever the grouping (see
//! docs/ARCHITECTURE.md), so its events must match as well.

use std::collections::BTreeMap;
use std::time::Duration;

use driftwatch_core::{DriftEvent, DriftState, RetrainEvent};
use driftwatch_generator::publish::{publish, Pace};
use driftwatch_generator::{GeneratorConfig, Scenario, TrafficGenerator};
use driftwatch_tests::monitor_outputs::create_topics_of;
use driftwatch_tests::stages::Stages;
use driftwatch_tests::{now_ms, settings, unique};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::settings::Settings;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

const SPAN_MS: i64 = 2 * 3_600_000;
const PREDICTIONS: f64 = 24_000.0;
/// Paced run: event time runs this much faster than the wall clock (two hours in 20 s).
const TIME_SCALE: f64 = 360.0;

fn traffic(start_ms: i64) -> TrafficGenerator {
    let mut g = GeneratorConfig::two_models(3);
    g.start_ms = start_ms;
    g.duration_ms = SPAN_MS;
    g.predictions_per_second = PREDICTIONS / (SPAN_MS as f64 / 1000.0);
    g.scenario = Scenario::Drift;
    g.label_delay.max_ms = 20 * 60_000;
    TrafficGenerator::new(g.resolved()).expect("generator")
}

async fn run_settings(flush: Duration, commit: Duration, fetch_bytes: &str) -> Settings {
    driftwatch_tests::init_logging();
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    create_topics_of(&mut s, 4).await;
    s.kafka
        .properties
        .insert("max.partition.fetch.bytes".into(), fetch_bytes.into());
    s.join.label_timeout = Duration::from_secs(30 * 60);
    s.join.orphan_timeout = Duration::from_secs(30 * 60);
    // The stream's end is judged once the quiet inputs' idle fallback moves the watermark.
    s.join.idle_timeout = Duration::from_secs(3);
    s.join.flush_interval = flush;
    s.monitor.commit_interval = commit;
    s.monitor.metrics_interval = Duration::from_secs(1);
    let d = &mut s.monitor.detection.default;
    d.windows = vec!["15m".into(), "1h".into()];
    d.maturity_ms = 5 * 60_000;
    d.accuracy_drop.window = "15m".into();
    // Short enough that the covariate shift of `x0` at the halfway mark is judged too.
    d.feature_drift.window = "30m".into();
    d.feature_drift.reference = "30m".into();
    s.validate().expect("valid settings");
    s
}

/// Waits until the monitor judged an epoch past the end of the data.
async fn wait_for_the_end(stages: &Stages, end_ms: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while stages.monitor.stats().progress_ms < end_ms {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the monitor's clock stayed at {} (data ends at {end_ms})",
            stages.monitor.stats().progress_ms
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Its output goes out with the next commit.
    tokio::time::sleep(Duration::from_secs(3)).await;
}

async fn read_all<T: driftwatch_codec::AvroRecord>(s: &Settings, topic: &str) -> Vec<T> {
    let consumer: StreamConsumer = consumer_config(&s.kafka, &unique("reader"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let mut stream = consumer.stream();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(6), stream.next()).await {
        let m = m.expect("consume");
        out.push(driftwatch_codec::from_avro::<T>(m.payload().expect("payload")).expect("decodes"));
    }
    out
}

type Outputs = (Vec<DriftEvent>, Vec<RetrainEvent>);

async fn outputs(s: &Settings) -> Outputs {
    let mut drift: Vec<DriftEvent> = read_all(s, &s.topics.drift_events).await;
    let mut retrain: Vec<RetrainEvent> = read_all(s, &s.topics.retrain_events).await;
    drift.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    retrain.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    (drift, retrain)
}

async fn backlog_run(start_ms: i64) -> Outputs {
    let s = run_settings(
        Duration::from_millis(200),
        Duration::from_millis(200),
        "4194304",
    )
    .await;
    publish(
        &s.kafka,
        &s.topics,
        traffic(start_ms),
        Pace::Unthrottled,
        std::future::pending(),
    )
    .await
    .expect("publish");
    let stages = Stages::start(&s);
    wait_for_the_end(&stages, start_ms + SPAN_MS).await;
    stages.stop().await;
    outputs(&s).await
}

async fn paced_run(start_ms: i64) -> Outputs {
    let s = run_settings(Duration::from_secs(1), Duration::from_secs(2), "65536").await;
    let first = Stages::start(&s);
    tokio::time::sleep(Duration::from_secs(4)).await; // both groups form
    let publisher = {
        let (kafka, topics) = (s.kafka.clone(), s.topics.clone());
        tokio::spawn(async move {
            publish(
                &kafka,
                &topics,
                traffic(start_ms),
                Pace::TimeScale(TIME_SCALE),
                std::future::pending(),
            )
            .await
        })
    };
    // Halfway through the traffic, both stages stop and new ones take over.
    let half = Duration::from_secs_f64(SPAN_MS as f64 / 2.0 / 1000.0 / TIME_SCALE);
    tokio::time::sleep(half).await;
    let (_, before) = first.stop().await;
    assert!(before.partials > 0, "the first incarnation did some work");
    let second = Stages::start(&s);
    publisher.await.expect("publisher").expect("publish");
    wait_for_the_end(&second, start_ms + SPAN_MS).await;
    second.stop().await;
    outputs(&s).await
}

/// Equal floats up to the rounding of sums merged in another grouping.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn same_drift(a: &DriftEvent, b: &DriftEvent) -> bool {
    close(a.value, b.value)
        && close(a.threshold, b.threshold)
        && close(a.severity, b.severity)
        && DriftEvent {
            value: 0.0,
            threshold: 0.0,
            severity: 0.0,
            ..a.clone()
        } == DriftEvent {
            value: 0.0,
            threshold: 0.0,
            severity: 0.0,
            ..b.clone()
        }
}

fn same_retrain(a: &RetrainEvent, b: &RetrainEvent) -> bool {
    let metrics =
        |e: &RetrainEvent| -> BTreeMap<String, f64> { e.metrics.iter().cloned().collect() };
    let (ma, mb) = (metrics(a), metrics(b));
    ma.len() == mb.len()
        && ma
            .iter()
            .all(|(k, v)| mb.get(k).is_some_and(|w| close(*v, *w)))
        && RetrainEvent {
            metrics: vec![],
            ..a.clone()
        } == RetrainEvent {
            metrics: vec![],
            ..b.clone()
        }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_and_a_paced_run_with_a_restart_publish_the_same_verdicts() {
    // Two hours of traffic ending a minute ago: the idle fallback (processing time) then moves
    // the watermark past the data's end, never into it.
    let start_ms = (now_ms() - SPAN_MS - 60_000) / 60_000 * 60_000;
    let (drift, retrain) = backlog_run(start_ms).await;
    let (paced_drift, paced_retrain) = paced_run(start_ms).await;
    for (run, events) in [("backlog", &drift), ("paced", &paced_drift)] {
        for e in events {
            println!(
                "{run}: {} {} {}:{} {:?}->{:?} at {} value {} window end {}",
                e.event_id,
                e.model_id,
                e.detector,
                e.feature.as_deref().unwrap_or("-"),
                e.previous_state,
                e.state,
                e.detected_at,
                e.value,
                e.window_end
            );
        }
    }
    // The comparison means something: the drifting model was flagged and retrained.
    assert!(
        drift.iter().any(|e| e.model_id == "fraud"
            && e.detector == "accuracy_drop"
            && e.state == DriftState::Drift),
        "no accuracy drift for fraud: {drift:#?}"
    );
    assert!(
        drift
            .iter()
            .any(|e| e.model_id == "fraud" && e.feature.is_some() && e.state == DriftState::Drift),
        "no feature drift for fraud: {drift:#?}"
    );
    assert_eq!(retrain.len(), 1, "{retrain:#?}");
    assert_eq!(
        drift.len(),
        paced_drift.len(),
        "backlog {drift:#?}\npaced {paced_drift:#?}"
    );
    for (a, b) in drift.iter().zip(&paced_drift) {
        assert!(same_drift(a, b), "backlog {a:#?}\npaced {b:#?}");
    }
    assert_eq!(
        retrain.len(),
        paced_retrain.len(),
        "backlog {retrain:#?}\npaced {paced_retrain:#?}"
    );
    for (a, b) in retrain.iter().zip(&paced_retrain) {
        assert!(same_retrain(a, b), "backlog {a:#?}\npaced {b:#?}");
    }
    println!(
        "{} drift events and {} retrain event identical in both runs",
        drift.len(),
        retrain.len()
    );
}
