//! The join stage runtime: one consumer group over `predictions` and `ground-truth`, one
//! [`JoinTask`] per partition pair, partials out to the monitor stage, bad input to the
//! dead-letter topic.
//!
//! Design:
//! - The consumer subscribes to both inputs with the `range` assignor, so partition *i* of both
//!   topics goes to the same member (checked at start: equal partition counts).
//! - Each message is decoded by the hand-written codec (no per-feature allocation), turned into
//!   a compact [`PredictionIn`]/[`LabelIn`] and pushed into its partition's task; the task merges
//!   both inputs in timestamp order and emits [`JoinEvent`]s, which fold into per-(model,
//!   version, bucket) [`ModelPartial`]s.
//! - While a prediction is decoded, its features are interned (per task, hinted by position
//!   since producers keep feature order stable) and staged in a buffer reused across messages;
//!   once the decoder returns the model and prediction time, they go into the
//!   `SignatureSummary` of that (model, version, bucket), with the predicted label, value and
//!   score. Each flush attaches every bucket's serialized signature to its partial. Only
//!   predictions that reach a task are summarized (dead-lettered ones are not); a duplicate
//!   prediction is summarized like any other.
//! - Every `flush_interval` the partials are produced (keyed by model id), their delivery is
//!   awaited, then the stored offsets are committed: nothing is committed before what it
//!   produced is in Kafka.
//! - Exactly-once (the default, Kafka Streams' `exactly_once_v2`): one transactional producer
//!   per worker. Each commit interval, one transaction holds the partials, the dead letters, the
//!   changelog records of every task's state change ([`driftwatch_core::join::changelog`]) and
//!   the input offsets (`send_offsets_to_transaction` with the consumer's group metadata). The
//!   offset committed for an input is that of its oldest record still waiting in the task's
//!   merge queue (or the next one when none waits): queued records are not in the state, so
//!   they are read again after a crash. A failed transaction is aborted and the tasks are
//!   rebuilt from the changelog at the committed offsets: nothing of the aborted work remains.
//! - Rebalance (exactly-once): on revocation the current transaction is committed inside the
//!   callback (aborted when the assignment was lost) and the tasks dropped; on assignment each
//!   partition's task is restored from its changelog partition, synchronously in the callback,
//!   so no record of a partition is processed before its state is back. The range assignor is
//!   eager: every rebalance revokes and restores every partition of the member.
//! - At-least-once (by configuration): partials and dead letters are awaited, then offsets
//!   committed; on revocation the partials are flushed and offsets committed inside the
//!   callback and the tasks' pending state is dropped (counted in `dropped_on_revoke`).
//! - "Caught up" per input partition comes from librdkafka's statistics (last stable offset vs.
//!   our position); it lets a task go on without waiting for an input that has nothing to give.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use driftwatch_codec::avro::to_avro;
use driftwatch_codec::fast::{
    FeatureRef, GroundTruthRef, NotUtf8, PredictionRef, PredictionVisitor,
};
use driftwatch_codec::framing::{GroundTruthDecoders, PredictionDecoders, WriterSchemas};
use driftwatch_codec::from_json_slice;
use driftwatch_codec::CodecError;
use driftwatch_core::join::changelog::{ChangelogCursor, ChangelogDelta};
use driftwatch_core::join::{
    Actual, Input, JoinEvent, JoinTask, LabelIn, ModelVersionId, PartialAggregator, Predicted,
    PredictionIn, RequestKey,
};
use driftwatch_core::summary::{FeatureId, FeatureInterner};
use driftwatch_core::{GroundTruth, JoinCounters, ModelPartial, Prediction};
use hdrhistogram::Histogram;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use thread_priority::{ThreadPriority, ThreadPriorityValue};
use tracing::{debug, error, info, warn};

use crate::changelog::{ensure_changelog, ChangelogReader, RestoreTotals};
use crate::clients::{member_config, producer_config, transactional_producer_config};
use crate::error::{Result, WorkerError};
use crate::join_progress::JoinProgress;
use crate::settings::Settings;
use crate::topics::{check_copartitioned, partition_count};
use crate::transactions::{
    blocking, is_fatal, retrying, rewind_to_committed, send_waiting, ProducerSlot, Reincarnations,
};

/// Accounting of the join stage, per (model id, model version). Inputs that could not be
/// attributed to a model are under `("unknown", "")`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinStats {
    pub per_model: BTreeMap<(String, String), JoinCounters>,
    /// Label delay of matched outcomes per model id, milliseconds: (p50, p90, p99, count).
    pub label_delay_ms: BTreeMap<String, (u64, u64, u64, u64)>,
    /// Partitions (of both inputs) currently assigned.
    pub assigned: Vec<i32>,
    /// Inputs that were pending (in the join buffer or queued) when their partition was revoked
    /// and were dropped with it.
    pub dropped_on_revoke: u64,
    /// Per partition: entries in the join buffer (pending and tombstones) and the event time of
    /// the oldest pending one.
    pub buffers: BTreeMap<i32, (u64, Option<i64>)>,
    /// Records read per topic.
    pub events_in: BTreeMap<String, u64>,
    /// Records written per topic (partials, dead letters).
    pub events_out: BTreeMap<String, u64>,
    /// Consumer lag per (topic, partition), from the client's statistics.
    pub consumer_lag: BTreeMap<(String, i32), i64>,
    /// Time to decode and join one message, microseconds.
    pub processing_micros: Option<Histogram<u64>>,
    /// Whether the last flush of partials was delivered.
    pub producing: bool,
    /// Per matched outcome: wall-clock time of the match minus the later of its prediction and
    /// label event times, ms. With producers stamping records as they send them, this is the
    /// latency from the second record's arrival to its joined outcome.
    pub outcome_lag_ms: Option<Histogram<u64>>,
    /// Per input record: wall-clock time when the stage read it minus the record's Kafka
    /// timestamp (the producer's send time), ms: the time spent in the producer, the broker and
    /// the consumer's fetch queue.
    pub input_age_ms: Option<Histogram<u64>>,
    /// Exactly-once: time the stage's loop waits while a commit's batch is taken from the
    /// state (partials serialized, changelog records collected), µs.
    pub batch_micros: Option<Histogram<u64>>,
    /// Exactly-once: time from a commit's start to its transaction committed (records sent,
    /// offsets added, commit acknowledged), µs; the stage keeps processing meanwhile.
    pub commit_micros: Option<Histogram<u64>>,
    /// Feature values of current tasks left out of signatures: the task's feature-name
    /// interner was full, or a signature could not be serialized at a flush.
    pub signature_losses: u64,
    /// Changelog restores (exactly-once): records and bytes read, entries rebuilt, and the
    /// wall-clock seconds spent, summed over every restore of this worker.
    pub restore: RestoreTotals,
    /// Transactions committed and aborted (exactly-once).
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// Whether the stage runs exactly-once.
    pub exactly_once: bool,
}

impl JoinStats {
    /// Sum over all models.
    pub fn total(&self) -> JoinCounters {
        self.per_model
            .values()
            .fold(JoinCounters::default(), |a, c| a.merged(c))
    }
}

/// A handle on a running join stage: read its accounting while it runs.
#[derive(Clone)]
pub struct JoinStageHandle {
    state: Arc<Mutex<StageState>>,
}

impl JoinStageHandle {
    /// A consistent snapshot of the stage's counters.
    pub fn stats(&self) -> JoinStats {
        lock(&self.state).stats()
    }
}

/// Runs the join stage until `shutdown` resolves.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<()> {
    let stage = JoinStage::new(settings)?;
    stage.run(shutdown).await
}

/// A join stage, built and checked but not yet consuming.
pub struct JoinStage {
    settings: Settings,
    /// Shared with the at-least-once flushes, which commit once their records are delivered.
    consumer: Arc<StreamConsumer<StageContext>>,
    producer: ProducerSlot,
    state: Arc<Mutex<StageState>>,
    exactly_once: Option<Arc<ExactlyOnce>>,
    partitions: usize,
}

/// What exactly-once adds to a stage: the changelog reader and the transaction timeout.
struct ExactlyOnce {
    reader: ChangelogReader,
    timeout: Duration,
    /// `join.flush_interval`: a commit that takes longer is not keeping up.
    flush_interval: Duration,
    /// The producer's configuration, to open a new incarnation after it was fenced.
    producer_config: rdkafka::ClientConfig,
    reincarnations: Reincarnations,
}

/// How long a restore may take before the stage gives up on it (well within the consumer's
/// `max.poll.interval.ms`, since it runs inside the rebalance callback).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(240);

impl JoinStage {
    /// Builds the clients and checks the topics (inputs exist and are co-partitioned).
    pub fn new(settings: Settings) -> Result<Self> {
        settings.validate()?;
        let eos = settings.kafka.exactly_once();
        let producer_config = if eos {
            transactional_producer_config(&settings.kafka, &settings.kafka.join_group_id)
        } else {
            producer_config(&settings.kafka)
        };
        let producer = ProducerSlot::new(producer_config.create()?);
        let exactly_once = if eos {
            Some(Arc::new(ExactlyOnce {
                reader: ChangelogReader::new(&settings)?,
                timeout: settings.kafka.transaction_timeout,
                flush_interval: settings.join.flush_interval,
                producer_config,
                reincarnations: Reincarnations::default(),
            }))
        } else {
            None
        };
        let mut writers = WriterSchemas::new();
        // Schema ids of framed payloads are resolved against the current schemas until a
        // registry client exists; unknown ids are dead-lettered.
        let _ = &mut writers;
        let max_bytes = settings.join.max_message_bytes;
        let predictions = PredictionDecoders::for_writers(&writers)
            .map_err(|e| WorkerError::Config(format!("prediction schema: {e}")))?
            .with_max_message_bytes(max_bytes);
        let labels = GroundTruthDecoders::for_writers(&writers)
            .map_err(|e| WorkerError::Config(format!("ground-truth schema: {e}")))?
            .with_max_message_bytes(max_bytes);
        let state = Arc::new(Mutex::new(StageState::new(
            &settings,
            predictions,
            labels,
            producer.clone(),
        )?));
        let context = StageContext {
            state: state.clone(),
            producer: producer.clone(),
            exactly_once: exactly_once.clone(),
        };
        let consumer: StreamConsumer<StageContext> =
            member_config(&settings.kafka, &settings.kafka.join_group_id)
                .set("statistics.interval.ms", "500")
                .create_with_context(context)?;
        let t = &settings.topics;
        let partitions = check_copartitioned(
            consumer.client(),
            &settings.kafka.bootstrap_servers,
            &t.predictions,
            &t.ground_truth,
            Duration::from_secs(10),
        )?;
        info!(partitions, predictions = %t.predictions, ground_truth = %t.ground_truth, "inputs co-partitioned");
        // The outputs must exist too: a missing one would otherwise surface as delivery errors
        // long after start-up.
        for output in [&t.model_partials, &t.dead_letter] {
            let n = partition_count(
                consumer.client(),
                &settings.kafka.bootstrap_servers,
                output,
                Duration::from_secs(10),
            )?;
            if output == &t.model_partials {
                let mut s = lock(&state);
                s.join_tasks = partitions;
                s.partials_partitions = n;
            }
        }
        Ok(JoinStage {
            settings,
            consumer: Arc::new(consumer),
            producer,
            state,
            exactly_once,
            partitions,
        })
    }

    /// A handle to read the stage's accounting.
    pub fn handle(&self) -> JoinStageHandle {
        JoinStageHandle {
            state: self.state.clone(),
        }
    }

    /// Consumes until `shutdown` resolves, then flushes, commits and leaves the group.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        if let Some(eos) = &self.exactly_once {
            ensure_changelog(
                &self.settings,
                self.settings.join_changelog_topic(),
                self.partitions,
                "topics.join_changelog",
            )
            .await?;
            // Fences an earlier incarnation with the same transactional id and aborts its
            // open transaction, then opens ours.
            self.producer
                .get()
                .init_transactions(eos.timeout.max(Duration::from_secs(30)))?;
            self.producer.get().begin_transaction()?;
        }
        let t = &self.settings.topics;
        self.consumer
            .subscribe(&[&t.predictions, &t.ground_truth])?;
        let flush_every = self.settings.join.flush_interval;
        let mut tick = tokio::time::interval(flush_every.min(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_flush = Instant::now();
        let mut last_log = Instant::now();
        let mut paused: HashSet<(Input, i32)> = HashSet::new();
        let mut flushing: Option<tokio::task::JoinHandle<()>> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                msg = self.consumer.recv() => match msg {
                    Ok(m) => {
                        // Offsets are taken from the tasks at each flush, not stored per message.
                        let pause = lock(&self.state).handle_message(&m, now_ms());
                        if let Some(key) = pause {
                            self.set_paused(key, true);
                            paused.insert(key);
                        }
                    }
                    Err(e) => warn!(error = %e, "consumer error"),
                },
                _ = tick.tick() => {
                    if let Some(failure) = lock(&self.state).failure.take() {
                        return Err(WorkerError::State(failure));
                    }
                    let resumable = lock(&self.state).poll_all(now_ms(), &paused);
                    for key in resumable {
                        self.set_paused(key, false);
                        paused.remove(&key);
                    }
                    let due = last_flush.elapsed() >= flush_every;
                    if self.exactly_once.is_some() {
                        self.commit_in_background(&mut paused, due)?;
                    } else if due && flushing.as_ref().is_none_or(|f| f.is_finished()) {
                        // Delivery is awaited off the loop; one flush at a time, so offsets
                        // never move backwards.
                        flushing = Some(tokio::spawn(self.flush(CommitMode::Async)));
                    }
                    if due {
                        last_flush = Instant::now();
                    }
                    if last_log.elapsed() >= Duration::from_secs(30) {
                        log_stats(&lock(&self.state).stats());
                        last_log = Instant::now();
                    }
                }
            }
        }
        info!("shutting down: flushing partials and committing offsets");
        if self.exactly_once.is_some() {
            if let Err(e) = self.commit_or_recover(&mut paused) {
                error!(error = %e, "final transaction failed; the next owner restores the last committed state");
            }
        } else {
            if let Some(f) = flushing.take() {
                let _ = f.await;
            }
            self.flush(CommitMode::Sync).await;
        }
        self.consumer.unsubscribe();
        let _ = self.producer.get().flush(Duration::from_secs(10));
        log_stats(&lock(&self.state).stats());
        Ok(())
    }

    fn set_paused(&self, (input, partition): (Input, i32), pause: bool) {
        let t = &self.settings.topics;
        let topic = match input {
            Input::Predictions => &t.predictions,
            Input::Labels => &t.ground_truth,
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let r = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = r {
            debug!(error = %e, topic, partition, pause, "pause/resume");
        }
    }

    /// Commits the open transaction. When it fails, aborts it and rebuilds every task from the
    /// changelog at the committed offsets, so the aborted work is done again exactly once. Only
    /// a fatal producer error (fenced by a newer incarnation, or unrecoverable) is returned:
    /// the worker must stop, its partitions belong to someone else.
    fn commit_or_recover(&self, paused: &mut HashSet<(Input, i32)>) -> Result<()> {
        let Some(eos) = &self.exactly_once else {
            return Ok(());
        };
        blocking(|| {
            match commit_transaction(
                &self.producer.get(),
                self.consumer.as_ref(),
                &self.state,
                eos,
            ) {
                Ok(()) => Ok(()),
                Err(e) => self.recover(eos, e, paused),
            }
        })
    }

    /// The periodic commit: reports a commit that finished (recovering when it failed) and
    /// starts the next one on its own thread.
    fn commit_in_background(&self, paused: &mut HashSet<(Input, i32)>, start: bool) -> Result<()> {
        let Some(eos) = &self.exactly_once else {
            return Ok(());
        };
        if let Some(Err(e)) = finish_in_flight(&self.state, false) {
            return blocking(|| self.recover(eos, e, paused));
        }
        if start {
            start_commit(
                &self.producer.get(),
                self.consumer.as_ref(),
                &self.state,
                eos,
            );
        }
        Ok(())
    }

    /// After a failed transaction: aborts it (or, when the producer was fenced, opens a new
    /// incarnation of it) and rebuilds every task from the changelog at the committed offsets.
    /// Fenced again and again (see [`Reincarnations`]), the stage stops.
    fn recover(
        &self,
        eos: &ExactlyOnce,
        e: KafkaError,
        paused: &mut HashSet<(Input, i32)>,
    ) -> Result<()> {
        let mut fatal = is_fatal(&e);
        if !fatal {
            warn!(error = %e, "transaction failed: aborting and restoring the committed state");
            match abort_transaction(&self.producer.get(), &self.state, eos) {
                Ok(()) => {}
                // The abort itself can leave the producer unusable (seen after a broker
                // restart: INVALID_TXN_STATE on ending the transaction): replace it as when
                // fenced, instead of ending the stage.
                Err(a) if is_fatal(&a) => {
                    warn!(error = %a, "abort failed fatally");
                    fatal = true;
                }
                Err(a) => return Err(a.into()),
            }
        }
        if fatal {
            if !eos.reincarnations.allow() {
                error!(error = %e, limit = Reincarnations::MAX, "fatal transaction error again: stopping the join stage");
                return Err(e.into());
            }
            warn!(error = %e, "producer fenced: opening a new incarnation and restoring the committed state");
            self.producer.reincarnate(
                &eos.producer_config,
                eos.timeout.max(Duration::from_secs(30)),
            )?;
            discard_transaction(&self.state);
        }
        let assigned = {
            let mut state = lock(&self.state);
            let assigned = state.assigned();
            state.abandon(&assigned.iter().copied().collect());
            assigned
        };
        if assigned.is_empty() {
            return Ok(());
        }
        let config = lock(&self.state).join_config.clone();
        let restored = eos.reader.restore(&assigned, &config, RESTORE_TIMEOUT)?;
        lock(&self.state).install_restored(restored);
        // Back to the committed offsets (the beginning where nothing was committed yet).
        let committed = rewind_to_committed(self.consumer.as_ref(), eos.timeout)?;
        lock(&self.state).set_positions(&committed);
        for key in paused.drain() {
            self.set_paused(key, false);
        }
        Ok(())
    }

    /// At-least-once: produces the partials now and returns what awaits their delivery (and
    /// the dead letters') and then commits the offsets they account for.
    fn flush(&self, mode: CommitMode) -> impl Future<Output = ()> + Send + 'static {
        // Partials and the offsets they account for are taken together.
        let (records, offsets, dead_letters) = {
            let mut state = lock(&self.state);
            (
                state.flush_partials(),
                state.processed_offsets(None),
                std::mem::take(&mut state.dead_letters_in_flight),
            )
        };
        let topic = self.settings.topics.model_partials.clone();
        let mut deliveries = Vec::with_capacity(records.len());
        for r in &records {
            match self.producer.get().send_result(r.future(&topic)) {
                Ok(d) => deliveries.push(d),
                Err((e, _)) => error!(error = %e, "partial not enqueued"),
            }
        }
        deliveries.extend(dead_letters);
        let pending = PendingFlush {
            deliveries,
            offsets,
            topic,
            written: records.iter().filter(|r| r.is_partial()).count() as u64,
            mode,
        };
        let consumer = self.consumer.clone();
        let state = self.state.clone();
        async move { pending.complete(&consumer, &state).await }
    }
}

/// An at-least-once flush whose records are produced: what remains is to await their delivery
/// and then commit the offsets they account for.
struct PendingFlush {
    /// Partials and dead letters.
    deliveries: Vec<DeliveryFuture>,
    offsets: TopicPartitionList,
    topic: String,
    written: u64,
    mode: CommitMode,
}

impl PendingFlush {
    /// Commits the offsets only if every record was delivered.
    async fn complete(self, consumer: &StreamConsumer<StageContext>, state: &Mutex<StageState>) {
        let mut ok = true;
        for d in self.deliveries {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    ok = false;
                    error!(error = %e, "partial or dead letter not delivered");
                }
                Err(_) => ok = false,
            }
        }
        {
            let mut state = lock(state);
            state.producing = ok;
            if ok && self.written > 0 {
                *state.events_out.entry(self.topic).or_default() += self.written;
            }
        }
        // Offsets move only when everything they account for is in Kafka.
        if ok && self.offsets.count() > 0 {
            if let Err(e) = consumer.commit(&self.offsets, self.mode) {
                debug!(error = %e, "commit");
            }
        }
    }
}

fn log_stats(stats: &JoinStats) {
    for ((model, version), c) in &stats.per_model {
        info!(
            model = %model, version = %version,
            predictions = c.predictions, labels = c.labels, matched = c.matched,
            expired_unlabeled = c.expired_unlabeled, orphan = c.orphan_labels,
            duplicate_predictions = c.duplicate_predictions, duplicate_labels = c.duplicate_labels,
            late = c.late_labels, dead_lettered = c.dead_lettered,
            "join accounting"
        );
    }
    for (model, (p50, p90, p99, n)) in &stats.label_delay_ms {
        info!(model = %model, p50, p90, p99, matched = n, "label delay ms");
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn lock(state: &Mutex<StageState>) -> MutexGuard<'_, StageState> {
    // A panic while holding the lock cannot leave the counters half-written in a way that
    // matters more than stopping would; keep going with the data as it is.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends a batch into the open transaction, commits it and opens the next one (blocking).
/// Sets the outcome's `took` once committed.
fn run_transaction(
    producer: &FutureProducer,
    batch: &mut CommitBatch,
    metadata: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
    timeout: Duration,
) -> KafkaResult {
    let started = Instant::now();
    for d in &batch.dead_letters {
        let mut record =
            FutureRecord::<[u8], [u8]>::to(&batch.dead_letter_topic).headers(d.headers.clone());
        if let Some(k) = &d.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &d.payload {
            record = record.payload(p.as_slice());
        }
        send_waiting(producer, record)?;
    }
    for r in &batch.partials {
        send_waiting(producer, r.future(&batch.partials_topic))?;
    }
    // The changes are sorted and encoded here, on the committing thread, not in the loop.
    for (partition, delta) in std::mem::take(&mut batch.changelog) {
        let mut sent = Ok(());
        batch.outcome.changelog_records += delta.for_each_record(|key, value| {
            if sent.is_err() {
                return;
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(&batch.changelog_topic)
                .partition(partition)
                .key(key);
            if let Some(v) = value {
                record = record.payload(v);
            }
            sent = send_waiting(producer, record);
        });
        sent?;
    }
    if batch.offsets.count() > 0 {
        let metadata = metadata.ok_or(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidGroupId,
        ))?;
        retrying("send offsets", || {
            producer.send_offsets_to_transaction(&batch.offsets, metadata, timeout)
        })?;
    }
    retrying("commit", || producer.commit_transaction(timeout))?;
    batch.outcome.took = started.elapsed();
    producer.begin_transaction()
}

/// Waits for the transaction committing on its own thread, if any, and applies its outcome.
/// `block` false: only when it has finished. `None` when there is nothing (more) to report.
fn finish_in_flight(state: &Mutex<StageState>, block: bool) -> Option<KafkaResult> {
    let handle = {
        let mut s = lock(state);
        match &s.in_flight {
            Some(h) if block || h.is_finished() => s.in_flight.take(),
            _ => None,
        }
    }?;
    let (outcome, result) = handle.join().unwrap_or_else(|_| {
        (
            CommitOutcome {
                counters: Vec::new(),
                rejected: BTreeMap::new(),
                rejected_through: HashMap::new(),
                partials: 0,
                changelog_records: 0,
                took: Duration::ZERO,
            },
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail)),
        )
    });
    if result.is_ok() {
        lock(state).transaction_committed(outcome);
    }
    Some(result)
}

/// Starts committing everything done so far on a thread of its own, so the stage keeps
/// processing meanwhile (nothing is produced into the next transaction before it opens: dead
/// letters wait in the state). Does nothing while a commit is still running.
fn start_commit<C: Consumer<StageContext>>(
    producer: &FutureProducer,
    consumer: &C,
    state: &Mutex<StageState>,
    eos: &ExactlyOnce,
) {
    let (batch, yield_first) = {
        let mut s = lock(state);
        if s.in_flight.is_some() {
            return;
        }
        let yield_first = commits_keep_up(s.last_commit, eos.flush_interval);
        (s.commit_batch(), yield_first)
    };
    let metadata = consumer.group_metadata();
    let producer = producer.clone();
    let timeout = eos.timeout;
    let handle = std::thread::Builder::new()
        .name("join-commit".into())
        .spawn(move || {
            if yield_first {
                yield_to_the_loop();
            }
            let mut batch = batch;
            let result = run_transaction(&producer, &mut batch, metadata.as_ref(), timeout);
            (batch.outcome, result)
        });
    match handle {
        Ok(h) => lock(state).in_flight = Some(h),
        Err(e) => error!(error = %e, "commit thread not started; the next commit retries"),
    }
}

/// Priority of the commit thread on thread-priority's scale, which spreads 0..=99 over nice
/// 19..=-20 for the normal scheduling policies: 22 is nice 10 ([`yield_to_the_loop`]).
const COMMIT_THREAD_PRIORITY: u8 = 22;

/// Lowers the calling thread's priority to nice 10 (Linux; elsewhere the platform's nearest
/// equivalent).
///
/// The commit thread sorts and sends a flush interval's changelog delta and then waits for the
/// transaction: it has the whole interval to do so. Every millisecond the stage's loop waits
/// for a core meanwhile adds to the latency of every input queued behind it. At nice 10 the
/// scheduler gives the loop a core first (weight 1024 against 110) and the commit what is
/// left; when the machine has a core to spare, the commit runs at full speed. On the benchmark
/// machine (2 cores shared with the broker) p99 label → outcome at half load went from a
/// median of 177 ms to 85 ms over 6 and 10 alternated runs (BENCHMARKS.md). Only while commits
/// keep up ([`commits_keep_up`]).
fn yield_to_the_loop() {
    let value = ThreadPriorityValue::try_from(COMMIT_THREAD_PRIORITY);
    let set = value.map_err(|e| e.to_string()).and_then(|v| {
        thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(v))
            .map_err(|e| format!("{e:?}"))
    });
    if let Err(e) = set {
        debug!(error = %e, "commit thread keeps the default priority");
    }
}

/// Whether the next commit may yield to the loop ([`yield_to_the_loop`]): unless the last one
/// took longer than the flush interval. A commit thread short of CPU (a worker catching up at
/// full speed on one core) would otherwise fall further behind with each commit, every batch
/// larger than the last, until the broker aborts a transaction at its timeout; a commit that
/// overran its interval means the next runs at normal priority.
fn commits_keep_up(last_commit: Option<Duration>, flush_interval: Duration) -> bool {
    last_commit.is_none_or(|took| took <= flush_interval)
}

/// Commits everything done so far before returning (revocation, shutdown): waits for a
/// commit in flight first.
fn commit_transaction<C: Consumer<StageContext>>(
    producer: &FutureProducer,
    consumer: &C,
    state: &Mutex<StageState>,
    eos: &ExactlyOnce,
) -> KafkaResult {
    if let Some(r) = finish_in_flight(state, true) {
        r?;
    }
    let mut batch = lock(state).commit_batch();
    let metadata = consumer.group_metadata();
    run_transaction(producer, &mut batch, metadata.as_ref(), eos.timeout)?;
    lock(state).transaction_committed(batch.outcome);
    Ok(())
}

/// Forgets what the open transaction held (it is aborted, or died with its producer): counted
/// as aborted; its dead letters are produced again when their input is read again.
fn discard_transaction(state: &Mutex<StageState>) {
    let mut s = lock(state);
    s.transactions_aborted += 1;
    s.rejected_uncommitted.clear();
    s.rejected_through_uncommitted.clear();
    s.dead_letters_buffered.clear();
}

/// Aborts the open transaction and opens the next one.
fn abort_transaction(
    producer: &FutureProducer,
    state: &Mutex<StageState>,
    eos: &ExactlyOnce,
) -> KafkaResult {
    discard_transaction(state);
    retrying("abort", || producer.abort_transaction(eos.timeout))?;
    producer.begin_transaction()?;
    Ok(())
}

/// Rebalance and statistics callbacks, run on the thread that polls the consumer.
struct StageContext {
    state: Arc<Mutex<StageState>>,
    producer: ProducerSlot,
    exactly_once: Option<Arc<ExactlyOnce>>,
}

impl StageContext {
    /// Exactly-once revocation: commit what the revoked tasks did (abort when the assignment
    /// is already lost), then drop them; their state is in the changelog.
    fn revoke_transactional(
        &self,
        consumer: &BaseConsumer<Self>,
        eos: &ExactlyOnce,
        partitions: &HashSet<i32>,
    ) {
        let committed = !consumer.assignment_lost()
            && match commit_transaction(&self.producer.get(), consumer, &self.state, eos) {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, "transaction on revoke failed: aborting");
                    false
                }
            };
        if !committed {
            if let Err(e) = abort_transaction(&self.producer.get(), &self.state, eos) {
                error!(error = %e, "abort on revoke failed");
            }
        }
        lock(&self.state).abandon(partitions);
        info!(?partitions, committed, "partitions revoked");
    }

    /// Exactly-once assignment: restore every assigned partition before any of its records is
    /// processed.
    fn assign_transactional(
        &self,
        consumer: &BaseConsumer<Self>,
        eos: &ExactlyOnce,
        tpl: &TopicPartitionList,
        partitions: Vec<i32>,
    ) {
        let config = lock(&self.state).join_config.clone();
        match eos.reader.restore(&partitions, &config, RESTORE_TIMEOUT) {
            Ok(restored) => {
                let committed = committed_offsets(consumer, tpl, eos.timeout);
                let mut state = lock(&self.state);
                state.install_restored(restored);
                state.set_positions(&committed);
            }
            Err(e) => {
                error!(error = %e, "restore failed: the join stage stops");
                lock(&self.state).failure = Some(e.to_string());
            }
        }
    }
}

impl ClientContext for StageContext {
    fn stats(&self, statistics: Statistics) {
        lock(&self.state).observe_statistics(&statistics);
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions: HashSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if let Some(eos) = &self.exactly_once {
                blocking(|| self.revoke_transactional(consumer, eos, &partitions));
                return;
            }
            let (records, offsets) = {
                let mut state = lock(&self.state);
                let records = state.flush_partials();
                let offsets = state.processed_offsets(Some(&partitions));
                state.retire(&partitions);
                (records, offsets)
            };
            let topic = lock(&self.state).partials_topic.clone();
            for r in &records {
                if let Err((e, _)) = self.producer.get().send_result(r.future(&topic)) {
                    error!(error = %e, "partial not enqueued on revoke");
                }
            }
            if let Err(e) = self.producer.get().flush(Duration::from_secs(30)) {
                error!(error = %e, "partials not flushed on revoke; offsets not committed");
                return;
            }
            if offsets.count() > 0 {
                if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
                    debug!(error = %e, "commit on revoke");
                }
            }
            info!(?partitions, "partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                if let Some(eos) = &self.exactly_once {
                    let mut partitions: Vec<i32> =
                        tpl.elements().iter().map(|e| e.partition()).collect();
                    partitions.sort_unstable();
                    partitions.dedup();
                    blocking(|| self.assign_transactional(consumer, eos, tpl, partitions));
                    info!(partitions = ?lock(&self.state).assigned(), "partitions assigned and restored");
                    return;
                }
                let committed = committed_offsets(consumer, tpl, Duration::from_secs(10));
                let mut state = lock(&self.state);
                let mut per_topic: HashMap<i32, (bool, bool)> = HashMap::new();
                for e in tpl.elements() {
                    let entry = per_topic.entry(e.partition()).or_default();
                    if e.topic() == state.predictions_topic {
                        entry.0 = true;
                    } else if e.topic() == state.ground_truth_topic {
                        entry.1 = true;
                    }
                }
                for (partition, (p, g)) in per_topic {
                    if !(p && g) {
                        error!(partition, "only one input of this partition was assigned: the join needs the range assignor and co-partitioned topics");
                    }
                    state.assign(partition);
                }
                state.set_positions(&committed);
                info!(partitions = ?state.assigned(), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => error!(error = %e, "rebalance error"),
        }
    }
}

/// One partition pair's join state.
struct PartitionTask {
    task: JoinTask,
    aggregator: PartialAggregator,
    /// Next offset to read per input, as far as this worker read.
    next_offset: [i64; 2],
    /// Offsets of the records waiting in the task's merge queue per input, oldest first: the
    /// offset a commit may record is the oldest of them.
    queued_offsets: [VecDeque<i64>; 2],
    /// What the changelog holds of this task (exactly-once).
    cursor: ChangelogCursor,
    /// The task's counters as of the last committed transaction (exactly-once): what is
    /// kept in the totals when the task is dropped after an abort.
    committed: Vec<(ModelVersionId, JoinCounters)>,
    /// Feature id at each position of the previous prediction: interning hints.
    feature_hints: Vec<FeatureId>,
    /// The staging buffer of [`SignatureOfPredicted`], kept empty between messages so its
    /// allocation is reused.
    staged: Vec<(FeatureId, FeatureRef<'static>)>,
    /// The class-score buffer of [`ScoreOfPredicted`], reused the same way.
    scores: Vec<(&'static str, f64)>,
    /// Features not summarized because the task's feature interner is full.
    features_dropped: u64,
}

/// Everything the consumer loop and the rebalance callbacks share.
struct StageState {
    /// Join tasks in all (the input partition count) and partitions of the partials topic:
    /// progress records go to each of those partitions.
    join_tasks: usize,
    partials_partitions: usize,
    predictions_topic: String,
    ground_truth_topic: String,
    partials_topic: String,
    dead_letter_topic: String,
    join_config: driftwatch_core::join::JoinConfig,
    bucket_width_ms: i64,
    max_future_skew_ms: i64,
    max_queued: usize,
    max_message_bytes: usize,
    predictions: PredictionDecoders,
    labels: GroundTruthDecoders,
    producer: ProducerSlot,
    tasks: BTreeMap<i32, PartitionTask>,
    /// Counters of tasks that were revoked, so totals survive rebalances.
    retired: BTreeMap<(String, String), JoinCounters>,
    /// Input that never reached a task (undecodable, invalid), per model when known.
    rejected: BTreeMap<(String, String), JoinCounters>,
    /// The same, for dead letters of the open transaction (exactly-once): folded into
    /// `rejected` when it commits, dropped when it aborts (the input is read again).
    rejected_uncommitted: BTreeMap<(String, String), JoinCounters>,
    /// Per input partition, the highest offset of a rejected record whose count and dead
    /// letter a committed transaction holds (exactly-once). Committed offsets stop at the
    /// oldest record still queued, so after a rewind (abort, fenced producer) a rejected record
    /// behind one may be read again: it is then neither counted nor dead-lettered twice.
    rejected_through: HashMap<(Input, i32), i64>,
    /// The same for the open transaction's rejections.
    rejected_through_uncommitted: HashMap<(Input, i32), i64>,
    label_delay: BTreeMap<String, Histogram<u64>>,
    dropped_on_revoke: u64,
    /// Last stable offset per (input, partition) from the client's statistics.
    last_stable: HashMap<(Input, i32), i64>,
    /// Whether every broker was up in the latest statistics.
    brokers_up: bool,
    events: Vec<JoinEvent>,
    dead_letter_log: HashMap<&'static str, (Instant, u64)>,
    events_in: BTreeMap<String, u64>,
    events_out: BTreeMap<String, u64>,
    consumer_lag: BTreeMap<(String, i32), i64>,
    processing_micros: Option<Histogram<u64>>,
    producing: bool,
    outcome_lag_ms: Option<Histogram<u64>>,
    input_age_ms: Option<Histogram<u64>>,
    batch_micros: Option<Histogram<u64>>,
    commit_micros: Option<Histogram<u64>>,
    /// How long the last committed transaction took.
    last_commit: Option<Duration>,
    /// Dead letters sent since the last flush, not yet confirmed by the broker.
    dead_letters_in_flight: Vec<DeliveryFuture>,
    /// Exactly-once: dead letters for the next transaction.
    dead_letters_buffered: Vec<DeadLetter>,
    /// Exactly-once: the transaction committing on its own thread, if any.
    in_flight: Option<std::thread::JoinHandle<(CommitOutcome, KafkaResult)>>,
    exactly_once: bool,
    changelog_topic: String,
    restore: RestoreTotals,
    transactions_committed: u64,
    transactions_aborted: u64,
    /// Set when the stage cannot go on (a restore failed inside a rebalance callback).
    failure: Option<String>,
}

type KafkaResult = std::result::Result<(), KafkaError>;

/// A dead letter waiting for the next transaction.
struct DeadLetter {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: OwnedHeaders,
}

/// A record for the partials topic: a partial, keyed by model id, or a progress record (see
/// [`crate::join_progress`]) for one partition.
struct PartialsRecord {
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

    fn is_partial(&self) -> bool {
        self.partition.is_none()
    }
}

/// Everything one transaction commits, taken from the state at one moment.
struct CommitBatch {
    partials_topic: String,
    changelog_topic: String,
    dead_letter_topic: String,
    /// Partials, then the progress records that follow them.
    partials: Vec<PartialsRecord>,
    /// Per task partition: what its changelog partition gets (encoded by the committing thread).
    changelog: Vec<(i32, ChangelogDelta)>,
    dead_letters: Vec<DeadLetter>,
    offsets: TopicPartitionList,
    outcome: CommitOutcome,
}

/// What becomes final when a batch's transaction commits.
struct CommitOutcome {
    /// Per task: its counters as of the batch.
    counters: Vec<(i32, Vec<(ModelVersionId, JoinCounters)>)>,
    rejected: BTreeMap<(String, String), JoinCounters>,
    rejected_through: HashMap<(Input, i32), i64>,
    partials: usize,
    changelog_records: usize,
    /// Time the transaction took to commit.
    took: Duration,
}

const UNKNOWN: (&str, &str) = ("unknown", "");

impl StageState {
    fn new(
        settings: &Settings,
        predictions: PredictionDecoders,
        labels: GroundTruthDecoders,
        producer: ProducerSlot,
    ) -> Result<Self> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Ok(StageState {
            join_tasks: 0,
            partials_partitions: 0,
            predictions_topic: settings.topics.predictions.clone(),
            ground_truth_topic: settings.topics.ground_truth.clone(),
            partials_topic: settings.topics.model_partials.clone(),
            dead_letter_topic: settings.topics.dead_letter.clone(),
            join_config: settings.join_config()?,
            bucket_width_ms: ms(settings.join.bucket_width),
            max_future_skew_ms: ms(settings.join.max_future_skew),
            max_queued: settings.join.max_queued_records,
            max_message_bytes: settings.join.max_message_bytes,
            predictions,
            labels,
            producer,
            tasks: BTreeMap::new(),
            retired: BTreeMap::new(),
            rejected: BTreeMap::new(),
            rejected_uncommitted: BTreeMap::new(),
            rejected_through: HashMap::new(),
            rejected_through_uncommitted: HashMap::new(),
            label_delay: BTreeMap::new(),
            dropped_on_revoke: 0,
            last_stable: HashMap::new(),
            brokers_up: false,
            events: Vec::new(),
            dead_letter_log: HashMap::new(),
            events_in: BTreeMap::new(),
            events_out: BTreeMap::new(),
            consumer_lag: BTreeMap::new(),
            // One µs to one minute at 3 significant figures; cannot fail for these constants.
            processing_micros: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
            producing: false,
            outcome_lag_ms: Histogram::new_with_bounds(1, 3_600_000, 3).ok(),
            input_age_ms: Histogram::new_with_bounds(1, 3_600_000, 3).ok(),
            batch_micros: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
            commit_micros: Histogram::new_with_bounds(1, 3_600_000_000, 3).ok(),
            last_commit: None,
            dead_letters_in_flight: Vec::new(),
            dead_letters_buffered: Vec::new(),
            in_flight: None,
            exactly_once: settings.kafka.exactly_once(),
            changelog_topic: settings.join_changelog_topic(),
            restore: RestoreTotals::default(),
            transactions_committed: 0,
            transactions_aborted: 0,
            failure: None,
        })
    }

    /// Partials, changelog records and offsets of every task, for one transaction.
    fn commit_batch(&mut self) -> CommitBatch {
        let started = Instant::now();
        let batch = self.take_batch();
        if let Some(h) = self.batch_micros.as_mut() {
            h.saturating_record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        batch
    }

    fn take_batch(&mut self) -> CommitBatch {
        let partials = self.flush_partials();
        let changelog = self
            .tasks
            .iter_mut()
            .map(|(p, t)| (*p, t.cursor.delta(&mut t.task)))
            .collect();
        let outcome = CommitOutcome {
            counters: self
                .tasks
                .iter()
                .map(|(p, t)| (*p, t.task.all_counters().collect()))
                .collect(),
            rejected: std::mem::take(&mut self.rejected_uncommitted),
            rejected_through: std::mem::take(&mut self.rejected_through_uncommitted),
            partials: partials.iter().filter(|r| r.is_partial()).count(),
            // Counted when the committing thread writes them.
            changelog_records: 0,
            took: Duration::ZERO,
        };
        CommitBatch {
            partials_topic: self.partials_topic.clone(),
            changelog_topic: self.changelog_topic.clone(),
            dead_letter_topic: self.dead_letter_topic.clone(),
            partials,
            changelog,
            dead_letters: std::mem::take(&mut self.dead_letters_buffered),
            offsets: self.processed_offsets(None),
            outcome,
        }
    }

    /// After a committed transaction: what its batch counted is final.
    fn transaction_committed(&mut self, outcome: CommitOutcome) {
        let CommitOutcome {
            counters,
            rejected,
            rejected_through,
            partials,
            changelog_records,
            took,
        } = outcome;
        if let Some(h) = self.commit_micros.as_mut() {
            h.saturating_record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
        self.last_commit = Some(took);
        self.transactions_committed += 1;
        self.producing = true;
        for (k, offset) in rejected_through {
            let e = self.rejected_through.entry(k).or_insert(offset);
            *e = (*e).max(offset);
        }
        for (k, c) in rejected {
            let e = self.rejected.entry(k).or_default();
            *e = e.merged(&c);
        }
        for (p, c) in counters {
            if let Some(t) = self.tasks.get_mut(&p) {
                t.committed = c;
            }
        }
        if partials > 0 {
            *self
                .events_out
                .entry(self.partials_topic.clone())
                .or_default() += partials as u64;
        }
        if changelog_records > 0 {
            *self
                .events_out
                .entry(self.changelog_topic.clone())
                .or_default() += changelog_records as u64;
        }
    }

    /// Sets read positions from `offsets` (entries without an offset are left alone).
    fn set_positions(&mut self, offsets: &TopicPartitionList) {
        for e in offsets.elements() {
            let Offset::Offset(o) = e.offset() else {
                continue;
            };
            let input = if e.topic() == self.predictions_topic {
                Input::Predictions
            } else if e.topic() == self.ground_truth_topic {
                Input::Labels
            } else {
                continue;
            };
            if let Some(t) = self.tasks.get_mut(&e.partition()) {
                t.next_offset[input_index(input)] = o;
            }
        }
    }

    /// Installs restored tasks.
    fn install_restored(&mut self, restored: crate::changelog::Restored) {
        self.restore.restores += 1;
        self.restore.records += restored.records;
        self.restore.bytes += restored.bytes;
        self.restore.entries += restored.entries;
        self.restore.seconds += restored.elapsed.as_secs_f64();
        for (p, task) in restored.tasks {
            self.tasks.remove(&p);
            self.assign_task(p, Some(task));
        }
    }

    /// Drops tasks whose state is in the changelog (exactly-once: revoked, or rebuilt after an
    /// abort). Their totals keep what was committed.
    fn abandon(&mut self, partitions: &HashSet<i32>) {
        for p in partitions {
            if let Some(t) = self.tasks.remove(p) {
                keep_totals(&mut self.retired, &t.task, t.committed.iter().copied());
            }
        }
    }

    /// Next offset to read of every input partition a task processed from (or only of
    /// `only`): what a commit may record once the partials of that work are delivered.
    fn processed_offsets(&self, only: Option<&HashSet<i32>>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (p, t) in &self.tasks {
            if only.is_some_and(|o| !o.contains(p)) {
                continue;
            }
            for (i, topic) in [&self.predictions_topic, &self.ground_truth_topic]
                .into_iter()
                .enumerate()
            {
                // Records still queued are not processed: the commit stops at the oldest.
                let next = t.queued_offsets[i]
                    .front()
                    .copied()
                    .unwrap_or(t.next_offset[i]);
                if next >= 0 {
                    if let Err(e) =
                        tpl.add_partition_offset(topic, *p, rdkafka::Offset::Offset(next))
                    {
                        debug!(error = %e, "offset not recorded");
                    }
                }
            }
        }
        tpl
    }

    fn assigned(&self) -> Vec<i32> {
        self.tasks.keys().copied().collect()
    }

    fn assign(&mut self, partition: i32) {
        self.assign_task(partition, None);
    }

    /// Creates the task of `partition` (a new one, or `restored`).
    fn assign_task(&mut self, partition: i32, restored: Option<JoinTask>) {
        if self.tasks.contains_key(&partition) {
            return;
        }
        let cursor = restored
            .as_ref()
            .map(ChangelogCursor::after_restore)
            .unwrap_or_default();
        let task = match restored {
            Some(t) => Ok(t),
            None => JoinTask::new(self.join_config.clone()).map(|mut t| {
                if self.exactly_once {
                    t.track_changes();
                }
                t
            }),
        };
        // Microseconds since the epoch: later incarnations of this partition's task always
        // number their partials above earlier ones (a flush per microsecond is far beyond
        // what any task does), so the monitor never mistakes them for duplicates.
        let first_sequence = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
            .unwrap_or(0);
        // A restored task's predecessor may have announced its watermark: date nothing before.
        let announced = task.as_ref().map_or(i64::MIN, JoinTask::watermark);
        let aggregator = PartialAggregator::new(partition, self.bucket_width_ms).map(|a| {
            a.starting_sequence_at(first_sequence)
                .announced_at(announced)
        });
        match (task, aggregator) {
            (Ok(task), Ok(aggregator)) => {
                self.tasks.insert(
                    partition,
                    PartitionTask {
                        task,
                        aggregator,
                        next_offset: [-1, -1],
                        queued_offsets: [VecDeque::new(), VecDeque::new()],
                        cursor,
                        committed: Vec::new(),
                        feature_hints: Vec::new(),
                        staged: Vec::new(),
                        scores: Vec::new(),
                        features_dropped: 0,
                    },
                );
            }
            (Err(e), _) => error!(error = %e, partition, "join task not created"),
            (_, Err(e)) => error!(error = %e, partition, "partial aggregator not created"),
        }
    }

    fn retire(&mut self, partitions: &HashSet<i32>) {
        for p in partitions {
            if let Some(t) = self.tasks.remove(p) {
                let b = t.task.buffer().stats();
                let pending = (b.pending_predictions + b.pending_labels) as u64;
                let (qp, ql) = t.task.queued();
                self.dropped_on_revoke += pending + (qp + ql) as u64;
                keep_totals(&mut self.retired, &t.task, t.task.all_counters());
            }
        }
    }

    fn stats(&self) -> JoinStats {
        let mut per_model = self.retired.clone();
        for (k, c) in self.rejected.iter().chain(&self.rejected_uncommitted) {
            let e = per_model.entry(k.clone()).or_default();
            *e = e.merged(c);
        }
        for t in self.tasks.values() {
            for (id, c) in t.task.all_counters() {
                let e = per_model.entry(model_key(&t.task, id)).or_default();
                *e = e.merged(&c);
            }
        }
        let label_delay_ms = self
            .label_delay
            .iter()
            .map(|(m, h)| {
                (
                    m.clone(),
                    (
                        h.value_at_quantile(0.5),
                        h.value_at_quantile(0.9),
                        h.value_at_quantile(0.99),
                        h.len(),
                    ),
                )
            })
            .collect();
        let buffers = self
            .tasks
            .iter()
            .map(|(p, t)| {
                let b = t.task.buffer().stats();
                let entries = (b.pending_predictions + b.pending_labels + b.tombstones) as u64;
                (*p, (entries, b.oldest_pending))
            })
            .collect();
        let signature_losses = self
            .tasks
            .values()
            .map(|t| t.features_dropped + t.aggregator.signature_errors())
            .sum();
        JoinStats {
            signature_losses,
            restore: self.restore,
            transactions_committed: self.transactions_committed,
            transactions_aborted: self.transactions_aborted,
            exactly_once: self.exactly_once,
            per_model,
            label_delay_ms,
            assigned: self.assigned(),
            dropped_on_revoke: self.dropped_on_revoke,
            buffers,
            events_in: self.events_in.clone(),
            events_out: self.events_out.clone(),
            consumer_lag: self.lag(),
            processing_micros: self.processing_micros.clone(),
            producing: self.producing,
            outcome_lag_ms: self.outcome_lag_ms.clone(),
            input_age_ms: self.input_age_ms.clone(),
            batch_micros: self.batch_micros.clone(),
            commit_micros: self.commit_micros.clone(),
        }
    }

    /// Lag per (topic, partition): the last stable offset (statistics) minus the next offset
    /// this worker will read, for partitions it has read from.
    fn lag(&self) -> BTreeMap<(String, i32), i64> {
        let mut out = self.consumer_lag.clone();
        for (p, t) in &self.tasks {
            for (input, topic) in [
                (Input::Predictions, &self.predictions_topic),
                (Input::Labels, &self.ground_truth_topic),
            ] {
                let next = t.next_offset[input_index(input)];
                if let (Some(ls), true) = (self.last_stable.get(&(input, *p)), next >= 0) {
                    out.insert((topic.clone(), *p), (ls - next).max(0));
                }
            }
        }
        out
    }

    fn observe_statistics(&mut self, s: &Statistics) {
        // Offsets seen while a broker is down are stale: no input counts as caught up then,
        // so processing time cannot push the watermark past records the outage holds back.
        let mut brokers = s.brokers.values().filter(|b| b.nodeid >= 0).peekable();
        self.brokers_up = brokers.peek().is_some() && brokers.all(|b| b.state == "UP");
        for (name, topic) in &s.topics {
            let input = if *name == self.predictions_topic {
                Input::Predictions
            } else if *name == self.ground_truth_topic {
                Input::Labels
            } else {
                continue;
            };
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.ls_offset >= 0 {
                    self.last_stable.insert((input, *id), p.ls_offset);
                }
                if *id >= 0 && p.consumer_lag >= 0 {
                    self.consumer_lag
                        .insert((name.clone(), *id), p.consumer_lag);
                }
            }
        }
    }

    /// Decodes one message and feeds it to its task. Returns an input partition to pause when
    /// its task's queue is full.
    fn handle_message(&mut self, msg: &BorrowedMessage<'_>, now: i64) -> Option<(Input, i32)> {
        // Everything logged while handling the message carries its partition.
        let _span = tracing::debug_span!("partition", partition = msg.partition()).entered();
        let started = Instant::now();
        if let (Some(h), Some(sent)) = (self.input_age_ms.as_mut(), msg.timestamp().to_millis()) {
            h.saturating_record(u64::try_from(now - sent).unwrap_or(0));
        }
        let pause = self.process_message(msg, now);
        if let Some(h) = self.processing_micros.as_mut() {
            h.saturating_record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        match self.events_in.get_mut(msg.topic()) {
            Some(n) => *n += 1,
            None => {
                self.events_in.insert(msg.topic().to_string(), 1);
            }
        }
        pause
    }

    fn process_message(&mut self, msg: &BorrowedMessage<'_>, now: i64) -> Option<(Input, i32)> {
        let partition = msg.partition();
        let input = if msg.topic() == self.predictions_topic {
            Input::Predictions
        } else {
            Input::Labels
        };
        let payload = msg.payload().unwrap_or(&[]);
        let received_before = self.tasks.get(&partition).map(|t| t.task.received());
        // One size limit for every encoding, before any decoding.
        let result = if payload.len() > self.max_message_bytes {
            Err(Reject::codec(CodecError::Oversized {
                size: payload.len(),
                limit: self.max_message_bytes,
            }))
        } else {
            match input {
                Input::Predictions => self.push_prediction(partition, payload, now),
                Input::Labels => self.push_label(partition, payload, now),
            }
        };
        if let Err(reject) = result {
            self.dead_letter(msg, input, reject);
        }
        let task = self.tasks.get_mut(&partition)?;
        task.next_offset[input_index(input)] = msg.offset() + 1;
        if received_before.is_some_and(|before| before != task.task.received()) {
            task.queued_offsets[input_index(input)].push_back(msg.offset());
        }
        self.poll_one(partition, now);
        let task = self.tasks.get(&partition)?;
        let (qp, ql) = task.task.queued();
        let queued = match input {
            Input::Predictions => qp,
            Input::Labels => ql,
        };
        (queued > self.max_queued).then_some((input, partition))
    }

    fn push_prediction(&mut self, partition: i32, payload: &[u8], now: i64) -> Result<(), Reject> {
        if payload.first() == Some(&b'{') {
            return self.push_json_prediction(partition, payload, now);
        }
        let (decoder, datum) = self.predictions.select(payload).map_err(Reject::codec)?;
        let Some(t) = self.tasks.get_mut(&partition) else {
            // Revoked meanwhile: validated as usual, but nothing to summarize into.
            let mut scores = ScoreOfPredicted::default();
            let p = decoder.decode(datum, &mut scores).map_err(Reject::codec)?;
            return Self::push_decoded_prediction(
                &mut self.tasks,
                self.max_future_skew_ms,
                partition,
                &p,
                &scores,
                now,
            )
            .map(|_| ());
        };
        let mut visitor = SignatureOfPredicted {
            names: t.aggregator.features_mut(),
            hints: &mut t.feature_hints,
            staged: recycle(std::mem::take(&mut t.staged)),
            dropped: 0,
            scores: ScoreOfPredicted {
                scores: recycle_scores(std::mem::take(&mut t.scores)),
            },
        };
        let decoded = decoder.decode(datum, &mut visitor);
        let SignatureOfPredicted {
            staged,
            dropped,
            scores,
            ..
        } = visitor;
        t.features_dropped += dropped;
        let result = decoded.map_err(Reject::codec).and_then(|p| {
            let model = Self::push_decoded_prediction(
                &mut self.tasks,
                self.max_future_skew_ms,
                partition,
                &p,
                &scores,
                now,
            )?;
            if let (Some(model), Some(t)) = (model, self.tasks.get_mut(&partition)) {
                let sig = t.aggregator.signature_mut(model, p.timestamp);
                for &(id, value) in &staged {
                    match value {
                        FeatureRef::Missing => sig.update_missing(id),
                        FeatureRef::Number(x) => sig.update_number(id, x),
                        FeatureRef::Category(c) => sig.update_category(id, c),
                    }
                }
                let score = p.predicted_label.and_then(|l| scores.score_f64(l));
                sig.update_output(p.predicted_label, p.predicted_value, score);
            }
            Ok(())
        });
        if let Some(t) = self.tasks.get_mut(&partition) {
            t.staged = recycle(staged);
            t.scores = recycle_scores(scores.scores);
        }
        result
    }

    /// The JSON form (`schemas/README.md`). A bare Avro datum of these records cannot start
    /// with `{` (it would be a negative string length), so the first byte tells them apart.
    fn push_json_prediction(
        &mut self,
        partition: i32,
        payload: &[u8],
        now: i64,
    ) -> Result<(), Reject> {
        let owned: Prediction = from_json_slice(payload).map_err(Reject::codec)?;
        let scores = ScoreOfPredicted {
            scores: owned
                .scores
                .iter()
                .flatten()
                .map(|(c, p)| (c.as_str(), *p))
                .collect(),
        };
        let p = PredictionRef {
            request_id: &owned.request_id,
            model_id: &owned.model_id,
            model_version: &owned.model_version,
            timestamp: owned.timestamp,
            predicted_label: owned.predicted_label.as_deref(),
            predicted_value: owned.predicted_value,
            has_scores: owned.scores.is_some(),
        };
        let model = Self::push_decoded_prediction(
            &mut self.tasks,
            self.max_future_skew_ms,
            partition,
            &p,
            &scores,
            now,
        )?;
        if let (Some(model), Some(t)) = (model, self.tasks.get_mut(&partition)) {
            // The JSON path is not the fast one: the owned record is summarized by name.
            if t.aggregator.record_prediction(model, &owned).is_err() {
                t.features_dropped += 1;
            }
        }
        Ok(())
    }

    fn push_decoded_prediction(
        tasks: &mut BTreeMap<i32, PartitionTask>,
        max_future_skew_ms: i64,
        partition: i32,
        p: &PredictionRef<'_>,
        scores: &ScoreOfPredicted<'_>,
        now: i64,
    ) -> Result<Option<ModelVersionId>, Reject> {
        let model = (p.model_id, p.model_version);
        if p.request_id.is_empty() {
            return Err(Reject::invalid(
                "missing_request_id",
                "request_id is empty",
                model,
            ));
        }
        check_time(p.timestamp, now, max_future_skew_ms, model)?;
        let Some(t) = tasks.get_mut(&partition) else {
            return Ok(None); // revoked meanwhile; the next owner reads it again
        };
        let id = t
            .task
            .intern_model(p.model_id, p.model_version)
            .map_err(|e| Reject::invalid("id_space_exhausted", &e.to_string(), model))?;
        let predicted = match (p.predicted_label, p.predicted_value) {
            (Some(label), _) => Predicted::Class(
                t.task
                    .intern_class(label)
                    .map_err(|e| Reject::invalid("id_space_exhausted", &e.to_string(), model))?,
            ),
            (None, Some(v)) => Predicted::Value(v),
            (None, None) => Predicted::None,
        };
        let score = p.predicted_label.and_then(|l| scores.score_of(l));
        t.task.push_prediction(PredictionIn {
            key: RequestKey::from_request_id(p.request_id),
            model: id,
            time: p.timestamp,
            predicted,
            score,
        });
        Ok(Some(id))
    }

    fn push_label(&mut self, partition: i32, payload: &[u8], now: i64) -> Result<(), Reject> {
        if payload.first() == Some(&b'{') {
            let owned: GroundTruth = from_json_slice(payload).map_err(Reject::codec)?;
            let l = GroundTruthRef {
                request_id: &owned.request_id,
                model_id: owned.model_id.as_deref(),
                timestamp: owned.timestamp,
                label: owned.label.as_deref(),
                value: owned.value,
            };
            return Self::push_decoded_label(
                &mut self.tasks,
                self.max_future_skew_ms,
                partition,
                &l,
                now,
            );
        }
        let (decoder, datum) = self.labels.select(payload).map_err(Reject::codec)?;
        let l = decoder.decode(datum).map_err(Reject::codec)?;
        Self::push_decoded_label(&mut self.tasks, self.max_future_skew_ms, partition, &l, now)
    }

    fn push_decoded_label(
        tasks: &mut BTreeMap<i32, PartitionTask>,
        max_future_skew_ms: i64,
        partition: i32,
        l: &GroundTruthRef<'_>,
        now: i64,
    ) -> Result<(), Reject> {
        let model = (l.model_id.unwrap_or(UNKNOWN.0), "");
        if l.request_id.is_empty() {
            return Err(Reject::invalid(
                "missing_request_id",
                "request_id is empty",
                model,
            ));
        }
        check_time(l.timestamp, now, max_future_skew_ms, model)?;
        let Some(t) = tasks.get_mut(&partition) else {
            return Ok(());
        };
        let hint = match l.model_id {
            Some(m) => Some(
                t.task
                    .intern_model_hint(m)
                    .map_err(|e| Reject::invalid("id_space_exhausted", &e.to_string(), model))?,
            ),
            None => None,
        };
        let actual = match (l.label, l.value) {
            (Some(label), _) => Actual::Class(
                t.task
                    .intern_class(label)
                    .map_err(|e| Reject::invalid("id_space_exhausted", &e.to_string(), model))?,
            ),
            (None, Some(v)) => Actual::Value(v),
            (None, None) => Actual::None,
        };
        t.task.push_label(LabelIn {
            key: RequestKey::from_request_id(l.request_id),
            model_hint: hint,
            time: l.timestamp,
            actual,
        });
        Ok(())
    }

    /// Sets caught-up flags, lets every task make progress (idle fallback), and returns paused
    /// inputs whose queues have drained enough to resume.
    fn poll_all(&mut self, now: i64, paused: &HashSet<(Input, i32)>) -> Vec<(Input, i32)> {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for p in partitions {
            for input in [Input::Predictions, Input::Labels] {
                let caught_up = match (self.last_stable.get(&(input, p)), self.tasks.get(&p)) {
                    _ if !self.brokers_up => false,
                    (Some(ls), Some(t)) => {
                        let next = t.next_offset[input_index(input)];
                        // Without a record read yet, an empty partition (ls 0) is caught up.
                        next >= *ls || (*ls == 0 && next < 0)
                    }
                    _ => false,
                };
                if let Some(t) = self.tasks.get_mut(&p) {
                    t.task.set_caught_up(input, caught_up);
                }
            }
            self.poll_one(p, now);
        }
        paused
            .iter()
            .filter(|(input, p)| {
                self.tasks.get(p).is_none_or(|t| {
                    let (qp, ql) = t.task.queued();
                    let q = if *input == Input::Predictions { qp } else { ql };
                    q <= self.max_queued / 4
                })
            })
            .copied()
            .collect()
    }

    fn poll_one(&mut self, partition: i32, now: i64) {
        let Some(t) = self.tasks.get_mut(&partition) else {
            return;
        };
        let events = &mut self.events;
        events.clear();
        t.task.poll(now, &mut |e| events.push(e));
        // Processed records leave the front of each queue.
        let (qp, ql) = t.task.queued();
        for (offsets, queued) in t.queued_offsets.iter_mut().zip([qp, ql]) {
            while offsets.len() > queued {
                offsets.pop_front();
            }
        }
        for e in events.iter() {
            t.aggregator.fold(e);
            match e {
                JoinEvent::Matched(o) => {
                    if let Some(h) = self.outcome_lag_ms.as_mut() {
                        let lag = now - o.prediction_time.max(o.label_time);
                        h.saturating_record(u64::try_from(lag).unwrap_or(0));
                    }
                    if let Some(model) = t.task.interner().model_id(o.model) {
                        if !self.label_delay.contains_key(model) {
                            // Up to 30 days at 3 significant figures; construction cannot fail
                            // for these constants, and a failure would only skip the histogram.
                            if let Ok(h) = Histogram::new_with_bounds(1, 30 * 24 * 3_600_000, 3) {
                                self.label_delay.insert(model.to_string(), h);
                            }
                        }
                        if let Some(h) = self.label_delay.get_mut(model) {
                            h.saturating_record(u64::try_from(o.label_delay_ms).unwrap_or(0));
                        }
                    }
                }
                JoinEvent::Rejected { error, time, .. } => {
                    warn_rate_limited(
                        &mut self.dead_letter_log,
                        "join_rejected",
                        &format!("input rejected by the join at time {time}: {error}"),
                    );
                }
                _ => {}
            }
        }
    }

    /// Partials of every task, Avro-encoded, keyed by model id; then a progress record with
    /// every task's watermark for each partials partition (after the partials it vouches for).
    fn flush_partials(&mut self) -> Vec<PartialsRecord> {
        let mut out = Vec::new();
        let mut watermarks = Vec::with_capacity(self.tasks.len());
        for (&partition, t) in &mut self.tasks {
            let watermark = t.task.watermark();
            watermarks.push((partition, watermark));
            for partial in t.aggregator.flush(t.task.interner(), watermark) {
                match to_avro::<ModelPartial>(&partial) {
                    Ok(payload) => out.push(PartialsRecord {
                        key: Some(partial.model_id),
                        partition: None,
                        payload,
                    }),
                    Err(e) => error!(error = %e, "partial not encodable"),
                }
            }
        }
        if !watermarks.is_empty() {
            let payload = JoinProgress {
                tasks: self.join_tasks,
                watermarks,
            }
            .encode();
            for p in 0..self.partials_partitions {
                out.push(PartialsRecord {
                    key: None,
                    partition: i32::try_from(p).ok(),
                    payload: payload.clone(),
                });
            }
        }
        out
    }

    fn dead_letter(&mut self, msg: &BorrowedMessage<'_>, input: Input, reject: Reject) {
        if self.exactly_once {
            let at = (input, msg.partition());
            if self
                .rejected_through
                .get(&at)
                .is_some_and(|&o| msg.offset() <= o)
            {
                // Read again after a rewind: counted and dead-lettered by a committed
                // transaction already.
                return;
            }
            let e = self
                .rejected_through_uncommitted
                .entry(at)
                .or_insert(msg.offset());
            *e = (*e).max(msg.offset());
        }
        let key = (reject.model.0.to_string(), reject.model.1.to_string());
        let rejected = if self.exactly_once {
            &mut self.rejected_uncommitted
        } else {
            &mut self.rejected
        };
        let c = rejected.entry(key).or_default();
        match input {
            Input::Predictions => c.predictions += 1,
            Input::Labels => c.labels += 1,
        }
        c.dead_lettered += 1;
        warn_rate_limited(
            &mut self.dead_letter_log,
            reject.kind,
            &format!(
                "dead-lettered {}[{}]@{}: {}",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                reject.message
            ),
        );
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "driftwatch.source.topic",
                value: Some(msg.topic()),
            })
            .insert(Header {
                key: "driftwatch.source.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "driftwatch.source.offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "driftwatch.error.kind",
                value: Some(reject.kind),
            })
            .insert(Header {
                key: "driftwatch.error.message",
                value: Some(&reject.message),
            });
        // An oversized payload is not copied: the headers say where to find it.
        let payload = if reject.kind == "oversized" {
            None
        } else {
            msg.payload()
        };
        if self.exactly_once {
            // Kept for the next transaction: one may be committing right now, and nothing can
            // be produced into it then.
            self.dead_letters_buffered.push(DeadLetter {
                key: msg.key().map(<[u8]>::to_vec),
                payload: payload.map(<[u8]>::to_vec),
                headers,
            });
            *self
                .events_out
                .entry(self.dead_letter_topic.clone())
                .or_default() += 1;
            return;
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.dead_letter_topic).headers(headers);
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        match self.producer.get().send_result(record) {
            Ok(delivery) => {
                // Awaited with the next flush's partials, before the offsets move past it.
                self.dead_letters_in_flight.push(delivery);
                *self
                    .events_out
                    .entry(self.dead_letter_topic.clone())
                    .or_default() += 1
            }
            Err((e, _)) => error!(error = %e, "dead letter not enqueued"),
        }
    }
}

/// The group's committed offsets of `tpl`, asked before the state is locked (a broker round
/// trip). Tasks start there: one whose inputs have nothing past them receives no record and
/// must still know where it stands to count as caught up (the watermark's idle fallback needs
/// that). Empty when unknown: tasks then count as caught up once they read.
fn committed_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    timeout: Duration,
) -> TopicPartitionList {
    consumer
        .committed_offsets(tpl.clone(), timeout)
        .unwrap_or_else(|e| {
            warn!(error = %e, "committed offsets unknown");
            TopicPartitionList::new()
        })
}

/// Adds the counters of a task being dropped to the totals that outlive it.
fn keep_totals(
    retired: &mut BTreeMap<(String, String), JoinCounters>,
    task: &JoinTask,
    counters: impl IntoIterator<Item = (ModelVersionId, JoinCounters)>,
) {
    for (id, c) in counters {
        let e = retired.entry(model_key(task, id)).or_default();
        *e = e.merged(&c);
    }
}

fn model_key(task: &JoinTask, id: driftwatch_core::join::ModelVersionId) -> (String, String) {
    task.interner()
        .model(id)
        .map(|(m, v)| (m.to_string(), v.to_string()))
        .unwrap_or_else(|| (UNKNOWN.0.to_string(), UNKNOWN.1.to_string()))
}

fn input_index(input: Input) -> usize {
    match input {
        Input::Predictions => 0,
        Input::Labels => 1,
    }
}

fn check_time(t: i64, now: i64, skew: i64, model: (&str, &str)) -> Result<(), Reject> {
    if t < 0 || t > now.saturating_add(skew) {
        return Err(Reject::invalid(
            "absurd_timestamp",
            &format!("timestamp {t} ms is negative or more than {skew} ms ahead of the clock"),
            model,
        ));
    }
    Ok(())
}

fn warn_rate_limited(
    log: &mut HashMap<&'static str, (Instant, u64)>,
    kind: &'static str,
    message: &str,
) {
    let now = Instant::now();
    let entry = log
        .entry(kind)
        .or_insert((now - Duration::from_secs(3600), 0));
    if now.duration_since(entry.0) >= Duration::from_secs(10) {
        warn!(kind, suppressed = entry.1, "{message}");
        *entry = (now, 0);
    } else {
        entry.1 += 1;
    }
}

/// Why an input was dead-lettered.
struct Reject {
    kind: &'static str,
    message: String,
    model: (String, String),
}

impl Reject {
    fn codec(e: CodecError) -> Self {
        Reject {
            kind: e.kind(),
            message: e.to_string(),
            model: (UNKNOWN.0.to_string(), UNKNOWN.1.to_string()),
        }
    }

    fn invalid(kind: &'static str, message: &str, model: (&str, &str)) -> Self {
        Reject {
            kind,
            message: message.to_string(),
            model: (model.0.to_string(), model.1.to_string()),
        }
    }
}

/// Keeps the class scores of a prediction so the predicted class's score can be looked up
/// once the whole datum is read (the predicted label may come after the scores).
#[derive(Default)]
struct ScoreOfPredicted<'a> {
    scores: Vec<(&'a str, f64)>,
}

impl<'a> ScoreOfPredicted<'a> {
    fn score_of(&self, class: &str) -> Option<f32> {
        self.score_f64(class).map(|p| p as f32)
    }

    fn score_f64(&self, class: &str) -> Option<f64> {
        self.scores
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, p)| *p)
    }
}

/// [`recycle`] for the class-score buffer.
fn recycle_scores<'b>(mut scores: Vec<(&str, f64)>) -> Vec<(&'b str, f64)> {
    scores.clear();
    scores.into_iter().map(|(_, p)| ("", p)).collect()
}

/// Reuses an empty staging buffer's allocation for another lifetime: collecting an emptied
/// `vec::IntoIter` into a vector of a same-layout element type is done in place by the
/// standard library, so no allocation happens per message (and if it ever were not, it would
/// only cost one).
fn recycle<'b>(mut staged: Vec<(FeatureId, FeatureRef<'_>)>) -> Vec<(FeatureId, FeatureRef<'b>)> {
    staged.clear();
    staged
        .into_iter()
        .map(|(id, _)| (id, FeatureRef::Missing))
        .collect()
}

/// The [`PredictionVisitor`] of the fast path: interns each feature name into the task's
/// [`FeatureInterner`] (a string compare when the name is where it was in the previous
/// message, a hash lookup otherwise; allocating only for a new name) and stages the value
/// with its id until the model and prediction time are known; keeps the class scores too.
struct SignatureOfPredicted<'a, 't> {
    names: &'t mut FeatureInterner,
    hints: &'t mut Vec<FeatureId>,
    staged: Vec<(FeatureId, FeatureRef<'a>)>,
    /// Features skipped because the interner is full.
    dropped: u64,
    scores: ScoreOfPredicted<'a>,
}

impl<'a> PredictionVisitor<'a> for SignatureOfPredicted<'a, '_> {
    #[inline]
    fn feature(&mut self, name: &'a str, value: FeatureRef<'a>) {
        let position = self.staged.len();
        // An out-of-range id never matches, so a missing hint falls back to the lookup.
        let hint = self
            .hints
            .get(position)
            .copied()
            .unwrap_or(FeatureId(u16::MAX));
        match self.names.intern_hinted(name, hint) {
            Ok(id) => {
                match self.hints.get_mut(position) {
                    Some(h) => *h = id,
                    None => self.hints.push(id),
                }
                self.staged.push((id, value));
            }
            Err(_) => self.dropped += 1,
        }
    }

    /// Names arrive in the same order message after message: a name byte-equal to the one
    /// interned at this position needs neither a UTF-8 check nor a hash lookup.
    #[inline]
    fn feature_bytes(
        &mut self,
        name: &'a [u8],
        value: FeatureRef<'a>,
    ) -> std::result::Result<(), NotUtf8> {
        let position = self.staged.len();
        if let Some(id) = self
            .hints
            .get(position)
            .and_then(|h| self.names.hinted(name, *h))
        {
            self.staged.push((id, value));
            return Ok(());
        }
        let name = std::str::from_utf8(name).map_err(|_| NotUtf8)?;
        self.feature(name, value);
        Ok(())
    }

    #[inline]
    fn score(&mut self, class: &'a str, p: f64) {
        self.scores.score(class, p);
    }
}

impl<'a> PredictionVisitor<'a> for ScoreOfPredicted<'a> {
    fn feature(&mut self, _name: &'a str, _value: FeatureRef<'a>) {}

    fn score(&mut self, class: &'a str, p: f64) {
        self.scores.push((class, p));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use driftwatch_codec::PredictionDecoder;
    use driftwatch_core::join::Interner;
    use driftwatch_core::summary::SignatureSummary;
    use driftwatch_core::FeatureValue;

    /// The thread's nice value, from `/proc/thread-self/stat` (the 19th field; the 2nd, the
    /// thread's name in parentheses, may hold spaces).
    #[cfg(target_os = "linux")]
    fn nice_of_this_thread() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(19 - 3).unwrap().parse().unwrap()
    }

    #[test]
    fn a_commit_that_overran_its_interval_makes_the_next_one_run_at_normal_priority() {
        let interval = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert!(commits_keep_up(None, interval));
        assert!(commits_keep_up(Some(ms(400)), interval));
        assert!(commits_keep_up(Some(ms(1_000)), interval));
        assert!(!commits_keep_up(Some(ms(1_001)), interval));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_commit_thread_yields_to_the_loop() {
        // Relative to how the tests were started (`nice cargo test` starts above 0). Started
        // above 10, whether the thread may go back to 10 depends on its privileges: not judged.
        let ours = nice_of_this_thread();
        let after = std::thread::spawn(|| {
            yield_to_the_loop();
            nice_of_this_thread()
        })
        .join()
        .unwrap();
        if ours <= 10 {
            assert_eq!(after, 10);
        }
        // Only the commit thread: this one keeps its priority.
        assert_eq!(nice_of_this_thread(), ours);
    }

    fn prediction(features: Vec<(&str, FeatureValue)>) -> Prediction {
        Prediction {
            request_id: "r1".into(),
            model_id: "fraud".into(),
            model_version: "v1".into(),
            timestamp: 90_000,
            features: features
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v))
                .collect(),
            predicted_label: Some("yes".into()),
            predicted_value: None,
            scores: Some(vec![("no".into(), 0.25), ("yes".into(), 0.75)]),
            tags: vec![],
        }
    }

    #[test]
    fn the_visitor_stages_interned_features_and_keeps_scores() {
        let decoder = PredictionDecoder::current().unwrap();
        let mut names = FeatureInterner::new();
        let mut hints = Vec::new();
        let mut buffer: Vec<(FeatureId, FeatureRef<'static>)> = Vec::with_capacity(8);
        let capacity = buffer.capacity();
        let first = to_avro(&prediction(vec![
            ("age", FeatureValue::Number(42.0)),
            ("country", FeatureValue::Category("FR".into())),
            ("income", FeatureValue::Missing),
        ]))
        .unwrap();
        // Another order and a new name: hints miss, ids stay the same.
        let second = to_avro(&prediction(vec![
            ("country", FeatureValue::Category("DE".into())),
            ("age", FeatureValue::Number(7.0)),
            ("tenure", FeatureValue::Number(1.0)),
        ]))
        .unwrap();
        let mut ids = Vec::new();
        for datum in [&first, &second] {
            let mut v = SignatureOfPredicted {
                names: &mut names,
                hints: &mut hints,
                staged: recycle(std::mem::take(&mut buffer)),
                dropped: 0,
                scores: ScoreOfPredicted::default(),
            };
            let p = decoder.decode(datum, &mut v).unwrap();
            assert_eq!(p.model_id, "fraud");
            assert_eq!(v.scores.score_f64("yes"), Some(0.75));
            assert_eq!(v.dropped, 0);
            ids.push(v.staged.clone());
            buffer = recycle(v.staged);
            assert!(buffer.is_empty());
            assert_eq!(buffer.capacity(), capacity, "the buffer is reused");
        }
        let id = |n: &str| names.get(n).unwrap();
        assert_eq!(
            ids[0],
            vec![
                (id("age"), FeatureRef::Number(42.0)),
                (id("country"), FeatureRef::Category("FR")),
                (id("income"), FeatureRef::Missing),
            ]
        );
        assert_eq!(
            ids[1],
            vec![
                (id("country"), FeatureRef::Category("DE")),
                (id("age"), FeatureRef::Number(7.0)),
                (id("tenure"), FeatureRef::Number(1.0)),
            ]
        );
        assert_eq!(hints, vec![id("country"), id("age"), id("tenure")]);
    }

    #[test]
    fn a_full_interner_drops_new_features_only() {
        let decoder = PredictionDecoder::current().unwrap();
        let mut names = FeatureInterner::with_limit(1);
        let mut hints = Vec::new();
        let datum = to_avro(&prediction(vec![
            ("age", FeatureValue::Number(1.0)),
            ("country", FeatureValue::Category("FR".into())),
        ]))
        .unwrap();
        let mut v = SignatureOfPredicted {
            names: &mut names,
            hints: &mut hints,
            staged: Vec::new(),
            dropped: 0,
            scores: ScoreOfPredicted::default(),
        };
        decoder.decode(&datum, &mut v).unwrap();
        assert_eq!(v.dropped, 1);
        assert_eq!(v.staged.len(), 1);
    }

    /// What a flush sends: the staged values, applied as `push_prediction` does, come out as
    /// the partial's signature.
    #[test]
    fn staged_values_reach_the_flushed_signature() {
        let mut interner = Interner::new();
        let model = interner.intern_model("fraud", "v1").unwrap();
        let mut agg = PartialAggregator::new(0, 60_000).unwrap();
        let age = agg.features_mut().intern("age").unwrap();
        let staged = [(age, FeatureRef::Number(3.0)), (age, FeatureRef::Missing)];
        let sig = agg.signature_mut(model, 61_000);
        for &(id, value) in &staged {
            match value {
                FeatureRef::Missing => sig.update_missing(id),
                FeatureRef::Number(x) => sig.update_number(id, x),
                FeatureRef::Category(c) => sig.update_category(id, c),
            }
        }
        sig.update_output(Some("yes"), None, Some(0.75));
        let out = agg.flush(&interner, i64::MIN);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bucket_start, 60_000);
        let mut names = FeatureInterner::new();
        let s =
            SignatureSummary::from_bytes(out[0].signature.as_deref().unwrap(), &mut names).unwrap();
        let f = s.feature_by_name(&names, "age").unwrap();
        assert_eq!((f.count(), f.missing()), (1, 1));
        assert_eq!(s.score().mean(), Some(0.75));
        // Round trip through the wire form the monitor reads.
        let back: ModelPartial = driftwatch_codec::from_avro(&to_avro(&out[0]).unwrap()).unwrap();
        assert_eq!(back, out[0]);
    }
}
