//! What one commit of the join carries ([`CommitBatch`]) and what becomes final when it
//! commits ([`CommitOutcome`]).
//!
//! A batch is taken from the state at one moment, in the loop, and is then the commit's
//! alone (exactly-once: on the commit thread):
//!
//! 1. `join.misrouted = "repartition"`: the misrouted records re-published to the
//!    repartition topic ([`super::repartition`]); then the dead letters of the interval;
//! 2. the partials of every task, keyed by model id — only taken from the aggregators here;
//!    their signatures are folded and serialized, and the partials Avro-encoded, by the
//!    committing thread; then one progress record ([`crate::join_progress`]) per partials
//!    partition with every task's watermark, after the partials it vouches for;
//! 3. exactly-once: per task, the changelog records of its state changes
//!    ([`driftwatch_core::join::changelog`]) — only swapped out of the task here, sorted and
//!    encoded by the committing thread, so a key changed many times is written once;
//! 4. the input offsets: per input partition, the oldest record still queued in its task (or
//!    the next to read), see [`super::partition`].
//!
//! The outcome holds each task's counters as of the batch and the interval's rejection
//! counts: once the batch commits they are what survives an abort.
//!
//! A batch can be produced twice: a transaction refused for a stale group membership is
//! committed again with the same batch ([`crate::runtime::eos::commit`]). So the finished
//! partials are kept, and the changelog deltas are only settled in place, not consumed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use driftwatch_codec::avro::to_avro;
use driftwatch_core::join::changelog::ChangelogDelta;
use driftwatch_core::join::{ModelVersionId, UnfinishedPartials};
use driftwatch_core::{JoinCounters, ModelPartial};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tracing::error;

use super::dead_letter::{DeadLetter, PerModel, RejectedThrough};
use super::repartition::{Repartition, Republished};
use super::stage::Join;
use super::stats::record_micros;
use crate::join_progress::JoinProgress;
use crate::runtime::Batch;

/// A record for the partials topic: a partial, keyed by model id, or a progress record (see
/// [`crate::join_progress`]) for one partition.
pub(super) struct PartialsRecord {
    key: Option<String>,
    partition: Option<i32>,
    payload: Vec<u8>,
}

impl PartialsRecord {
    fn future<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, [u8], [u8]> {
        let mut r = FutureRecord::to(topic).payload(self.payload.as_slice());
        if let Some(k) = &self.key {
            r = r.key(k.as_bytes());
        }
        if let Some(p) = self.partition {
            r = r.partition(p).headers(JoinProgress::headers());
        }
        r
    }
}

/// Everything one commit carries, taken from the state at one moment.
pub(crate) struct CommitBatch {
    partials_topic: String,
    changelog_topic: String,
    dead_letter_topic: String,
    /// Misrouted records re-published to the repartition topic (`join.misrouted =
    /// "repartition"`), produced first.
    republished: Vec<Republished>,
    repartition_topic: String,
    dead_letters: Vec<DeadLetter>,
    /// Partials of every task (finished and encoded by the committing thread), then the
    /// progress records that follow them.
    partials: Vec<UnfinishedPartials>,
    finished_partials: Vec<PartialsRecord>,
    progress: Vec<PartialsRecord>,
    /// Per task partition: what its changelog partition gets (encoded by the committing thread).
    changelog: Vec<(i32, ChangelogDelta)>,
    offsets: TopicPartitionList,
    outcome: CommitOutcome,
}

/// What becomes final when a batch commits.
pub(crate) struct CommitOutcome {
    /// Per task: its counters as of the batch (exactly-once).
    counters: Vec<(i32, Vec<(ModelVersionId, JoinCounters)>)>,
    rejected: PerModel,
    rejected_through: RejectedThrough,
    /// Counted by the committing thread as it writes them, as are the next two.
    partials: usize,
    /// Signatures that could not be serialized (their partials go out without one).
    signature_errors: u64,
    changelog_records: usize,
    /// Copies re-published per target partition.
    republished: Vec<(i32, usize)>,
}

impl Batch for CommitBatch {
    type Outcome = CommitOutcome;

    fn offsets(&self) -> &TopicPartitionList {
        &self.offsets
    }

    fn produce<F>(&mut self, mut send: F) -> Result<(), KafkaError>
    where
        F: FnMut(FutureRecord<'_, [u8], [u8]>) -> Result<(), KafkaError>,
    {
        for r in &self.republished {
            send(r.future(&self.repartition_topic))?;
        }
        for d in &self.dead_letters {
            let mut record =
                FutureRecord::<[u8], [u8]>::to(&self.dead_letter_topic).headers(d.headers.clone());
            if let Some(k) = &d.key {
                record = record.key(k.as_slice());
            }
            if let Some(p) = &d.payload {
                record = record.payload(p.as_slice());
            }
            send(record)?;
            crate::fault::point("dead_letter.sent");
        }
        self.finish_partials();
        for r in &self.finished_partials {
            send(r.future(&self.partials_topic))?;
        }
        for r in &self.progress {
            send(r.future(&self.partials_topic))?;
        }
        // The changes are sorted and encoded here, on the committing thread, not in the loop.
        self.outcome.changelog_records = 0;
        for (partition, delta) in &mut self.changelog {
            let partition = *partition;
            let mut sent = Ok(());
            self.outcome.changelog_records += delta.for_each_record(|key, value| {
                if sent.is_err() {
                    return;
                }
                let mut record = FutureRecord::<[u8], [u8]>::to(&self.changelog_topic)
                    .partition(partition)
                    .key(key);
                if let Some(v) = value {
                    record = record.payload(v);
                }
                sent = send(record);
            });
            sent?;
        }
        Ok(())
    }

    fn into_outcome(self) -> CommitOutcome {
        self.outcome
    }
}

impl CommitBatch {
    /// Folds, serializes and encodes the partials, once: on the committing thread, not in the
    /// loop; a batch produced again (a retried transaction) sends the same records.
    fn finish_partials(&mut self) {
        for unfinished in std::mem::take(&mut self.partials) {
            let (partials, errors) = unfinished.finish();
            self.outcome.signature_errors += errors;
            for partial in partials {
                match to_avro::<ModelPartial>(&partial) {
                    Ok(payload) => self.finished_partials.push(PartialsRecord {
                        key: Some(partial.model_id),
                        partition: None,
                        payload,
                    }),
                    Err(e) => error!(error = %e, "partial not encodable"),
                }
            }
        }
        self.outcome.partials = self.finished_partials.len();
    }
}

impl Join {
    /// Exactly-once: partials, changelog deltas, dead letters and offsets of every task, for
    /// one transaction.
    pub(super) fn take_transaction_batch(&mut self) -> CommitBatch {
        let (partials, progress) = self.take_partials();
        let changelog = self
            .tasks
            .iter_mut()
            .map(|(p, t)| (*p, t.cursor.delta(&mut t.task)))
            .collect();
        let offsets = self.processed_offsets();
        let next: HashMap<(usize, i32), i64> = offsets
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((self.source_of(e.topic()), e.partition()), o)),
                _ => None,
            })
            .collect();
        let (republished, per_partition) = self
            .repartition
            .as_mut()
            .map(Repartition::take)
            .unwrap_or_default();
        let (dead_letters, rejected, rejected_through) = self.rejections.take_covered(&next);
        let outcome = CommitOutcome {
            counters: self
                .tasks
                .iter()
                .map(|(p, t)| (*p, t.task.all_counters().collect()))
                .collect(),
            rejected,
            rejected_through,
            partials: 0,
            signature_errors: 0,
            changelog_records: 0,
            republished: per_partition,
        };
        let mut batch = self.batch(
            (partials, progress),
            changelog,
            dead_letters,
            offsets,
            outcome,
        );
        batch.republished = republished;
        batch
    }

    /// At-least-once: partials, dead letters and offsets (no changelog).
    pub(super) fn take_batch_at_least_once(&mut self) -> CommitBatch {
        let partials = self.take_partials();
        let outcome = CommitOutcome {
            counters: Vec::new(),
            rejected: PerModel::new(),
            rejected_through: RejectedThrough::new(),
            partials: 0,
            signature_errors: 0,
            changelog_records: 0,
            republished: Vec::new(),
        };
        let dead_letters = std::mem::take(&mut self.rejections.letters);
        let offsets = self.processed_offsets();
        self.batch(partials, Vec::new(), dead_letters, offsets, outcome)
    }

    fn batch(
        &mut self,
        (partials, progress): (Vec<UnfinishedPartials>, Vec<PartialsRecord>),
        changelog: Vec<(i32, ChangelogDelta)>,
        dead_letters: Vec<DeadLetter>,
        offsets: TopicPartitionList,
        outcome: CommitOutcome,
    ) -> CommitBatch {
        CommitBatch {
            partials_topic: self.topics.partials.clone(),
            changelog_topic: self.topics.changelog.clone(),
            dead_letter_topic: self.topics.dead_letter.clone(),
            republished: Vec::new(),
            repartition_topic: self
                .repartition
                .as_ref()
                .map(|r| r.topic.clone())
                .unwrap_or_default(),
            dead_letters,
            partials,
            finished_partials: Vec::new(),
            progress,
            changelog,
            offsets,
            outcome,
        }
    }

    /// After a committed transaction (at-least-once: a delivered flush): what its batch
    /// counted is final.
    pub(super) fn batch_committed(&mut self, outcome: CommitOutcome, took: Duration) {
        let CommitOutcome {
            counters,
            rejected,
            rejected_through,
            partials,
            signature_errors,
            changelog_records,
            republished,
        } = outcome;
        let m = &mut self.meters;
        m.producing = true;
        m.signature_errors += signature_errors;
        if self.exactly_once {
            record_micros(&mut m.commit_micros, took);
            m.transactions_committed += 1;
            self.rejections.commit(rejected, rejected_through);
            for (p, c) in counters {
                if let Some(t) = self.tasks.get_mut(&p) {
                    t.committed = c;
                }
            }
        }
        let mut out = vec![
            (&self.topics.partials, partials),
            (&self.topics.changelog, changelog_records),
        ];
        if let Some(r) = &mut self.repartition {
            r.committed(&republished, Instant::now());
            out.push((&r.topic, republished.iter().map(|(_, n)| n).sum()));
        }
        for (topic, n) in out {
            if n > 0 {
                *m.events_out.entry(topic.clone()).or_default() += n as u64;
            }
        }
    }

    /// Partials of every task, taken from the aggregators (finished by the committing
    /// thread); then a progress record with every task's watermark for each partials partition
    /// (after the partials it vouches for).
    fn take_partials(&mut self) -> (Vec<UnfinishedPartials>, Vec<PartialsRecord>) {
        let mut partials = Vec::with_capacity(self.tasks.len());
        let mut watermarks = Vec::with_capacity(self.tasks.len());
        for (&partition, t) in &mut self.tasks {
            let watermark = t.task.watermark();
            watermarks.push((partition, watermark));
            let unfinished = t.aggregator.take(t.task.interner(), watermark);
            if !unfinished.is_empty() {
                partials.push(unfinished);
            }
        }
        let mut progress = Vec::new();
        if !watermarks.is_empty() {
            let payload = JoinProgress {
                tasks: self.join_tasks,
                watermarks,
            }
            .encode();
            for p in 0..self.partials_partitions {
                progress.push(PartialsRecord {
                    key: None,
                    partition: i32::try_from(p).ok(),
                    payload: payload.clone(),
                });
            }
        }
        (partials, progress)
    }
}
