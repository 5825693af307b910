//! At-least-once (`kafka.processing_guarantee = "at_least_once"`): a batch's records are
//! produced, their delivery awaited, and only then are the offsets they account for committed.
//! Nothing is committed before what it produced is in Kafka; after a crash some input is read
//! again.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use tracing::{debug, error};

use super::{Batch, StageContext};

/// What a flush came to.
pub struct Flushed<O> {
    pub outcome: O,
    /// Every record was delivered (and the offsets handed to the consumer to commit).
    pub delivered: bool,
    pub took: Duration,
}

/// Produces the batch's records now and returns what awaits their delivery and then commits
/// the batch's offsets (only if every record was delivered).
pub fn flush<B: Batch>(
    producer: &FutureProducer,
    consumer: Arc<StreamConsumer<StageContext>>,
    mut batch: B,
    mode: CommitMode,
) -> impl Future<Output = Flushed<B::Outcome>> + Send + 'static {
    let started = Instant::now();
    let mut deliveries = Vec::new();
    let mut enqueued = true;
    let produced = batch.produce(|record| {
        match producer.send_result(record) {
            Ok(d) => deliveries.push(d),
            Err((e, _)) => {
                error!(error = %e, "record not enqueued; offsets not committed");
                enqueued = false;
            }
        }
        Ok(())
    });
    if let Err(e) = produced {
        error!(error = %e, "records not produced; offsets not committed");
        enqueued = false;
    }
    let offsets = batch.offsets().clone();
    let outcome = batch.into_outcome();
    async move {
        let mut delivered = enqueued;
        for d in deliveries {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    delivered = false;
                    error!(error = %e, "record not delivered; offsets not committed");
                }
                Err(_) => delivered = false,
            }
        }
        // Offsets move only when everything they account for is in Kafka.
        if delivered && offsets.count() > 0 {
            if let Err(e) = consumer.commit(&offsets, mode) {
                debug!(error = %e, "commit");
            }
        }
        Flushed {
            outcome,
            delivered,
            took: started.elapsed(),
        }
    }
}
