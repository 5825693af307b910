//! The monitor's outputs in the Confluent wire format (`monitor.output_format =
//! "avro_registry"`), against the **real** schema registry of `scripts/schema-registry` and the
//! real broker: the monitor registers the schemas of drift events, retrain events and metrics
//! snapshots under `<topic>-value` at start, and frames every record with the id the registry
//! handed out. A registry-aware consumer then finds, for each record, the writer schema by
//! the id in its frame. Checked here as such a consumer would: every record's first byte is
//! the magic 0, its id is the one a serializer gets when it registers the same schema under
//! the same subject (registration is idempotent), the schema the registry serves for that id
//! is driftwatch's, and the datum after the frame decodes to the record.

use std::collections::BTreeMap;
use std::time::Duration;

use driftwatch_codec::{from_avro, split_framed, RecordKind};
use driftwatch_core::{DriftEvent, ModelMetrics, RetrainEvent};
use driftwatch_generator::publish::{publish, Pace};
use driftwatch_generator::{GeneratorConfig, Scenario, TrafficGenerator};
use driftwatch_tests::monitor_outputs::create_topics_of;
use driftwatch_tests::schema_registry::{register, require_schema_registry, schema_by_id};
use driftwatch_tests::stages::Stages;
use driftwatch_tests::{now_ms, settings, unique};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::settings::{OutputFormat, Settings};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

const SPAN_MS: i64 = 2 * 3_600_000;

/// Every payload of `topic`, read committed from the beginning until it stays quiet.
async fn payloads(s: &Settings, topic: &str) -> Vec<Vec<u8>> {
    let consumer: StreamConsumer = consumer_config(&s.kafka, &unique("framed-reader"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let mut stream = consumer.stream();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(6), stream.next()).await {
        let m = m.expect("consume");
        out.push(m.payload().expect("payload").to_vec());
    }
    out
}

/// Checks that every payload is framed with `id` and decodes as `T`; returns how many.
fn check_framed<T: driftwatch_codec::AvroRecord>(topic: &str, id: u32, all: &[Vec<u8>]) -> usize {
    for p in all {
        assert_eq!(p.first(), Some(&0u8), "{topic}: not framed: {p:?}");
        let (framed_id, datum) = split_framed(p).expect("a frame");
        assert_eq!(framed_id, id, "{topic}: framed with another id");
        from_avro::<T>(datum).unwrap_or_else(|e| panic!("{topic}: datum does not decode: {e}"));
    }
    all.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_framed_with_the_ids_of_their_registered_schemas() {
    driftwatch_tests::init_logging();
    let Some(url) = require_schema_registry() else {
        return;
    };
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    create_topics_of(&mut s, 2).await;
    s.schema_registry.url = url.clone();
    s.schema_registry.max_backoff = Duration::from_millis(500);
    s.monitor.output_format = OutputFormat::AvroRegistry;
    s.join.label_timeout = Duration::from_secs(30 * 60);
    s.join.orphan_timeout = Duration::from_secs(30 * 60);
    s.join.idle_timeout = Duration::from_secs(3);
    s.join.flush_interval = Duration::from_millis(300);
    s.monitor.commit_interval = Duration::from_millis(300);
    s.monitor.metrics_interval = Duration::from_secs(1);
    let d = &mut s.monitor.detection.default;
    d.windows = vec!["15m".into(), "1h".into()];
    d.maturity_ms = 5 * 60_000;
    d.accuracy_drop.window = "15m".into();
    s.validate().expect("valid settings");

    // Two hours of traffic ending a minute ago; one model drifts halfway, so the monitor
    // writes drift and retrain events as well as metrics.
    let start_ms = (now_ms() - SPAN_MS - 60_000) / 60_000 * 60_000;
    let mut g = GeneratorConfig::two_models(5);
    g.start_ms = start_ms;
    g.duration_ms = SPAN_MS;
    g.predictions_per_second = 12_000.0 / (SPAN_MS as f64 / 1000.0);
    g.scenario = Scenario::Drift;
    g.label_delay.max_ms = 10 * 60_000;
    let traffic = TrafficGenerator::new(g.resolved()).expect("generator");
    publish(
        &s.kafka,
        &s.topics,
        traffic,
        Pace::Unthrottled,
        std::future::pending(),
    )
    .await
    .expect("publish");

    let stages = Stages::start(&s);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while stages.monitor.stats().progress_ms < start_ms + SPAN_MS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the monitor's clock stayed at {}",
            stages.monitor.stats().progress_ms
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stages.stop().await;

    let t = &s.topics;
    let mut counts = BTreeMap::new();
    for (topic, kind) in [
        (&t.drift_events, RecordKind::DriftEvent),
        (&t.retrain_events, RecordKind::RetrainEvent),
        (&t.model_metrics, RecordKind::ModelMetrics),
    ] {
        // What a serializer registering driftwatch's schema under the topic's subject gets:
        // the id the monitor registered.
        let id = register(&url, &format!("{topic}-value"), kind.schema_text()).await;
        let served = schema_by_id(&url, id).await;
        let ours: serde_json::Value = serde_json::from_str(kind.schema_text()).expect("schema");
        let theirs: serde_json::Value = serde_json::from_str(&served).expect("served schema");
        assert_eq!(
            ours["name"], theirs["name"],
            "{topic}: id {id} serves {served}"
        );
        assert_eq!(
            ours["fields"].as_array().map(Vec::len),
            theirs["fields"].as_array().map(Vec::len),
            "{topic}: id {id} serves {served}"
        );
        let all = payloads(&s, topic).await;
        let n = match kind {
            RecordKind::DriftEvent => check_framed::<DriftEvent>(topic, id, &all),
            RecordKind::RetrainEvent => check_framed::<RetrainEvent>(topic, id, &all),
            _ => check_framed::<ModelMetrics>(topic, id, &all),
        };
        counts.insert(format!("{kind:?}"), (id, n));
    }
    println!("framed outputs (id, records): {counts:?}");
    // The check means something: every kind of output was written.
    for (kind, (_, n)) in &counts {
        assert!(*n > 0, "no {kind} record written: {counts:?}");
    }
}
