//! The stages' changelog topics: creating them, and reading partitions back into state.
//!
//! The record formats are the core's (the join's [`driftwatch_core::join::changelog`], the
//! monitor's [`driftwatch_core::monitor::snapshot`]); this module moves them. Restore reads each
//! assigned partition from its start (or, for a join task resumed from its local store, from
//! the store's checkpoint offset) to its end as a `read_committed` consumer sees it, so
//! records of an aborted transaction are never restored. A partition is restored before any of
//! its input is processed.
//!
//! A restore of partitions its stage now owns ([`ChangelogReader::fencing`]) reads to the high
//! watermark, not just to the last stable offset (which is all a `read_committed` client's
//! watermarks give): a previous owner killed mid-transaction leaves a transaction open (until
//! its transactional id is reused, which aborts it at once, or the broker times it out), and
//! records another owner committed after it stay invisible until then. Stopping at the last
//! stable offset would miss them while the committed input offsets already count them as done.
//! So the reader goes on until its position reaches the high watermark, and after
//! [`FENCE_AFTER`] at a transaction still open it fences the transaction's writer, which aborts
//! it at once ([`crate::runtime::writer`]). Other reads (the retrain history, the sources'
//! state) stop at the last stable offset: what is committed when they start.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use driftwatch_core::join::changelog::ChangelogReplay;
use driftwatch_core::join::JoinTask;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::info;

use crate::clients::{consumer_config, create_topics, TopicSpec};
use crate::error::kafka_error_is_retryable;
use crate::error::{Result, WorkerError};
use crate::runtime::writer::Fencer;
use crate::settings::Settings;

/// How long a restore stays at a partition's visible end below its high watermark before it
/// fences the open transaction's writer: far longer than a live commit's markers take to be
/// written (milliseconds), far shorter than the broker's own abort of a dead writer's
/// transaction (`transaction.timeout.ms` plus its abort sweep, 10–20 s by default).
pub const FENCE_AFTER: Duration = Duration::from_secs(1);

/// How long apart [`ChangelogReader::settled_end_offsets`] asks twice.
const SETTLE_STEP: Duration = Duration::from_millis(50);
/// Longest [`ChangelogReader::settled_end_offsets`] asks again.
const SETTLE_WAIT: Duration = Duration::from_secs(1);

/// Creates a stage's changelog topic (compacted, `partitions` partitions) when it does not
/// exist, and checks that an existing one has as many partitions as the stage's input.
/// `setting` names the key that overrides the topic's name, for the error message.
pub async fn ensure_changelog(
    settings: &Settings,
    topic: String,
    partitions: usize,
    setting: &str,
) -> Result<()> {
    create_topics(
        &settings.kafka,
        &[TopicSpec {
            name: topic.clone(),
            partitions: i32::try_from(partitions).unwrap_or(i32::MAX),
            configs: changelog_configs(),
        }],
    )
    .await?;
    let probe = crate::topics::TopicChecker::new(&settings.kafka, Duration::from_secs(10))?;
    let found = probe.partitions(&topic)?;
    if found != partitions {
        return Err(WorkerError::Config(format!(
            "the changelog `{topic}` has {found} partitions but its stage's input has {partitions}: each input partition needs its own (delete the changelog to have it re-created, or set {setting})"
        )));
    }
    Ok(())
}

/// Topic configuration of a changelog: compacted; 64 MiB segments (instead of 1 GiB) so the
/// cleaner gets closed segments to compact soon and a restore reads about one record per live
/// entry rather than the whole history; tombstones kept a day so a restore that started before
/// a delete still sees it.
pub fn changelog_configs() -> Vec<(String, String)> {
    vec![
        ("cleanup.policy".into(), "compact".into()),
        ("segment.bytes".into(), "67108864".into()),
        ("min.cleanable.dirty.ratio".into(), "0.25".into()),
        ("delete.retention.ms".into(), "86400000".into()),
        ("min.compaction.lag.ms".into(), "0".into()),
    ]
}

/// Sums over one stage's changelog restores.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RestoreTotals {
    pub restores: u64,
    /// Partitions resumed from their local store.
    pub resumed: u64,
    pub records: u64,
    pub bytes: u64,
    pub entries: u64,
    pub seconds: f64,
}

/// Where one partition's restore starts (see [`ChangelogReader::restore`]).
#[derive(Debug)]
pub struct RestoreStart {
    /// The task the changelog is replayed into: new, or resumed from its local store.
    pub task: JoinTask,
    /// The changelog offset the task already reflects (`None`: replay from the start).
    pub from: Option<i64>,
}

/// What one restore read.
#[derive(Debug, Default)]
pub struct Restored {
    /// One task per partition, ready to process.
    pub tasks: BTreeMap<i32, JoinTask>,
    /// Partitions resumed from their local store (only the changelog's tail replayed).
    pub resumed: u64,
    /// Changelog records replayed.
    pub records: u64,
    pub bytes: u64,
    /// Buffer entries once restored (pending and tombstones).
    pub entries: u64,
    pub elapsed: Duration,
}

/// The restore consumer's context: end-of-partition is how a restore knows it is done, not an
/// error worth a log line.
pub struct RestoreContext;

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF);
        if !eof {
            tracing::warn!(error = %error, reason, "changelog reader");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RestoreContext {}

/// What reading changelog partitions to their end took.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadTotals {
    pub records: u64,
    /// Key and value bytes.
    pub bytes: u64,
    pub elapsed: Duration,
}

/// Reads changelog partitions (assigned, never subscribed: no group membership).
pub struct ChangelogReader {
    consumer: BaseConsumer<RestoreContext>,
    topic: String,
    /// Longest wait for an abandoned transaction to be aborted.
    open_transaction_wait: Duration,
    /// Fences the writer of a transaction left open ([`Self::fencing`]); `None` waits for
    /// the broker to abort it.
    fencer: Option<Fencer>,
    /// Connection settings of the reader (for the fencer's one-record read).
    consumer_config: rdkafka::ClientConfig,
    /// A `read_uncommitted` client whose watermarks are the high watermarks (fencing readers
    /// only: the others' ends are the last stable offsets).
    ends: Option<BaseConsumer<RestoreContext>>,
}

impl ChangelogReader {
    /// A reader of the join changelog.
    pub fn new(settings: &Settings) -> Result<Self> {
        Self::of(
            settings,
            settings.join_changelog_topic(),
            &settings.kafka.join_group_id,
        )
    }

    /// A reader of the monitor changelog.
    pub fn for_monitor(settings: &Settings) -> Result<Self> {
        Self::of(
            settings,
            settings.monitor_changelog_topic(),
            &settings.monitor.group_id,
        )
    }

    /// A reader of any topic read the same way (to its committed end), e.g. the retrain
    /// history; `group` only names the client (no group membership, nothing committed).
    pub fn of(settings: &Settings, topic: String, group: &str) -> Result<Self> {
        let config = consumer_config(&settings.kafka, &format!("{group}-restore"));
        let consumer: BaseConsumer<RestoreContext> = config
            .clone()
            .set("enable.partition.eof", "true")
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "10485760")
            // A restore reads to the end and stops there: a broker holding an empty fetch
            // open for new records (500 ms by default) only delays the last step.
            .set("fetch.wait.max.ms", "10")
            .create_with_context(RestoreContext)?;
        Ok(ChangelogReader {
            consumer,
            topic,
            open_transaction_wait: settings.kafka.transaction_timeout + Duration::from_secs(10),
            fencer: None,
            consumer_config: config,
            ends: None,
        })
    }

    /// This reader restores partitions its stage now owns, whose transactional producer is
    /// configured by `producer_config`: a transaction still open in one of them belongs to a
    /// writer that lost it without giving it up (killed, or a zombie), and is fenced after
    /// [`FENCE_AFTER`] instead of waited for (see [`crate::runtime::writer`]). Never for
    /// partitions another worker may own (standbys, shared histories).
    pub fn fencing(mut self, producer_config: rdkafka::ClientConfig) -> Result<Self> {
        self.ends = Some(
            self.consumer_config
                .clone()
                .set("isolation.level", "read_uncommitted")
                .create_with_context(RestoreContext)?,
        );
        self.fencer = Some(Fencer::new(producer_config, self.consumer_config.clone()));
        Ok(self)
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The underlying client (metadata lookups).
    pub fn client(&self) -> &rdkafka::client::Client<RestoreContext> {
        self.consumer.client()
    }

    /// Replays `partitions` into their join tasks: `start` gives each partition's task (new,
    /// or resumed from its local store) and the changelog offset to replay from (`None`: the
    /// start), knowing the partition's (low, high) watermarks. Records go straight into the
    /// tasks in log order ([`ChangelogReplay`]). Fails on a malformed record (never guesses),
    /// when the end is not reached within `timeout`, or when a cold tier fails.
    pub fn restore(
        &self,
        partitions: &[i32],
        timeout: Duration,
        mut start: impl FnMut(i32, (i64, i64)) -> Result<RestoreStart>,
    ) -> Result<Restored> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut replays: HashMap<i32, ChangelogReplay> = HashMap::new();
        let mut starts = Vec::with_capacity(partitions.len());
        let mut out = Restored::default();
        for &p in partitions {
            let s = start(p, self.watermarks(p, deadline)?)?;
            if s.from.is_some() {
                out.resumed += 1;
            }
            starts.push((p, s.from));
            replays.insert(p, ChangelogReplay::new(s.task));
        }
        self.read_partitions_from(&starts, timeout, |m| {
            let Some(replay) = replays.get_mut(&m.partition()) else {
                return Ok(());
            };
            replay
                .apply(m.key().unwrap_or_default(), m.payload())
                .map_err(|e| {
                    WorkerError::State(format!(
                        "changelog `{}`[{}]@{}: {e}",
                        self.topic,
                        m.partition(),
                        m.offset()
                    ))
                })
        })?;
        for (p, replay) in replays {
            out.records += replay.records();
            out.bytes += replay.bytes();
            let task = replay.finish().map_err(|e| {
                WorkerError::State(format!(
                    "restoring `{}`[{p}] into the local store: {e}",
                    self.topic
                ))
            })?;
            out.entries += task.buffer().len() as u64;
            out.tasks.insert(p, task);
        }
        // Opening (or wiping) the stores included.
        out.elapsed = started.elapsed();
        info!(
            topic = %self.topic,
            partitions = ?partitions,
            resumed = out.resumed,
            records = out.records,
            bytes = out.bytes,
            entries = out.entries,
            seconds = out.elapsed.as_secs_f64(),
            "join state restored"
        );
        Ok(out)
    }

    /// The high watermark of `partition`: the offset after everything written to it so far.
    pub fn end_offset(&self, partition: i32, timeout: Duration) -> Result<i64> {
        Ok(self.watermarks(partition, Instant::now() + timeout)?.1)
    }

    /// [`Self::end_offset`] of each of `partitions` right after a commit, once settled: the
    /// same answer twice [`SETTLE_STEP`] apart (asking again for at most [`SETTLE_WAIT`]).
    /// The reader is `read_committed`, so the end it gets is the last stable offset, and a
    /// commit returns before the transaction's markers are written to the partitions: asked
    /// at once, the end can still be the first offset of the transaction just committed. An
    /// end taken too early is safe (a resume replays that transaction's records again, which
    /// leaves the same state), only longer. A partition whose end is not known is left out.
    pub fn settled_end_offsets(
        &self,
        partitions: &[i32],
        timeout: Duration,
    ) -> Vec<(i32, Result<i64>)> {
        let deadline = Instant::now() + SETTLE_WAIT;
        let mut ends: Vec<(i32, Result<i64>)> = partitions
            .iter()
            .map(|&p| (p, self.end_offset(p, timeout)))
            .collect();
        let mut settled = vec![false; ends.len()];
        while settled.iter().any(|s| !s) && Instant::now() < deadline {
            std::thread::sleep(SETTLE_STEP);
            for ((p, end), done) in ends.iter_mut().zip(settled.iter_mut()) {
                if *done {
                    continue;
                }
                let now = self.end_offset(*p, timeout);
                *done = match (&*end, &now) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => now.is_err(),
                };
                *end = now;
            }
        }
        ends
    }

    /// Reads `partitions` from their start to their end: [`Self::read_partitions_from`] from
    /// the start of each.
    pub fn read_partitions(
        &self,
        partitions: &[i32],
        timeout: Duration,
        apply: impl FnMut(&BorrowedMessage<'_>) -> Result<()>,
    ) -> Result<ReadTotals> {
        let starts: Vec<(i32, Option<i64>)> = partitions.iter().map(|&p| (p, None)).collect();
        self.read_partitions_from(&starts, timeout, apply)
    }

    /// Reads partitions from an offset (`None`: their start) to their end (see the module
    /// docs), handing each record to `apply`; stops at `apply`'s first error or when the end
    /// is not reached within `timeout`.
    pub fn read_partitions_from(
        &self,
        starts: &[(i32, Option<i64>)],
        timeout: Duration,
        mut apply: impl FnMut(&BorrowedMessage<'_>) -> Result<()>,
    ) -> Result<ReadTotals> {
        let partitions: Vec<i32> = starts.iter().map(|(p, _)| *p).collect();
        let started = Instant::now();
        let deadline = started + timeout;
        let mut totals = ReadTotals::default();
        let mut tpl = TopicPartitionList::new();
        let mut remaining = 0usize;
        for &(p, from) in starts {
            let (low, _) = self.watermarks(p, deadline)?;
            let high = self.end(p, deadline)?;
            if high > from.unwrap_or(low).max(low) {
                let offset = from.map_or(Offset::Beginning, Offset::Offset);
                tpl.add_partition_offset(&self.topic, p, offset)?;
                remaining += 1;
            }
        }
        if remaining > 0 {
            self.consumer.assign(&tpl)?;
        }
        let mut done: Vec<i32> = Vec::new();
        let mut waiting: HashMap<i32, Instant> = HashMap::new();
        let mut fenced: Vec<i32> = Vec::new();
        let mut last_check = Instant::now();
        let mut waited = false;
        while done.len() < remaining {
            if started.elapsed() > timeout {
                let _ = self.consumer.unassign();
                return Err(WorkerError::State(format!(
                    "restoring `{}` partitions {partitions:?} did not finish within {timeout:?}",
                    self.topic
                )));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    totals.records += 1;
                    totals.bytes += (m.key_len() + m.payload_len()) as u64;
                    if let Err(e) = apply(&m) {
                        let _ = self.consumer.unassign();
                        return Err(e);
                    }
                    crate::fault::point("restore.record");
                }
                Some(Err(KafkaError::PartitionEOF(p))) if !done.contains(&p) => {
                    waiting.entry(p).or_insert_with(Instant::now);
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic = %self.topic, "reading the changelog")
                }
                None => {}
            }
            // A partition at its visible end is done once that end is the high watermark; an
            // abort marker may move it there without another end-of-partition event, so the
            // check repeats.
            if !waiting.is_empty() && last_check.elapsed() >= Duration::from_millis(100) {
                last_check = Instant::now();
                let positions = self.consumer.position()?;
                let mut finished = Vec::new();
                for (&p, since) in &waiting {
                    let high = self.end(p, deadline)?;
                    let position = position_of(&positions, &self.topic, p).unwrap_or(-1);
                    if position >= high {
                        finished.push(p);
                    } else if since.elapsed() > FENCE_AFTER
                        && position >= 0
                        && !fenced.contains(&p)
                        && self.fencer.is_some()
                    {
                        fenced.push(p);
                        self.fence_open(p, position);
                    } else if since.elapsed() > self.open_transaction_wait {
                        return Err(WorkerError::State(format!(
                            "changelog `{}`[{p}] stays at {position} below its end {high} for {:?}: a transaction is still open",
                            self.topic, self.open_transaction_wait
                        )));
                    } else {
                        waited = true;
                    }
                }
                for p in finished {
                    waiting.remove(&p);
                    done.push(p);
                }
            }
        }
        if remaining > 0 {
            self.consumer.unassign()?;
        }
        if waited {
            info!(topic = %self.topic, "changelog restore waited for an abandoned transaction to end");
        }
        totals.elapsed = started.elapsed();
        Ok(totals)
    }

    /// Fences the writer of the transaction open at `offset` of partition `p` (once per
    /// partition and restore) when it is another stage's and still open once its name was
    /// read; a failure only leaves the restore waiting for the broker.
    fn fence_open(&self, p: i32, offset: i64) {
        let Some(fencer) = &self.fencer else {
            return;
        };
        let started = Instant::now();
        let timeout = Duration::from_secs(10);
        let fenced = fencer
            .open_writer(&self.topic, p, offset, timeout)
            .and_then(|writer| match writer {
                // Its transaction ended meanwhile (the last stable offset moved on): nothing to
                // fence.
                Some(_) if self.watermarks(p, Instant::now() + timeout)?.1 > offset => Ok(None),
                Some(w) => fencer.fence(&w, timeout).map(|()| Some(w)),
                None => Ok(None),
            });
        match fenced {
            Ok(Some(writer)) => info!(
                topic = %self.topic,
                partition = p,
                offset,
                writer,
                seconds = started.elapsed().as_secs_f64(),
                "fenced the writer of a transaction left open in a partition this stage now owns"
            ),
            Ok(None) => {
                info!(topic = %self.topic, partition = p, offset, "no other writer's transaction to fence: waiting for the end")
            }
            Err(e) => {
                tracing::warn!(error = %e, topic = %self.topic, partition = p, offset, "fencing the open transaction's writer failed: waiting for it to end")
            }
        }
    }

    /// For `partitions` this stage now owns whose committed input offsets stay pending (a
    /// transaction left open by their previous owner holds them, with no record in this
    /// changelog to name it): fences the last writer of each that is another stage's, each
    /// writer once (see [`crate::runtime::writer`]). A fencing reader only; returns how many
    /// were fenced, failures only logged (the group's answer then waits for the broker).
    pub fn fence_last_writers(&self, partitions: &[i32]) -> usize {
        let Some(fencer) = &self.fencer else {
            return 0;
        };
        let timeout = Duration::from_secs(10);
        let mut fenced: Vec<String> = Vec::new();
        for &p in partitions {
            let started = Instant::now();
            match fencer.last_writer(&self.topic, p, timeout) {
                Ok(Some(w)) if fenced.contains(&w) => {}
                Ok(Some(w)) => match fencer.fence(&w, timeout) {
                    Ok(()) => {
                        info!(topic = %self.topic, partition = p, writer = %w, seconds = started.elapsed().as_secs_f64(), "fenced the last writer of a partition whose committed offsets stay pending");
                        fenced.push(w);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, topic = %self.topic, partition = p, writer = %w, "fencing the last writer failed: waiting for its transaction to end")
                    }
                },
                Ok(None) => {
                    info!(topic = %self.topic, partition = p, "no other stage named as the partition's last writer: waiting for the committed offsets")
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = %self.topic, partition = p, "the partition's last writer is unknown: waiting for the committed offsets")
                }
            }
        }
        fenced.len()
    }

    /// Where reading `partition` ends: its high watermark for a fencing reader, else its last
    /// stable offset.
    fn end(&self, partition: i32, deadline: Instant) -> Result<i64> {
        match &self.ends {
            Some(c) => Ok(watermarks_of(c, &self.topic, partition, deadline)?.1),
            None => Ok(self.watermarks(partition, deadline)?.1),
        }
    }

    /// A partition's low and high watermarks, as a `read_committed` client sees them: the
    /// high one is the last stable offset. A broker that is down or restarting (its
    /// errors are retryable) is asked again until `deadline`: a restore that happens to run
    /// during an outage waits for the broker instead of failing the stage. Before asking
    /// again the topic's metadata is fetched afresh: the client's cache may still hold the
    /// topic as it was before the stage created it ("Local: Unknown partition"), and would
    /// keep it until its periodic refresh, minutes later.
    fn watermarks(&self, partition: i32, deadline: Instant) -> Result<(i64, i64)> {
        watermarks_of(&self.consumer, &self.topic, partition, deadline)
    }
}

/// [`ChangelogReader::watermarks`] asked of `consumer`.
fn watermarks_of(
    consumer: &BaseConsumer<RestoreContext>,
    topic: &str,
    partition: i32,
    deadline: Instant,
) -> Result<(i64, i64)> {
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(w) => return Ok(w),
            Err(e) if kafka_error_is_retryable(&e) && Instant::now() < deadline => {
                tracing::warn!(error = %e, topic, partition, "changelog watermarks not available yet; asking again");
                std::thread::sleep(Duration::from_millis(500));
                // Errors here are the same outage; the next attempt reports them.
                let _ = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A consumer's position in `topic`'s partition `partition`, from [`Consumer::position`]'s
/// list; `None` when it has none yet (nothing fetched).
pub fn position_of(positions: &TopicPartitionList, topic: &str, partition: i32) -> Option<i64> {
    match positions.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}
