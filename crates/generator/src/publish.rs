//! Publishing generated traffic to Kafka, paced by event time: the load of `driftwatch
//! generate`, the demo, the bench and the integration tests. It lives here, not in the worker,
//! because only those drive load; the producer settings are the worker's, so generated records
//! land on the partitions a real producer's would.

use std::borrow::Borrow;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use driftwatch_core::join::routing::crc32_partition;
use driftwatch_worker::clients::producer_config;
use driftwatch_worker::settings::{KafkaSettings, TopicNames};
use driftwatch_worker::Result;
use hdrhistogram::Histogram;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tracing::{info, warn};

use crate::{GeneratedRecord, Side};

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
/// Deliveries are not awaited one by one: a future per record costs an allocation, a channel
/// and a wake-up, which at a few hundred thousand records a second is CPU the pipeline under
/// test then lacks. The producer reports failed deliveries only
/// (`delivery.report.only.error`), which the callback counts; once `flush` has emptied the
/// queue, every other record sent was acknowledged. (Counting every acknowledgement in the
/// callback kept the producer's polling thread at ~7 % of a core at 167 k records/s.)
pub async fn publish(
    kafka: &KafkaSettings,
    topics: &TopicNames,
    records: impl Iterator<Item = impl Borrow<GeneratedRecord>>,
    pace: Pace,
    stop: impl Future<Output = ()>,
) -> Result<PublishReport> {
    publish_with(kafka, topics, records, pace, None, stop).await
}

/// [`publish`], with the labels on their CRC32 partition among `crc32_labels` partitions when
/// set: where a label producer on librdkafka's default partitioner (`consistent_random`) puts
/// them, so that most are misrouted for the join (`driftwatch bench --crc32-labels`).
pub async fn publish_with(
    kafka: &KafkaSettings,
    topics: &TopicNames,
    records: impl Iterator<Item = impl Borrow<GeneratedRecord>>,
    pace: Pace,
    crc32_labels: Option<i32>,
    stop: impl Future<Output = ()>,
) -> Result<PublishReport> {
    let mut config = producer_config(kafka);
    config.set("delivery.report.only.error", "true");
    let producer: ThreadedProducer<FailureCounter> =
        config.create_with_context(FailureCounter::default())?;
    let started = Instant::now();
    let mut first_event: Option<i64> = None;
    let mut last_log = Instant::now();
    let mut sent = [0u64; 2];
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
        if let (Side::Labels, Some(n)) = (r.side, crc32_labels) {
            record = record.partition(crc32_partition(r.key.as_bytes(), n));
        }
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
        sent[side_tag(r.side)] += 1;
        if last_log.elapsed() >= Duration::from_secs(10) {
            info!(sent = sent[0] + sent[1], "published");
            last_log = Instant::now();
        }
    }
    // Fails unless every record sent has been delivered or reported as failed.
    producer.flush(Duration::from_secs(30))?;
    let failed = |side: usize| producer.context().failed[side].load(Ordering::Relaxed);
    Ok(PublishReport {
        predictions: sent[0].saturating_sub(failed(0)),
        labels: sent[1].saturating_sub(failed(1)),
        failed: failed(0) + failed(1),
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

/// Counts refused records per side (predictions, labels) as the producer reports them: a
/// dropped record must not go unnoticed.
#[derive(Default)]
struct FailureCounter {
    failed: [AtomicU64; 2],
}

impl ClientContext for FailureCounter {}

impl ProducerContext for FailureCounter {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, side: usize) {
        // Only failures are reported (`delivery.report.only.error`); an acknowledgement that
        // arrives anyway is not one.
        if let Err((e, _)) = result {
            warn!(error = %e, "record not delivered");
            self.failed[side.min(1)].fetch_add(1, Ordering::Relaxed);
        }
    }
}
