//! Publishing generated traffic to Kafka, paced by event time.

use std::borrow::Borrow;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use driftwatch_generator::{GeneratedRecord, Side};
use hdrhistogram::Histogram;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
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
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// Predictions (and labels) the broker acknowledged.
    pub predictions: u64,
    pub labels: u64,
    /// Records the broker did not take (each is logged).
    pub failed: u64,
    pub elapsed: Duration,
    /// Paced runs: per record, how late it was handed to the producer against its schedule,
    /// ms (a late record's latency downstream includes this).
    pub behind_schedule_ms: Option<Histogram<u64>>,
}

/// Publishes `records` to the input topics with driftwatch's producer settings (murmur2, the
/// same partitioner real producers must use), until they run out or `stop` resolves.
///
/// Deliveries are counted by the producer's callback (one atomic add per record) rather than
/// awaited as futures: a future per record costs an allocation, a channel and a wake-up, which
/// at a few hundred thousand records a second is CPU the pipeline under test then lacks.
pub async fn publish(
    kafka: &KafkaSettings,
    topics: &TopicNames,
    records: impl Iterator<Item = impl Borrow<GeneratedRecord>>,
    pace: Pace,
    stop: impl Future<Output = ()>,
) -> Result<PublishReport> {
    let producer: ThreadedProducer<DeliveryCounter> =
        producer_config(kafka).create_with_context(DeliveryCounter::default())?;
    let started = Instant::now();
    let mut first_event: Option<i64> = None;
    let mut last_log = Instant::now();
    let mut sent = 0u64;
    let mut behind = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).ok();
    tokio::pin!(stop);
    for r in records {
        // Borrowed records are freed by their owner later, off the publishing loop.
        let r = r.borrow();
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
            if let Some(h) = behind.as_mut() {
                let late = started.elapsed().saturating_sub(due).as_millis();
                h.saturating_record(u64::try_from(late).unwrap_or(u64::MAX));
            }
        }
        let topic = match r.side {
            Side::Predictions => &topics.predictions,
            Side::Labels => &topics.ground_truth,
        };
        // The record timestamp is left to the producer (send time), as real producers do: the
        // event time travels in the payload, and a broker refuses timestamps far from its clock.
        let mut record = BaseRecord::with_opaque_to(topic, side_tag(r.side))
            .key(&r.key)
            .payload(&r.payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                // Local queue full: let the producer drain, then retry the same record.
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        sent += 1;
        if last_log.elapsed() >= Duration::from_secs(10) {
            info!(sent, "published");
            last_log = Instant::now();
        }
    }
    producer.flush(Duration::from_secs(30))?;
    let c = producer.context();
    Ok(PublishReport {
        predictions: c.predictions.load(Ordering::Relaxed),
        labels: c.labels.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        behind_schedule_ms: behind.filter(|_| matches!(pace, Pace::TimeScale(_))),
    })
}

fn side_tag(side: Side) -> usize {
    match side {
        Side::Predictions => 0,
        Side::Labels => 1,
    }
}

/// Counts acknowledged and refused records as the producer reports them: a dropped record
/// must not go unnoticed.
#[derive(Default)]
struct DeliveryCounter {
    predictions: AtomicU64,
    labels: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, side: usize) {
        let counter = match (result, side) {
            (Ok(_), 0) => &self.predictions,
            (Ok(_), _) => &self.labels,
            (Err((e, _)), _) => {
                warn!(error = %e, "record not delivered");
                &self.failed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
