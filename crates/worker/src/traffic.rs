//! Publishing generated traffic to Kafka, paced by event time.

use std::future::Future;
use std::time::{Duration, Instant};

use driftwatch_generator::{GeneratedRecord, Side};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tracing::{info, warn};

use crate::clients::producer_config;
use crate::error::Result;
use crate::settings::{KafkaSettings, TopicNames};

/// How fast to publish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the producer takes them.
    Unthrottled,
    /// Event time runs this many times faster than the wall clock (1.0 = real time).
    TimeScale(f64),
}

/// What was published.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PublishReport {
    /// Predictions (and labels) the broker acknowledged.
    pub predictions: u64,
    pub labels: u64,
    /// Records the broker did not take (each is logged).
    pub failed: u64,
    pub elapsed: Duration,
}

/// Publishes `records` to the input topics with driftwatch's producer settings (murmur2, the
/// same partitioner real producers must use), until they run out or `stop` resolves.
pub async fn publish(
    kafka: &KafkaSettings,
    topics: &TopicNames,
    records: impl Iterator<Item = GeneratedRecord>,
    pace: Pace,
    stop: impl Future<Output = ()>,
) -> Result<PublishReport> {
    let producer: FutureProducer = producer_config(kafka).create()?;
    let started = Instant::now();
    let mut first_event: Option<i64> = None;
    let mut report = PublishReport::default();
    let mut last_log = Instant::now();
    let mut inflight: Vec<(Side, DeliveryFuture)> = Vec::new();
    tokio::pin!(stop);
    for r in records {
        if let Pace::TimeScale(scale) = pace {
            let e0 = *first_event.get_or_insert(r.event_time);
            let due = Duration::from_secs_f64(
                ((r.event_time - e0).max(0) as f64 / 1000.0) / scale.max(1e-9),
            );
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = &mut stop => break,
                }
            }
        }
        let topic = match r.side {
            Side::Predictions => &topics.predictions,
            Side::Labels => &topics.ground_truth,
        };
        // The record timestamp is left to the producer (send time), as real producers do: the
        // event time travels in the payload, and a broker refuses timestamps far from its clock.
        let mut record = FutureRecord::to(topic).key(&r.key).payload(&r.payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    inflight.push((r.side, delivery));
                    break;
                }
                // Local queue full: let the producer drain, then retry the same record.
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                    tokio::task::yield_now().await;
                }
            }
        }
        // Delivery is confirmed in batches: a dropped record must not go unnoticed.
        if inflight.len() >= 20_000 {
            settle(&mut inflight, &mut report).await;
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            info!(
                predictions = report.predictions,
                labels = report.labels,
                "published"
            );
            last_log = Instant::now();
        }
    }
    producer.flush(Duration::from_secs(30))?;
    settle(&mut inflight, &mut report).await;
    report.elapsed = started.elapsed();
    Ok(report)
}

async fn settle(inflight: &mut Vec<(Side, DeliveryFuture)>, report: &mut PublishReport) {
    for (side, d) in inflight.drain(..) {
        match d.await {
            Ok(Ok(_)) => match side {
                Side::Predictions => report.predictions += 1,
                Side::Labels => report.labels += 1,
            },
            Ok(Err((e, _))) => {
                report.failed += 1;
                warn!(error = %e, "record not delivered");
            }
            Err(_) => report.failed += 1,
        }
    }
}
