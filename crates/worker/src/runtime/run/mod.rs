//! The loop of a stage, written once: it owns the consumer, the producer and the stage, reads
//! records, ticks, commits, recovers and answers rebalances (see the module docs of
//! [`crate::runtime`]). The rebalance hand-off's side of the loop is in [`rebalance`].

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, TopicPartitionList};
use tracing::{debug, error, info, warn, Instrument};

use super::at_least_once::{self, Flushed};
use super::commit_thread::CommitThread;
use super::context::StageContext;
use super::eos::{self, Commits, Recovery};
use super::transaction::{self, blocking, rewind_to_committed};
use super::{now_ms, Batch, Guarantee, InputPartition, Stage, JOIN_POLL, PUBLISH_EVERY};
use crate::error::Result;

mod rebalance;

use rebalance::leave;

/// Records taken from the consumer's queue per pass of the loop at most, so that ticks
/// (commits, flushes) and shutdown are not kept waiting: about a millisecond of work.
const BURST: usize = 512;

/// When a stage's loop does what.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Names the stage in logs and its commit thread (`<name>-commit`).
    pub name: &'static str,
    /// The subscription; [`InputPartition::topic`] indexes it.
    pub topics: Vec<String>,
    /// How often [`Stage::on_tick`] runs.
    pub tick: Duration,
    /// How often a commit starts (checked on ticks; at most one per tick).
    pub commit_every: Duration,
}

/// The Kafka clients of a stage and how its work becomes final: everything its loop needs
/// besides the stage itself.
pub struct Shell {
    consumer: Arc<StreamConsumer<StageContext>>,
    producer: FutureProducer,
    guarantee: Guarantee,
    schedule: Schedule,
}

impl Shell {
    /// `producer_config` is transactional for [`Guarantee::ExactlyOnce`].
    pub fn new(
        consumer: StreamConsumer<StageContext>,
        producer_config: &ClientConfig,
        guarantee: Guarantee,
        schedule: Schedule,
    ) -> Result<Self> {
        Ok(Shell {
            consumer: Arc::new(consumer),
            producer: producer_config.create()?,
            guarantee,
            schedule,
        })
    }

    /// The stage's consumer (metadata look-ups before the loop starts).
    pub fn consumer(&self) -> &StreamConsumer<StageContext> {
        &self.consumer
    }

    /// Runs `stage` until `shutdown` resolves, then commits what it did and leaves the group.
    pub async fn run<S: Stage>(self, stage: S, shutdown: impl Future<Output = ()>) -> Result<()> {
        // Everything the loop logs names its stage: two stages share one process's log.
        let span = tracing::info_span!("stage", stage = self.schedule.name);
        self.run_in(stage, shutdown).instrument(span).await
    }

    async fn run_in<S: Stage>(self, stage: S, shutdown: impl Future<Output = ()>) -> Result<()> {
        let background = match &self.guarantee {
            Guarantee::ExactlyOnce(eos) => match eos.commits {
                Commits::Background { flush_interval } => Some(CommitThread::new(
                    format!("{}-commit", self.schedule.name),
                    flush_interval,
                )),
                Commits::Inline => None,
            },
            Guarantee::AtLeastOnce => None,
        };
        let mut l = Loop {
            consumer: self.consumer,
            producer: self.producer,
            guarantee: self.guarantee,
            schedule: self.schedule,
            stage,
            background,
            flushing: None,
            paused: HashSet::new(),
            seeks: Vec::new(),
            last_publish: Instant::now(),
        };
        let result = l.start_and_drive(shutdown).await;
        if let Err(e) = &result {
            error!(error = %e, "the stage stops on an error");
        }
        if let Some(thread) = &mut l.background {
            // Only after an error: a commit still running is awaited before the producer goes.
            let _ = blocking(|| thread.finish(true));
        }
        leave(l.consumer.clone()).await;
        // librdkafka's own flush: rust-rdkafka's would poll in steps of 100 ms.
        let _ = transaction::flush(&l.producer, Duration::from_secs(10));
        l.stage.stopped();
        l.stage.publish();
        result
    }
}

type Outcome<S> = <<S as Stage>::Batch as Batch>::Outcome;

/// A failed commit: the outcome of its batch (when there was one) and why.
type Failure<S> = (Option<Outcome<S>>, KafkaError);

struct Loop<S: Stage> {
    consumer: Arc<StreamConsumer<StageContext>>,
    producer: FutureProducer,
    guarantee: Guarantee,
    schedule: Schedule,
    stage: S,
    /// Exactly-once with [`Commits::Background`].
    background: Option<CommitThread<Outcome<S>>>,
    /// At-least-once: the flush awaiting its deliveries (one at a time, so offsets never move
    /// backwards).
    flushing: Option<tokio::task::JoinHandle<Flushed<Outcome<S>>>>,
    paused: HashSet<InputPartition>,
    /// Seeks the stage asked for that have not succeeded yet ([`Stage::take_seeks`]).
    seeks: Vec<(InputPartition, i64)>,
    last_publish: Instant,
}

impl<S: Stage> Loop<S> {
    async fn start_and_drive(&mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        if let Guarantee::ExactlyOnce(eos) = &self.guarantee {
            eos.begin(&self.producer)?;
        }
        blocking(|| self.stage.started())?;
        tokio::pin!(shutdown);
        while !self.stage.ready_to_join() {
            tokio::select! {
                _ = &mut shutdown => {
                    info!(stage = self.schedule.name, "shutting down before joining the group");
                    return Ok(());
                }
                _ = tokio::time::sleep(JOIN_POLL) => {}
            }
        }
        let context = self.consumer.context().clone();
        // Rebalances go to this loop from here on; when it ends (returns or unwinds), the
        // callback answers them itself again and whatever is still queued is answered.
        let _hand_off = context.hand_off(self.consumer.clone());
        let topics: Vec<&str> = self.schedule.topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics)?;
        self.drive(&context, &mut shutdown).await?;
        info!(stage = self.schedule.name, "shutting down: committing");
        self.finish().await;
        Ok(())
    }

    async fn drive(
        &mut self,
        context: &StageContext,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let consumer = self.consumer.clone();
        let mut tick = tokio::time::interval(self.schedule.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit = Instant::now();
        // One stream for the loop's life: `recv` would register and drop a waker per record.
        let mut records = consumer.stream();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => return Ok(()),
                _ = context.rebalanced() => self.rebalance(context).await?,
                // Before the records: under a steady backlog they are always ready, and the
                // ticks (statistics, commits, resumes) must still come on time.
                _ = tick.tick() => {
                    if let Some(s) = context.take_statistics() {
                        self.stage.on_statistics(&s);
                    }
                    let resumable = self.stage.on_tick(now_ms(), &self.paused);
                    self.seek_back();
                    for p in resumable {
                        if self.seeks.iter().any(|(s, _)| *s == p) {
                            continue;
                        }
                        self.set_paused(p, false);
                        self.paused.remove(&p);
                    }
                    let due = self.schedule.commit_every <= self.schedule.tick
                        || last_commit.elapsed() >= self.schedule.commit_every;
                    self.commit(due).await?;
                    if due {
                        last_commit = Instant::now();
                    }
                    if self.last_publish.elapsed() >= PUBLISH_EVERY {
                        self.publish();
                    }
                }
                first = records.next() => {
                    // The records already fetched are taken in one burst, with one clock read:
                    // a pass through this `select!` and a clock read per record were about a
                    // fifth of the loop's time in a catch-up (docs/perf-log.md, 2026-12-07).
                    let now = now_ms();
                    let mut next = first;
                    for taken in 1.. {
                        match next {
                            Some(Ok(m)) => self.take(context, &m, now).await?,
                            Some(Err(e)) => {
                                warn!(stage = self.schedule.name, error = %e, "consumer error");
                            }
                            None => break,
                        }
                        if taken == BURST {
                            break;
                        }
                        match records.next().now_or_never() {
                            Some(n) => next = n,
                            None => break,
                        }
                    }
                }
            }
        }
    }

    /// Hands one record to the stage (after a rebalance queued ahead of it, if any) and
    /// pauses its partition when the stage asks.
    async fn take(
        &mut self,
        context: &StageContext,
        m: &BorrowedMessage<'_>,
        now: i64,
    ) -> Result<()> {
        if context.has_pending() {
            // Queued behind a rebalance: handled after it, if still ours.
            self.rebalance(context).await?;
            if !self.holds(m) {
                return Ok(());
            }
        }
        if let Some(p) = self.stage.on_record(m, now) {
            if self.paused.insert(p) {
                self.set_paused(p, true);
            }
        }
        Ok(())
    }

    fn publish(&mut self) {
        self.stage.publish();
        self.last_publish = Instant::now();
    }

    /// Whether the record's partition is still assigned.
    fn holds(&self, m: &BorrowedMessage<'_>) -> bool {
        self.consumer
            .assignment()
            .is_ok_and(|a| a.find_partition(m.topic(), m.partition()).is_some())
    }

    /// Moves the consumer back to the offsets the stage asked for; a seek that fails is tried
    /// again at the next tick (its partition stays paused meanwhile).
    fn seek_back(&mut self) {
        let mut seeks = std::mem::take(&mut self.seeks);
        seeks.extend(self.stage.take_seeks());
        for (p, offset) in seeks {
            let Some(topic) = self.schedule.topics.get(p.topic) else {
                continue;
            };
            let at = rdkafka::Offset::Offset(offset);
            match self
                .consumer
                .seek(topic, p.partition, at, Duration::from_secs(5))
            {
                Ok(()) => debug!(topic, partition = p.partition, offset, "read again from"),
                Err(e) => {
                    warn!(error = %e, topic, partition = p.partition, offset, "seek failed: tried again");
                    self.seeks.push((p, offset));
                }
            }
        }
    }

    fn set_paused(&self, p: InputPartition, pause: bool) {
        let Some(topic) = self.schedule.topics.get(p.topic) else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, p.partition);
        let r = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = r {
            debug!(error = %e, topic, partition = p.partition, pause, "pause/resume");
        }
    }

    fn timeout(&self) -> Duration {
        match &self.guarantee {
            Guarantee::ExactlyOnce(eos) => eos.timeout,
            Guarantee::AtLeastOnce => Duration::from_secs(10),
        }
    }

    // ---- commits -------------------------------------------------------------------------

    /// The periodic commit (`due`: one should start now).
    async fn commit(&mut self, due: bool) -> Result<()> {
        match &self.guarantee {
            Guarantee::ExactlyOnce(eos) if eos.commits == Commits::Inline => {
                if due {
                    self.stage.check()?;
                    if let Err((outcome, e)) = self.commit_now() {
                        self.recover(outcome, e)?;
                    }
                }
                Ok(())
            }
            Guarantee::ExactlyOnce(_) => self.commit_in_background(due),
            Guarantee::AtLeastOnce => {
                if due {
                    self.stage.check()?;
                }
                self.flush_in_background(due).await;
                Ok(())
            }
        }
    }

    /// Reports a background commit that finished (recovering when it failed) and starts the
    /// next one when `start`. Nothing is produced into the next transaction before it opens:
    /// the stage keeps what it has to write until its next batch.
    fn commit_in_background(&mut self, start: bool) -> Result<()> {
        let Some(thread) = &mut self.background else {
            return Ok(());
        };
        if let Some(finished) = thread.finish(false) {
            match (finished.result, finished.outcome) {
                (Ok(took), Some(outcome)) => self.stage.committed(outcome, took),
                (Ok(_), None) => {}
                (Err(e), outcome) => return self.recover(outcome, e),
            }
        }
        let timeout = self.timeout();
        let Some(thread) = &mut self.background else {
            return Ok(());
        };
        if start && !thread.busy() {
            self.stage.check()?;
            let writer = match &self.guarantee {
                Guarantee::ExactlyOnce(eos) => eos.writer(),
                Guarantee::AtLeastOnce => Arc::from(""),
            };
            let Some(thread) = &mut self.background else {
                return Ok(());
            };
            let batch = self.stage.take_batch();
            let consumer = self.consumer.clone();
            let metadata = Arc::new(move || consumer.group_metadata());
            if let Err(e) = thread.start(self.producer.clone(), writer, batch, metadata, timeout) {
                // The batch went with the thread that never ran: redo its work.
                error!(error = %e, "commit thread not started: aborting the transaction");
                return self.recover(None, KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
            }
        }
        Ok(())
    }

    /// Exactly-once: commits everything done so far before returning (inline commits, a
    /// revoke, shutdown), after the commit in flight, if any.
    fn commit_now(&mut self) -> Result<(), Failure<S>> {
        if let Some(thread) = &mut self.background {
            if let Some(finished) = blocking(|| thread.finish(true)) {
                match (finished.result, finished.outcome) {
                    (Ok(took), Some(outcome)) => self.stage.committed(outcome, took),
                    (Ok(_), None) => {}
                    (Err(e), outcome) => return Err((outcome, e)),
                }
            }
        }
        if let Err(e) = self.stage.check() {
            // Nothing of this stage may be committed any more: the open transaction is
            // aborted by the caller.
            error!(stage = self.schedule.name, error = %e, "not committing");
            return Err((None, KafkaError::MessageProduction(RDKafkaErrorCode::Fail)));
        }
        let mut batch = self.stage.take_batch();
        let consumer = &self.consumer;
        let metadata = move || consumer.group_metadata();
        let timeout = self.timeout();
        let producer = &self.producer;
        let writer = match &self.guarantee {
            Guarantee::ExactlyOnce(eos) => eos.writer(),
            Guarantee::AtLeastOnce => Arc::from(""),
        };
        match blocking(|| eos::commit(producer, &writer, &mut batch, &metadata, timeout)) {
            Ok(took) => {
                if let Some(thread) = &mut self.background {
                    thread.committed_inline(took);
                }
                self.stage.committed(batch.into_outcome(), took);
                Ok(())
            }
            Err(e) => Err((Some(batch.into_outcome()), e)),
        }
    }

    /// Exactly-once, after a failed transaction: aborts it (or replaces the producer), moves
    /// the consumer back to the committed offsets and has the stage rebuild its state there,
    /// so the aborted work is done again exactly once. Only a fatal error is returned.
    fn recover(&mut self, outcome: Option<Outcome<S>>, cause: KafkaError) -> Result<()> {
        self.abort(outcome, Some(cause))?;
        let timeout = self.timeout();
        let consumer = self.consumer.as_ref();
        let committed = blocking(|| rewind_to_committed(consumer, timeout))?;
        blocking(|| self.stage.rewound())?;
        self.stage.positioned(&committed);
        self.seeks.clear();
        for p in std::mem::take(&mut self.paused) {
            self.set_paused(p, false);
        }
        self.publish();
        Ok(())
    }

    /// Aborts the open transaction (after `cause`, if any) or replaces the producer, and tells
    /// the stage.
    fn abort(&mut self, outcome: Option<Outcome<S>>, cause: Option<KafkaError>) -> Result<()> {
        let Guarantee::ExactlyOnce(eos) = &mut self.guarantee else {
            return Ok(());
        };
        let producer = &self.producer;
        let recovery = blocking(|| eos.recover(producer, cause));
        self.stage.aborted(outcome);
        match recovery {
            Recovery::Aborted => Ok(()),
            Recovery::Reincarnated(fresh) => {
                self.producer = fresh;
                Ok(())
            }
            Recovery::Fatal(e) => Err(e.into()),
        }
    }

    /// At-least-once: reports a flush that finished and starts the next when `start`.
    async fn flush_in_background(&mut self, start: bool) {
        if self.flushing.as_ref().is_some_and(|f| f.is_finished()) {
            if let Some(f) = self.flushing.take() {
                self.flushed(f.await.ok());
            }
        }
        if start && self.flushing.is_none() {
            let batch = self.stage.take_batch();
            let flush = at_least_once::flush(
                &self.producer,
                self.consumer.clone(),
                batch,
                CommitMode::Async,
            );
            self.flushing = Some(tokio::spawn(flush));
        }
    }

    /// At-least-once: flushes everything done so far (after the flush in flight), waiting at
    /// most `bound` for the deliveries.
    async fn flush_now(&mut self, bound: Option<Duration>) {
        if let Some(f) = self.flushing.take() {
            self.flushed(f.await.ok());
        }
        if let Err(e) = self.stage.check() {
            error!(stage = self.schedule.name, error = %e, "offsets not committed");
            return;
        }
        let batch = self.stage.take_batch();
        let flush = at_least_once::flush(
            &self.producer,
            self.consumer.clone(),
            batch,
            CommitMode::Sync,
        );
        let flushed = match bound {
            Some(b) => tokio::time::timeout(b, flush).await.ok(),
            None => Some(flush.await),
        };
        if flushed.is_none() {
            error!("records not delivered in time; offsets not committed");
        }
        self.flushed(flushed);
    }

    fn flushed(&mut self, flushed: Option<Flushed<Outcome<S>>>) {
        match flushed {
            Some(f) if f.delivered => self.stage.committed(f.outcome, f.took),
            Some(f) => self.stage.aborted(Some(f.outcome)),
            None => self.stage.aborted(None),
        }
    }

    /// Shutdown: commits (flushes) everything done so far.
    async fn finish(&mut self) {
        match &self.guarantee {
            Guarantee::ExactlyOnce(_) => match self.commit_now() {
                Ok(()) => blocking(|| self.stage.closed()),
                Err((outcome, e)) => {
                    error!(stage = self.schedule.name, error = %e, "final transaction failed; the next owner restores the last committed state");
                    if let Err(e) = self.abort(outcome, Some(e)) {
                        error!(error = %e, "final transaction not aborted");
                    }
                }
            },
            Guarantee::AtLeastOnce => self.flush_now(None).await,
        }
    }
}
