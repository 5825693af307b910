//! `driftwatch_generator::publish` (behind `driftwatch generate`, the demo and the bench) on the real broker
//! accounts for every record it is handed: acknowledged records counted by side and found on
//! the topics, and records the broker never takes counted as failed, not as published.

use std::time::Duration;

use driftwatch_generator::publish::{publish, Pace, PublishReport};
use driftwatch_generator::{GeneratedRecord, GeneratorConfig, Side, TrafficGenerator};
use driftwatch_tests::{broker_available, create_topic, now_ms, settings, unique};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::settings::{KafkaSettings, TopicNames};
use rdkafka::consumer::{BaseConsumer, Consumer};

/// About 600 predictions and their labels for two models.
fn traffic(seed: u64) -> Vec<GeneratedRecord> {
    let mut c = GeneratorConfig::two_models(seed);
    c.predictions_per_second = 100.0;
    c.duration_ms = 6_000;
    c.start_ms = now_ms();
    c.garbage_rate = 0.0;
    c.label_delay.median_ms = 200;
    c.label_delay.max_ms = 2_000;
    TrafficGenerator::new(c).expect("generator").collect()
}

/// Publishes every record as fast as the producer takes them.
async fn publish_all(
    kafka: &KafkaSettings,
    topics: &TopicNames,
    records: &[GeneratedRecord],
) -> PublishReport {
    publish(
        kafka,
        topics,
        records.iter(),
        Pace::Unthrottled,
        std::future::pending(),
    )
    .await
    .expect("publish ends once every record is delivered or reported")
}

fn count(records: &[GeneratedRecord], side: Side) -> u64 {
    records.iter().filter(|r| r.side == side).count() as u64
}

/// Sum of the high watermarks of `topic`'s partitions.
fn records_on(topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = consumer_config(&settings(), &unique("traffic-watermarks"))
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_records_are_counted_by_side_and_on_the_topics() {
    if !broker_available() {
        return;
    }
    let topics = TopicNames {
        predictions: unique("traffic-predictions"),
        ground_truth: unique("traffic-ground-truth"),
        ..TopicNames::default()
    };
    create_topic(&topics.predictions, 2).await;
    create_topic(&topics.ground_truth, 2).await;
    let records = traffic(5);
    let (predictions, labels) = (
        count(&records, Side::Predictions),
        count(&records, Side::Labels),
    );
    assert!(predictions > 500 && labels > 400, "{predictions} {labels}");

    let report = publish_all(&settings(), &topics, &records).await;

    assert_eq!(
        (report.predictions, report.labels, report.failed),
        (predictions, labels, 0)
    );
    assert_eq!(records_on(&topics.predictions, 2), predictions as i64);
    assert_eq!(records_on(&topics.ground_truth, 2), labels as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_broker_never_takes_are_counted_as_failed() {
    if !broker_available() {
        return;
    }
    // The test broker does not create topics on demand: these never exist, and every record
    // times out in the producer.
    let topics = TopicNames {
        predictions: unique("traffic-missing-predictions"),
        ground_truth: unique("traffic-missing-ground-truth"),
        ..TopicNames::default()
    };
    let mut kafka = settings();
    kafka
        .properties
        .insert("message.timeout.ms".into(), "2000".into());
    let records = traffic(6);

    let report = publish_all(&kafka, &topics, &records).await;

    assert_eq!(
        (report.predictions, report.labels, report.failed),
        (0, 0, records.len() as u64)
    );
}
