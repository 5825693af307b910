//! The stage runtime: one loop, one exactly-once cycle and one rebalance hand-off, shared by
//! the join and the monitor stage.
//!
//! A stage is its state plus the hooks of [`Stage`]; the runtime ([`Shell::run`]) owns the
//! consumer, the producer and the stage itself (by value: no lock around the stage's state),
//! and calls the hooks:
//!
//! | when | hook |
//! |---|---|
//! | a record of an assigned partition is read (the hot path) | [`Stage::on_record`] |
//! | every tick (`Schedule::tick`): time-driven work, then maybe a commit | [`Stage::on_tick`] |
//! | librdkafka's statistics arrived | [`Stage::on_statistics`] |
//! | a commit is due (`Schedule::commit_every`), a revoke, shutdown | [`Stage::check`], then [`Stage::take_batch`] |
//! | the batch's transaction committed (at-least-once: records delivered) | [`Stage::committed`] |
//! | the batch did not become final | [`Stage::aborted`] |
//! | exactly-once, after an abort: state back to the committed offsets | [`Stage::rewound`] |
//! | partitions assigned (before the consumer fetches them) | [`Stage::assigned`], [`Stage::positioned`] |
//! | exactly-once, their committed offsets still pending 1 s after the restore | [`Stage::offsets_pending`] |
//! | partitions revoked (after the open work was committed or aborted) | [`Stage::revoked`] |
//!
//! The guarantee is one type, [`Guarantee`]: exactly-once ([`eos`], rust-rdkafka's
//! transactions example with a stage's batch in the middle; committed in the loop or on a
//! thread of its own, [`commit_thread`]) or at-least-once ([`at_least_once`]: produce, await
//! delivery, commit offsets). A batch ([`Batch`]) is everything one commit carries: records,
//! input offsets, and the outcome that becomes final if it commits. It is taken by value; the
//! commit hands the outcome back and never reaches into the stage.
//!
//! # Rebalances
//! The consumer's callback does not touch the stage: it queues the rebalance and wakes the
//! loop, without answering librdkafka ([`context`]). librdkafka waits (pausing what it holds)
//! until the loop, which owns the state, has done its part and answers:
//!
//! - **revoke**: the open work is committed with its offsets (aborted when the assignment was
//!   lost), the stage drops the partitions' state, then `unassign` (eager protocol) or
//!   `incremental_unassign` (cooperative);
//! - **assign**: the stage restores the partitions' state (the changelogs, exactly-once), reads
//!   where to start (the group's committed offsets), then `assign` / `incremental_assign`.
//!
//! So no record of a partition is handed to the stage before its state is back, and none
//! after its state was dropped: librdkafka fetches a partition only once assigned, and pauses
//! the old assignment from the moment it queues a rebalance. A record read while a rebalance
//! waits is handled after it, and only if its partition is still held. The loop answers within
//! `max.poll.interval.ms` as a callback doing the same work inline would have had to.
//!
//! - [`transaction`]: retry, abort and fatal classification of transaction calls.
//! - [`writer`]: the transactional id a transaction's records name, and fencing a writer that
//!   died with its transaction open.

pub mod at_least_once;
pub mod commit_thread;
pub mod context;
pub mod eos;
mod run;
pub mod transaction;
pub mod writer;

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureRecord;
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;

pub use context::StageContext;
pub use eos::{Commits, Eos};
pub use run::{Schedule, Shell};

use crate::error::Result;

/// An input partition of a stage: the index of its topic in the stage's subscription
/// ([`Schedule::topics`]) and its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputPartition {
    pub topic: usize,
    pub partition: i32,
}

/// How a stage's work becomes final.
pub enum Guarantee {
    /// Kafka transactions: outputs, state changes and input offsets commit together.
    ExactlyOnce(Eos),
    /// Outputs awaited, then offsets committed; duplicates possible after a crash.
    AtLeastOnce,
}

impl Guarantee {
    pub fn is_exactly_once(&self) -> bool {
        matches!(self, Guarantee::ExactlyOnce(_))
    }
}

/// What one commit carries, taken from the stage at one moment (see [`Stage::take_batch`]).
pub trait Batch: Send + 'static {
    /// What becomes final when the batch commits, and what the stage gets back otherwise.
    type Outcome: Send + 'static;

    /// Next offset to read of every input partition whose work the batch holds.
    fn offsets(&self) -> &TopicPartitionList;

    /// Hands every record of the batch to `send`, in order, stopping at its first error.
    /// Runs on the committing thread: expensive encoding belongs here, not in `take_batch`.
    /// Called again after an attempt aborted for a stale group membership
    /// ([`eos::commit`]): it must hand out the same records.
    fn produce<F>(&mut self, send: F) -> Result<(), KafkaError>
    where
        F: FnMut(FutureRecord<'_, [u8], [u8]>) -> Result<(), KafkaError>;

    /// The outcome, once the records are produced (or not).
    fn into_outcome(self) -> Self::Outcome;
}

/// The hooks of a stage (see the module docs for when each is called). All run on the loop,
/// which owns the stage.
pub trait Stage: Send {
    type Batch: Batch;

    /// Once, after the producer's transactions are initialized and before the consumer
    /// subscribes.
    fn started(&mut self) -> Result<()> {
        Ok(())
    }

    /// Asked every [`JOIN_POLL`] after [`Stage::started`] until it says yes, before the
    /// consumer subscribes: a stage may prepare first (the join's standbys catch up with
    /// their changelogs). A shutdown meanwhile ends the loop without joining the group.
    fn ready_to_join(&mut self) -> bool {
        true
    }

    /// One record of an assigned partition at processing time `now_ms`. The hot path: no
    /// allocation, lock or channel per record. Returns an input partition to pause (its
    /// queue is full); [`Stage::on_tick`] says when it may resume.
    fn on_record(&mut self, msg: &BorrowedMessage<'_>, now_ms: i64) -> Option<InputPartition>;

    /// Time-driven work at processing time `now_ms`; returns the partitions of `paused` that
    /// may resume.
    fn on_tick(&mut self, now_ms: i64, paused: &HashSet<InputPartition>) -> Vec<InputPartition>;

    /// After [`Stage::on_tick`]: input partitions to read again from an offset (a record the
    /// stage could not take yet). Seeked before any of them resumes; they stay paused until
    /// the seek succeeded.
    fn take_seeks(&mut self) -> Vec<(InputPartition, i64)> {
        Vec::new()
    }

    /// The consumer's latest statistics (when `statistics.interval.ms` is set).
    fn on_statistics(&mut self, _statistics: &Statistics) {}

    /// Before every batch is taken: an error means the stage's state can no longer be
    /// trusted (a local store failed). The loop then stops without committing anything more;
    /// the next owner restores the last committed state.
    fn check(&mut self) -> Result<()> {
        Ok(())
    }

    /// Everything done since the last batch, for one commit.
    fn take_batch(&mut self) -> Self::Batch;

    /// The batch's transaction committed (at-least-once: its records were delivered and its
    /// offsets handed to the consumer); `took`: how long that took.
    fn committed(&mut self, outcome: <Self::Batch as Batch>::Outcome, took: Duration);

    /// The batch did not become final: its transaction was aborted or died with its producer
    /// (at-least-once: a record was not delivered, nothing committed). `outcome` is `None`
    /// when no batch was taken (a lost assignment) or the commit thread died.
    fn aborted(&mut self, outcome: Option<<Self::Batch as Batch>::Outcome>);

    /// Exactly-once, after an abort: the consumer was moved back to the committed offsets;
    /// whatever state the aborted work changed is rebuilt as of those offsets.
    fn rewound(&mut self) -> Result<()> {
        Ok(())
    }

    /// Partitions were assigned: build (restore) their state. The consumer fetches them only
    /// after this returns.
    fn assigned(&mut self, partitions: &TopicPartitionList) -> Result<()>;

    /// Exactly-once, after [`Stage::assigned`]: the group's committed offsets of `partitions`
    /// stayed pending for [`crate::changelog::FENCE_AFTER`], held by a transaction their
    /// previous owner left open. The stage fences whoever holds it if it can tell (see
    /// [`writer`]); the loop then asks again and waits.
    fn offsets_pending(&mut self, _partitions: &TopicPartitionList) {}

    /// Where reading starts after an assignment or a rewind: the group's committed offsets
    /// (empty when unknown).
    fn positioned(&mut self, _committed: &TopicPartitionList) {}

    /// Partitions were revoked: the open work was committed, or aborted when `lost`. Drop
    /// their state.
    fn revoked(&mut self, partitions: &TopicPartitionList, lost: bool);

    /// Exactly-once, at shutdown: the final transaction committed everything the stage did;
    /// nothing more will be processed.
    fn closed(&mut self) {}

    /// Publishes what the stage's handle reads (called on ticks, at most every
    /// [`PUBLISH_EVERY`], after rebalances and at the end).
    fn publish(&mut self) {}

    /// The loop ended.
    fn stopped(&mut self) {}
}

/// How often [`Stage::ready_to_join`] is asked.
pub const JOIN_POLL: Duration = Duration::from_millis(100);

/// Least time between two [`Stage::publish`] calls on ticks.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// Processing time, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The partition numbers of `tpl`, sorted, each once (for logs and per-partition hooks).
pub fn partition_numbers(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut p: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    p.sort_unstable();
    p.dedup();
    p
}
