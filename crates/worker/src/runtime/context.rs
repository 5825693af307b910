//! The consumer's context: how rebalances and statistics reach the stage's loop without the
//! callbacks touching the stage's state.
//!
//! librdkafka calls the context from inside the consumer's poll, on the loop's own thread but
//! deep in `recv()`, where the stage's state is out of reach. So the callbacks only record:
//!
//! - **Rebalances** are queued as [`Rebalance::Assign`] / [`Rebalance::Revoke`] and the loop
//!   is woken; the callback does *not* call `assign`/`unassign`. librdkafka then waits in its
//!   join state `WAIT_ASSIGN_CALL` / `WAIT_UNASSIGN_CALL` (pausing the partitions it holds, so
//!   no record of them is handed out meanwhile) until the application makes that call —
//!   within `max.poll.interval.ms`, the same bound a callback doing the work inline had. The
//!   loop, which owns the state, makes the call once it has committed (revoke) or restored
//!   (assign): see [`super::run`].
//! - **Statistics** replace the previous ones in a slot the loop empties at its next tick.
//!
//! Outside the loop (before it subscribes, after it ends — closing the consumer revokes its
//! partitions — or when it stopped on an error) nobody would answer a queued rebalance and
//! closing would wait forever for the assign call. So the hand-off is switched on only while
//! the loop runs ([`HandOff`]); otherwise the callback assigns and unassigns itself, as
//! rdkafka's default does, and ending the hand-off answers whatever is still queued.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::Notify;
use tracing::{error, warn};

/// A rebalance, as the consumer's callback saw it; the loop answers it.
#[derive(Debug)]
pub enum Rebalance {
    /// Partitions to take: restore their state, then `assign` them.
    Assign(TopicPartitionList),
    /// Partitions to give up: commit (or, when `lost`, abort) the open work, drop their
    /// state, then `unassign` them.
    Revoke {
        partitions: TopicPartitionList,
        /// The assignment was already lost (session timed out): nothing may be committed.
        lost: bool,
    },
}

/// The context of a stage's consumer (see the module docs).
#[derive(Default)]
pub struct StageContext {
    queue: Mutex<VecDeque<Rebalance>>,
    /// Whether `queue` may hold something: checked before every record, without the lock.
    pending: AtomicBool,
    wake: Notify,
    /// Whether the loop runs and answers rebalances.
    handing_off: AtomicBool,
    statistics: Mutex<Option<Statistics>>,
}

impl StageContext {
    /// Whether a rebalance waits to be handled.
    #[inline]
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Resolves when a rebalance was queued (at once if one was queued since the last call).
    pub async fn rebalanced(&self) {
        self.wake.notified().await;
    }

    /// The next queued rebalance, oldest first.
    pub fn next_rebalance(&self) -> Option<Rebalance> {
        let mut queue = lock(&self.queue);
        let next = queue.pop_front();
        if queue.is_empty() {
            self.pending.store(false, Ordering::Release);
        }
        next
    }

    /// The latest statistics since the last call.
    pub fn take_statistics(&self) -> Option<Statistics> {
        lock(&self.statistics).take()
    }

    /// Starts handing rebalances to the loop until the returned guard is dropped.
    pub fn hand_off<C: Consumer<StageContext>>(self: &Arc<Self>, consumer: Arc<C>) -> HandOff<C> {
        self.handing_off.store(true, Ordering::Release);
        HandOff {
            context: self.clone(),
            consumer,
        }
    }

    fn push(&self, event: Rebalance) {
        lock(&self.queue).push_back(event);
        self.pending.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing half-written can be left in a queue or a slot by a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands rebalances to the loop while it lives; when dropped (the loop ended, normally or
/// not), the callback takes over again and every rebalance still queued is answered, so the
/// consumer can close.
pub struct HandOff<C: Consumer<StageContext>> {
    context: Arc<StageContext>,
    consumer: Arc<C>,
}

impl<C: Consumer<StageContext>> Drop for HandOff<C> {
    fn drop(&mut self) {
        self.context.handing_off.store(false, Ordering::Release);
        while let Some(event) = self.context.next_rebalance() {
            let result = match &event {
                Rebalance::Assign(tpl) => answer_assign(self.consumer.as_ref(), tpl),
                Rebalance::Revoke { partitions, .. } => {
                    answer_revoke(self.consumer.as_ref(), partitions)
                }
            };
            if let Err(e) = result {
                warn!(error = %e, ?event, "rebalance answered when the stage stopped");
            }
        }
    }
}

/// Takes `tpl` as the (eager) assignment or adds it (cooperative).
pub fn answer_assign<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    tpl: &TopicPartitionList,
) -> rdkafka::error::KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
        _ => consumer.assign(tpl),
    }
}

/// Drops the whole (eager) assignment or removes `tpl` from it (cooperative).
pub fn answer_revoke<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    tpl: &TopicPartitionList,
) -> rdkafka::error::KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
        _ => consumer.unassign(),
    }
}

impl ClientContext for StageContext {
    fn stats(&self, statistics: Statistics) {
        *lock(&self.statistics) = Some(statistics);
    }
}

impl ConsumerContext for StageContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let handing_off = self.handing_off.load(Ordering::Acquire);
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS if handing_off => {
                self.push(Rebalance::Assign(tpl.clone()));
                Ok(())
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => answer_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS if handing_off => {
                self.push(Rebalance::Revoke {
                    partitions: tpl.clone(),
                    lost: consumer.assignment_lost(),
                });
                Ok(())
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => answer_revoke(consumer, tpl),
            other => {
                // Not an assignment: librdkafka's own handling drops the assignment. The loop
                // does the same, as for a lost one.
                let code: rdkafka::types::RDKafkaErrorCode = other.into();
                error!(error = %code, "rebalance error: giving up the assignment");
                if handing_off {
                    self.push(Rebalance::Revoke {
                        partitions: consumer.assignment().unwrap_or_default(),
                        lost: true,
                    });
                    Ok(())
                } else {
                    answer_revoke(consumer, tpl)
                }
            }
        };
        if let Err(e) = result {
            error!(error = %e, "rebalance not answered");
        }
    }
}
