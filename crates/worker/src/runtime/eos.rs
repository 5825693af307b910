//! Exactly-once: the transaction cycle of both stages, written once.
//!
//! The cycle is rust-rdkafka's `examples/transactions.rs`, with a stage's batch in the middle:
//!
//! ```text
//! init_transactions; begin_transaction                          Eos::begin
//! every commit interval:
//!     batch = stage.take_batch()                                (the loop, run/)
//!     produce the batch's records                               commit()
//!     send_offsets_to_transaction(batch offsets, group metadata)
//!     commit_transaction; begin_transaction
//!       (offsets refused for a stale membership: abort, begin, the same batch again
//!        with the current group metadata, a few times)
//!     stage.committed(outcome)
//! on an error:
//!     abort_transaction; begin_transaction                      Eos::recover → Aborted
//!       (fenced, stuck, or the abort failed: a new producer     → Reincarnated
//!        incarnation, at most Reincarnations::MAX in ten minutes, else Fatal)
//!     stage.aborted(outcome)
//!     seek to the committed offsets; stage.rewound(committed)   rewind_to_committed
//! ```
//!
//! Calls that librdkafka marks retriable (a broker away, a coordinator moving) are retried for
//! up to [`super::transaction::stuck_after`] the transaction timeout; a producer that is still
//! failing then is stuck, and replaced like a fenced one. A batch is
//! taken by value and its outcome handed back whatever happens: the commit never reaches into
//! the stage, which is why it can run on a thread of its own ([`super::commit_thread`]).
//!
//! Nothing is produced into the open transaction between commits: a stage keeps what it has
//! to write (dead letters, changelog changes) in its state until its next batch. So the open
//! transaction is empty but for the batch being committed, and aborting it only ever discards
//! one batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::ClientConfig;
use tracing::{error, warn};

use super::transaction::{
    self, is_fatal, is_stuck, reincarnate, send_waiting, Reincarnations, TransactionCall,
};
use super::writer::Tagger;
use super::Batch;

/// How a stage commits its transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// On a thread of its own while the loop goes on processing (the join: a commit holds a
    /// flush interval of changelog records). `flush_interval` is how long a commit may take and
    /// still count as keeping up ([`super::commit_thread::commits_keep_up`]).
    Background { flush_interval: Duration },
    /// In the loop, which waits for it (the monitor: small batches).
    Inline,
}

/// Exactly-once processing: what the cycle needs besides the producer.
pub struct Eos {
    /// The producer's configuration, to open a new incarnation after it was fenced.
    producer_config: ClientConfig,
    /// Transaction timeout: the bound of every transactional call.
    pub(super) timeout: Duration,
    pub(super) commits: Commits,
    reincarnations: Reincarnations,
    /// The producer's transactional id (empty when the configuration has none).
    writer: std::sync::Arc<str>,
}

/// What became of a failed transaction.
pub enum Recovery {
    /// Aborted; the next one is open on the same producer.
    Aborted,
    /// The producer was unusable (fenced, or a fatal error): this new incarnation replaces it,
    /// with a transaction open.
    Reincarnated(FutureProducer),
    /// The stage must stop: fenced again and again, or an abort that failed without a
    /// replacement being possible.
    Fatal(KafkaError),
}

impl Eos {
    pub fn new(producer_config: ClientConfig, timeout: Duration, commits: Commits) -> Self {
        let writer = producer_config.get("transactional.id").unwrap_or("").into();
        Eos {
            producer_config,
            timeout,
            commits,
            reincarnations: Reincarnations::default(),
            writer,
        }
    }

    /// The producer's transactional id, which the records it writes name
    /// ([`super::writer`]).
    pub(super) fn writer(&self) -> std::sync::Arc<str> {
        self.writer.clone()
    }

    /// Longest wait of `init_transactions`.
    fn init_timeout(&self) -> Duration {
        self.timeout.max(Duration::from_secs(30))
    }

    /// Fences an earlier incarnation with the same transactional id and aborts its open
    /// transaction, then opens ours.
    pub(super) fn begin(&self, producer: &FutureProducer) -> Result<(), KafkaError> {
        producer.init_transactions(self.init_timeout())?;
        producer.begin_transaction()
    }

    /// After the open transaction failed with `cause` (`None`: nothing failed, but the
    /// transaction must not commit, e.g. the assignment was lost): aborts it and opens the
    /// next, or, when the producer cannot go on, replaces it.
    pub fn recover(&mut self, producer: &FutureProducer, cause: Option<KafkaError>) -> Recovery {
        let cause = match cause {
            // A stuck producer would wait on the same coordinator to abort: replace it, and
            // the new incarnation's `init_transactions` aborts what this one left open.
            Some(e) if is_fatal(&e) || is_stuck(&e) => e,
            cause => {
                if let Some(e) = &cause {
                    warn!(error = %e, "transaction failed: aborting it");
                }
                match abort(producer, self.timeout) {
                    Ok(()) => return Recovery::Aborted,
                    // The abort itself can leave the producer unusable (seen after a broker
                    // restart: INVALID_TXN_STATE on ending the transaction), or get stuck:
                    // replace it as when fenced, instead of ending the stage.
                    Err(a) if is_fatal(&a) || is_stuck(&a) => {
                        warn!(error = %a, "abort failed");
                        a
                    }
                    Err(a) => return Recovery::Fatal(a),
                }
            }
        };
        if !self.reincarnations.allow() {
            error!(error = %cause, limit = Reincarnations::MAX, "fatal transaction error again: stopping the stage");
            return Recovery::Fatal(cause);
        }
        warn!(error = %cause, "producer fenced, failed or stuck: opening a new incarnation");
        match reincarnate(producer, &self.producer_config, self.init_timeout()) {
            Ok(fresh) => Recovery::Reincarnated(fresh),
            Err(e) => Recovery::Fatal(e),
        }
    }
}

/// Aborts the open transaction and opens the next one.
fn abort(producer: &FutureProducer, timeout: Duration) -> Result<(), KafkaError> {
    transaction::call(producer, TransactionCall::Abort, timeout)?;
    producer.begin_transaction()
}

/// Where a commit gets the consumer's group metadata: asked when the offsets are sent, and
/// again before a retry, so that a membership that moved on meanwhile is the one that commits.
pub type GroupMetadata<'a> = &'a (dyn Fn() -> Option<ConsumerGroupMetadata> + Send + Sync);

/// How often a batch is committed again in a new transaction after an attempt that failed in a
/// way that says nothing of the batch ([`worth_committing_again`]) before the failure counts.
const COMMIT_RETRIES: u32 = 4;

/// Sends a batch into the open transaction with the offsets it accounts for, commits it and
/// opens the next one (blocking). Returns how long the transaction took to commit.
///
/// When the group coordinator refuses the offsets because the membership the commit carried
/// is no longer current (under the `consumer` group protocol, any assignment change moves the
/// member epoch, and a commit in flight at that moment carries the old one), the transaction
/// is aborted and the same batch committed again in a new one with the current membership.
/// The partitions are still ours: a revocation waits for this commit before it is
/// acknowledged, and a member that lost them is refused again. Without the retry the stage
/// would rewind and rebuild every task from its changelog, seconds of standstill for one
/// refused request. The sequence gap that can follow an abort is retried the same way.
///
/// `writer` is the producer's transactional id: the first record of each named partition in
/// the transaction carries it ([`super::writer`]), so a next owner can fence a writer that
/// died with the transaction open.
pub fn commit<B: Batch>(
    producer: &FutureProducer,
    writer: &str,
    batch: &mut B,
    metadata: GroupMetadata<'_>,
    timeout: Duration,
) -> Result<Duration, KafkaError> {
    let started = Instant::now();
    let mut retries = 0;
    loop {
        match commit_once(producer, writer, batch, metadata, timeout) {
            Err(e) if worth_committing_again(&e) && retries < COMMIT_RETRIES => {
                retries += 1;
                if is_stale_membership(&e) {
                    warn!(error = %e, retry = retries, "offsets refused for a stale group membership: committing the batch again in a new transaction");
                } else {
                    warn!(error = %e, retry = retries, "sequence gap after an abort: committing the batch again in a new transaction");
                }
                transaction::call(producer, TransactionCall::Abort, timeout)?;
                producer.begin_transaction()?;
                // The consumer learns its new epoch from the heartbeat that moved it.
                std::thread::sleep(Duration::from_millis(50) * retries);
            }
            Err(e) => return Err(e),
            Ok(()) => break,
        }
    }
    let took = started.elapsed();
    producer.begin_transaction()?;
    Ok(took)
}

/// One attempt of [`commit`]: produce, send the offsets, commit.
fn commit_once<B: Batch>(
    producer: &FutureProducer,
    writer: &str,
    batch: &mut B,
    metadata: GroupMetadata<'_>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let mut sent = 0u64;
    let mut tagger = Tagger::new(writer);
    batch.produce(|record| {
        sent += 1;
        send_waiting(producer, tagger.tag(record))
    })?;
    if sent > 0 {
        crate::fault::point("transaction.records_sent");
    }
    let offsets = batch.offsets();
    if offsets.count() > 0 {
        let metadata = metadata().ok_or(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidGroupId,
        ))?;
        let call = TransactionCall::SendOffsets(offsets.clone(), Arc::new(metadata));
        transaction::call(producer, call, timeout)?;
        crate::fault::point("transaction.offsets_sent");
    }
    transaction::call(producer, TransactionCall::Commit, timeout)
}

/// Whether a failed attempt of [`commit`] is aborted and the same batch committed again: a
/// stale membership ([`is_stale_membership`]), or the sequence gap librdkafka reports on the
/// first records after an abort whose in-flight records it purged ("skipped sequence numbers",
/// `OUT_OF_ORDER_SEQUENCE_NUMBER`, requiring an epoch bump, which the abort does). Neither says
/// anything of the batch or of who owns the partitions, so committing it again is the same as
/// committing it once; rewinding and rebuilding every task would cost seconds for nothing.
fn worth_committing_again(e: &KafkaError) -> bool {
    is_stale_membership(e)
        || (!is_fatal(e)
            && e.rdkafka_error_code() == Some(RDKafkaErrorCode::OutOfOrderSequenceNumber))
}

/// Whether a transaction failed only because the group membership it carried is stale (a
/// generation or member epoch that moved on): abortable, and worth committing again with the
/// current one. A fatal error (fenced producer) never is.
pub fn is_stale_membership(e: &KafkaError) -> bool {
    if is_fatal(e) {
        return false;
    }
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::StaleMemberEpoch
                | RDKafkaErrorCode::RebalanceInProgress
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_that_say_nothing_of_the_batch_are_committed_again() {
        let e = |code| KafkaError::MessageProduction(code);
        assert!(worth_committing_again(&e(
            RDKafkaErrorCode::IllegalGeneration
        )));
        assert!(worth_committing_again(&e(
            RDKafkaErrorCode::StaleMemberEpoch
        )));
        assert!(worth_committing_again(&e(
            RDKafkaErrorCode::OutOfOrderSequenceNumber
        )));
        // The member lost its partitions, or the producer is finished: no retry.
        assert!(!worth_committing_again(&e(
            RDKafkaErrorCode::UnknownMemberId
        )));
        assert!(!worth_committing_again(&e(
            RDKafkaErrorCode::FencedMemberEpoch
        )));
        assert!(!worth_committing_again(&e(
            RDKafkaErrorCode::ProducerFenced
        )));
        assert!(!worth_committing_again(&e(
            RDKafkaErrorCode::MessageTimedOut
        )));
        assert!(!is_stale_membership(&e(
            RDKafkaErrorCode::OutOfOrderSequenceNumber
        )));
    }
}
