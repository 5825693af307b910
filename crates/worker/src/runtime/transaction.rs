//! The primitives of the transactional (exactly-once) paths.
//!
//! librdkafka's transaction calls block for up to their timeout and report, per error, whether
//! retrying the same call can succeed (a broker away, a coordinator moving), whether the
//! transaction must be aborted, or whether the producer is finished (fenced by a newer
//! incarnation). These helpers encode that classification once; [`super::eos`] builds the
//! transaction cycle from them.

use std::collections::VecDeque;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::{debug, warn};

use crate::changelog::FENCE_AFTER;

/// Runs blocking client calls (transactions, restores: up to minutes while a broker is away)
/// without starving the other tasks of a multi-threaded runtime.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// How long `init_transactions` of a new producer incarnation is retried while the broker is
/// unreachable (the consumer keeps its membership meanwhile: heartbeats do not depend on the
/// stage's loop, and it stays well within `max.poll.interval.ms`).
pub const TRANSACTION_RETRY_FOR: Duration = Duration::from_secs(180);

/// How long a call on a producer that has already been used is retried before the producer
/// counts as stuck ([`is_stuck`]) and is replaced: at least this, and at least three of the
/// calls' own timeouts. A client can stay unable to reach its transaction coordinator after a
/// broker restart while every other client reconnected (seen as `ADDOFFSETS` requests timing
/// out in the coordinator's queue for minutes); a new incarnation looks the coordinator up
/// afresh, and its `init_transactions` aborts what the stuck one left open.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

/// The bound of [`call`]'s retries for calls that each wait up to `timeout`.
pub fn stuck_after(timeout: Duration) -> Duration {
    STUCK_AFTER.max(timeout.saturating_mul(3))
}

/// How much longer than its own timeout a transaction call may block before it is abandoned
/// ([`call`]).
pub const BLOCKED_GRACE: Duration = Duration::from_secs(5);

/// Makes `call` on `producer`: retried while librdkafka says retrying can succeed, for up to
/// [`stuck_after`] the timeout, each attempt on a thread of its own and abandoned when it
/// blocks [`BLOCKED_GRACE`] past its timeout. An error still retriable, or a timeout, at the
/// end makes the producer stuck ([`is_stuck`]).
pub fn call(
    producer: &FutureProducer,
    call: TransactionCall,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let what = call.name();
    retrying(what, stuck_after(timeout), || {
        let producer = producer.clone();
        let call = call.clone();
        abandoned_after(what, timeout + BLOCKED_GRACE, move || match &call {
            TransactionCall::SendOffsets(offsets, metadata) => {
                producer.send_offsets_to_transaction(offsets, metadata, timeout)
            }
            TransactionCall::Commit => {
                flush(&producer, timeout)?;
                producer.commit_transaction(timeout)
            }
            TransactionCall::Abort => producer.abort_transaction(timeout),
        })
    })
}

/// Waits until every record produced so far is delivered or failed, for up to `timeout`.
///
/// rust-rdkafka's `commit_transaction` flushes first, and its `flush` checks once without
/// waiting and then polls the producer's event queue for up to 100 ms at a time: a queue the
/// `FutureProducer`'s own polling thread also serves, and which takes most delivery reports.
/// A commit with records still in flight thus waited for a multiple of 100 ms (librdkafka's
/// debug log showed exactly 100 ms between the offsets sent and the commit called). Called
/// with a timeout, librdkafka's flush waits on its count of queued records, wakes as soon as
/// it reaches zero, and sends waiting batches without their `linger.ms`; after it, the
/// wrapper's check finds nothing left and returns at once.
#[allow(unsafe_code)] // One librdkafka call on the producer's own handle.
pub(crate) fn flush(producer: &FutureProducer, timeout: Duration) -> Result<(), KafkaError> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let handle = producer.client().native_ptr();
    // SAFETY: `handle` is the live librdkafka producer `producer` owns (borrowed for the
    // call), and `rd_kafka_flush` may be called from any thread.
    let err = unsafe { rdkafka::bindings::rd_kafka_flush(handle, ms) };
    match RDKafkaErrorCode::from(err) {
        RDKafkaErrorCode::NoError => Ok(()),
        code => Err(KafkaError::Flush(code)),
    }
}

/// A transaction call [`call`] makes; it owns what the call needs, since an abandoned call
/// outlives its caller.
#[derive(Clone)]
pub enum TransactionCall {
    SendOffsets(TopicPartitionList, Arc<ConsumerGroupMetadata>),
    Commit,
    Abort,
}

impl TransactionCall {
    fn name(&self) -> &'static str {
        match self {
            TransactionCall::SendOffsets(..) => "send offsets",
            TransactionCall::Commit => "commit",
            TransactionCall::Abort => "abort",
        }
    }
}

/// Runs `op` on a thread of its own and waits for it up to `bound`. A call still running then
/// is left to finish (or not) on that thread, with its own handle to the producer, and
/// reported as a timeout, which makes the producer stuck ([`is_stuck`]): it is replaced.
///
/// librdkafka documents that its transaction calls return within their timeout, but
/// `send_offsets_to_transaction` can wait forever for a group coordinator it lost track of
/// while the broker was away (confluentinc/librdkafka#5456, #5511): a broker-restart run saw
/// it block for ten minutes after every other client had reconnected.
fn abandoned_after<T: Send + 'static>(
    what: &'static str,
    bound: Duration,
    op: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("txn-call".into())
        .spawn(move || {
            // The receiver is gone when the call was abandoned: nothing to tell.
            let _ = tx.send(op());
        });
    if let Err(e) = spawned {
        warn!(error = %e, what, "no thread for a transaction call");
        return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
    }
    match rx.recv_timeout(bound) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => {
            warn!(what, bound = ?bound, "transaction call still blocked past its timeout: abandoning it and its producer");
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::OperationTimedOut,
            ))
        }
        // The call panicked.
        Err(RecvTimeoutError::Disconnected) => {
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail))
        }
    }
}

/// Calls a transaction operation again while librdkafka says retrying can succeed (timeouts,
/// coordinator moves, a broker outage), for up to `bound`; the last error once it is over.
fn retrying(
    what: &str,
    bound: Duration,
    mut op: impl FnMut() -> rdkafka::error::KafkaResult<()>,
) -> Result<(), KafkaError> {
    retry_while(
        bound,
        Duration::from_millis(200),
        &mut op,
        |e| matches!(e, KafkaError::Transaction(t) if t.is_retriable()),
        |e| debug!(error = %e, what, "transaction call retried"),
    )
}

/// Calls `op` until it succeeds, fails with an error `retriable` refuses, or `bound` has
/// passed since the first call (then the last error), pausing `pause` between calls.
fn retry_while<T, E>(
    bound: Duration,
    pause: Duration,
    mut op: impl FnMut() -> Result<T, E>,
    retriable: impl Fn(&E) -> bool,
    mut retried: impl FnMut(&E),
) -> Result<T, E> {
    let started = Instant::now();
    loop {
        match op() {
            Err(e) if retriable(&e) && started.elapsed() + pause < bound => {
                retried(&e);
                std::thread::sleep(pause);
            }
            other => return other,
        }
    }
}

/// Whether a transaction call failed in a way that retrying for [`stuck_after`] did not cure
/// (still retriable, or a timeout): the producer is replaced rather than used to abort, since
/// the abort would wait on the same coordinator.
pub fn is_stuck(e: &KafkaError) -> bool {
    if is_fatal(e) {
        return false;
    }
    match e {
        KafkaError::Transaction(t) => {
            t.is_retriable() || t.code() == RDKafkaErrorCode::OperationTimedOut
        }
        _ => e.rdkafka_error_code() == Some(RDKafkaErrorCode::OperationTimedOut),
    }
}

/// Whether a transactional producer error leaves the producer unusable (fenced, fatal).
pub fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fatal)
        ),
    }
}

/// Moves the consumer back to its group's committed offsets (the beginning where nothing was
/// committed yet), after an aborted transaction; returns the committed offsets.
pub fn rewind_to_committed<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    timeout: Duration,
) -> Result<TopicPartitionList, KafkaError> {
    let committed = consumer.committed(timeout)?;
    let mut seek = TopicPartitionList::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        seek.add_partition_offset(e.topic(), e.partition(), offset)?;
    }
    consumer.seek_partitions(seek, timeout)?;
    Ok(committed)
}

/// `consumer`'s committed offsets of `partitions`. A `read_committed` consumer asks for
/// stable ones, which a transaction left open by a previous owner keeps pending until the
/// broker aborts it; after [`FENCE_AFTER`] without an answer, `pending` is called (the stage
/// may fence that owner, see [`super::writer`]) and the question asked again for `timeout`.
pub fn committed_stable<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    partitions: &TopicPartitionList,
    timeout: Duration,
    pending: impl FnOnce(),
) -> Result<TopicPartitionList, KafkaError> {
    match consumer.committed_offsets(partitions.clone(), FENCE_AFTER.min(timeout)) {
        Err(KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut)) => pending(),
        answered => return answered,
    }
    consumer.committed_offsets(partitions.clone(), timeout)
}

/// Enqueues a record, waiting while the local queue is full (the producer's thread drains it).
pub fn send_waiting(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, [u8], [u8]>,
) -> Result<(), KafkaError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match producer.send_result(record) {
            Ok(_) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                if Instant::now() < deadline =>
            {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Opens a new incarnation of a transactional producer from `config` (transactions
/// initialized, one begun), to take the place of `old`, whose queued records are purged.
///
/// A transactional producer that was fenced is unusable for good (a broker outage longer than
/// the transaction timeout makes the coordinator abort the transaction and bump the producer
/// epoch); like Kafka Streams after a `ProducerFencedException`, the stage then opens a new
/// incarnation under the same transactional id and redoes its uncommitted work.
pub fn reincarnate(
    old: &FutureProducer,
    config: &ClientConfig,
    timeout: Duration,
) -> Result<FutureProducer, KafkaError> {
    let fresh: FutureProducer = config.create()?;
    // The broker may still be away (that is often why the old one got stuck): wait for it.
    retrying("init transactions", TRANSACTION_RETRY_FOR, || {
        fresh.init_transactions(timeout)
    })?;
    fresh.begin_transaction()?;
    old.purge(PurgeConfig::default().queue().inflight());
    Ok(fresh)
}

/// Bounds how often a stage opens a new producer incarnation: two live workers configured with
/// the same `kafka.instance_id` would otherwise fence each other forever.
#[derive(Debug, Default)]
pub struct Reincarnations(VecDeque<Instant>);

impl Reincarnations {
    /// At most this many within [`REINCARNATION_WINDOW`].
    pub const MAX: usize = 5;

    /// Records one; false when the limit is reached (the stage must stop).
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) > REINCARNATION_WINDOW)
        {
            self.0.pop_front();
        }
        if self.0.len() >= Self::MAX {
            return false;
        }
        self.0.push_back(now);
        true
    }
}

/// See [`Reincarnations`].
pub const REINCARNATION_WINDOW: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reincarnations_are_bounded_within_the_window() {
        let mut r = Reincarnations::default();
        for _ in 0..Reincarnations::MAX {
            assert!(r.allow());
        }
        assert!(!r.allow());
    }

    #[test]
    fn fenced_and_fatal_errors_are_fatal_and_others_are_not() {
        let fenced = KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced);
        assert!(is_fatal(&fenced));
        assert!(is_fatal(&KafkaError::MessageProduction(
            RDKafkaErrorCode::Fatal
        )));
        assert!(!is_fatal(&KafkaError::MessageProduction(
            RDKafkaErrorCode::QueueFull
        )));
    }

    #[test]
    fn a_timeout_is_stuck_and_a_fenced_producer_or_a_full_queue_is_not() {
        let e = |code| KafkaError::MessageProduction(code);
        assert!(is_stuck(&e(RDKafkaErrorCode::OperationTimedOut)));
        assert!(!is_stuck(&e(RDKafkaErrorCode::ProducerFenced)));
        assert!(!is_stuck(&e(RDKafkaErrorCode::QueueFull)));
        assert!(!is_stuck(&e(RDKafkaErrorCode::MessageTimedOut)));
    }

    #[test]
    fn retrying_stops_at_its_bound_with_the_last_error() {
        let mut calls = 0;
        let mut retried = 0;
        let r: Result<(), u32> = retry_while(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || {
                calls += 1;
                Err(calls)
            },
            |_| true,
            |_| retried += 1,
        );
        // Calls at about 0, 10, 20, 30 ms; a fifth would start past the bound.
        assert!((2..=5).contains(&calls), "{calls} calls");
        assert_eq!(r, Err(calls));
        assert_eq!(retried, calls - 1);
    }

    #[test]
    fn retrying_stops_at_an_error_that_is_not_retriable_and_at_success() {
        let mut calls = 0;
        let r: Result<(), u32> = retry_while(
            Duration::from_secs(60),
            Duration::ZERO,
            || {
                calls += 1;
                Err(calls)
            },
            |e| *e < 3,
            |_| {},
        );
        assert_eq!(r, Err(3));
        let mut n = 0;
        let ok: Result<u32, u32> = retry_while(
            Duration::from_secs(60),
            Duration::ZERO,
            || {
                n += 1;
                if n < 4 {
                    Err(n)
                } else {
                    Ok(n)
                }
            },
            |_| true,
            |_| {},
        );
        assert_eq!(ok, Ok(4));
    }

    #[test]
    fn a_stuck_call_gets_at_least_three_of_its_own_timeouts() {
        assert_eq!(stuck_after(Duration::from_secs(5)), STUCK_AFTER);
        assert_eq!(
            stuck_after(Duration::from_secs(60)),
            Duration::from_secs(180)
        );
    }

    #[test]
    fn a_call_blocked_past_its_bound_is_abandoned_as_a_timeout() {
        let started = Instant::now();
        let r: Result<(), KafkaError> = abandoned_after("test", Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        });
        assert!(started.elapsed() < Duration::from_secs(4));
        let e = r.expect_err("abandoned");
        assert!(is_stuck(&e), "{e}");
    }

    #[test]
    fn a_call_that_returns_in_time_gives_its_own_result() {
        let ok: Result<u8, KafkaError> = abandoned_after("test", Duration::from_secs(30), || Ok(7));
        assert_eq!(ok.ok(), Some(7));
        let full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        let r: Result<(), KafkaError> =
            abandoned_after("test", Duration::from_secs(30), move || Err(full));
        assert_eq!(
            r.expect_err("its error").rdkafka_error_code(),
            Some(RDKafkaErrorCode::QueueFull)
        );
    }
}
