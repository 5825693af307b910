//! Publishing generated traffic to Kafka, paced by event time.

use std::future::Future;
use std::time::{Duration, Instant};

use driftwatch_generator::{GeneratedRecord, Side};
use hdrhistogram::Histogram;
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
    let mut last_log = Instant::now();
    let mut sent = 0u64;
    let mut behind = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).ok();
    // Deliveries are confirmed by a task of their own: waiting for acknowledgements in the
    // publishing loop would hold back the next sends, and a paced run would publish late.
    // The bounded channel still holds an unthrottled run back when acknowledgements lag.
    let (inflight, deliveries) = tokio::sync::mpsc::channel::<(Side, DeliveryFuture)>(100_000);
    let confirmations = tokio::spawn(confirm(deliveries));
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
        let mut record = FutureRecord::to(topic).key(&r.key).payload(&r.payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    // `try_send` first: an awaited send spends the task's cooperative budget
                    // and yields every 128 records, which starves a paced run on a busy
                    // runtime. Fails only when the confirming task panicked: reported below.
                    match inflight.try_send((r.side, delivery)) {
                        Ok(()) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Full(back)) => {
                            let _ = inflight.send(back).await;
                        }
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
                    }
                    sent += 1;
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
        if last_log.elapsed() >= Duration::from_secs(10) {
            info!(sent, "published");
            last_log = Instant::now();
        }
    }
    producer.flush(Duration::from_secs(30))?;
    drop(inflight);
    let mut report = match confirmations.await {
        Ok(report) => report,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down, nothing was confirmed.
        Err(_) => PublishReport::default(),
    };
    report.elapsed = started.elapsed();
    report.behind_schedule_ms = behind.filter(|_| matches!(pace, Pace::TimeScale(_)));
    Ok(report)
}

/// Counts acknowledged and refused records, in the order they were sent: a dropped record
/// must not go unnoticed.
async fn confirm(
    mut deliveries: tokio::sync::mpsc::Receiver<(Side, DeliveryFuture)>,
) -> PublishReport {
    let mut report = PublishReport::default();
    while let Some((side, d)) = deliveries.recv().await {
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
    report
}
