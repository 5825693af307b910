//! The monitor stage runtime: partials in, drift events, retrain events and metrics snapshots
//! out.
//!
//! Partials are keyed by model id, so one member of the monitor group owns every partial of a
//! model and so all of its decisions. The [`Monitor`] (pure, in the core crate) merges them into
//! windows and decides; this module moves bytes and time:
//! - partials wait in an [`EpochQueue`] until every join task's announced watermark (the
//!   progress records, [`crate::join_progress`]) passed their epoch; each epoch is then applied
//!   and judged at its end ([`Monitor::apply_epoch`]), so verdicts follow event time, not the
//!   speed at which the partials came;
//! - every `commit_interval` (processing time) it publishes what the epochs produced and
//!   commits the partials' offsets, never past a partial still waiting;
//! - metrics snapshots go out every `metrics_interval`;
//! - a partial's signature (feature and output sketches) is handed to the monitor with it; one
//!   that does not decode is skipped and counted in [`MonitorStats::bad_signatures`], the
//!   partial's counters still merge.
//!
//! Exactly-once (the default): a transactional producer; each evaluation's drift events, retrain
//! events and snapshots go out in one transaction with the offsets of the partials consumed so
//! far (`send_offsets_to_transaction`), so an output is published once and its input never
//! merged again by a successor. A failed transaction is aborted, its records kept to be sent
//! again in the next one, and the consumer rewound to the committed offsets: the partials read
//! again are dropped by the monitor's duplicate check (source partition, sequence), so none is
//! merged twice. At-least-once (by configuration): outputs are awaited, then offsets committed.
//!
//! State (exactly-once): every transaction also carries what changed in each model's state since
//! the last one ([`driftwatch_core::monitor::snapshot`]: a head with baselines, detectors, drift
//! state machines and retrain policy, and one record per changed window bucket, signature
//! bucket and reference) to the compacted monitor changelog, in the partition of the model's
//! partials. These records, the outputs and the partials' offsets commit together, so a changelog partition always holds the state exactly
//! as of its input partition's committed offset. Rebalances go through the consumer's context
//! into a queue the stage drains before it merges any partial (vector's rebalance bridge,
//! reduced to what one task needs):
//! - revoked partitions: their models are forgotten and their not yet committed output dropped
//!   (the next owner derives it again from the same partials and state, with the same ids);
//! - assigned partitions: their models are restored from the changelog (read to its end, see
//!   [`crate::changelog`]) before their first partial is merged.
//!
//! At-least-once keeps no changelog: a model that moves starts over on its new owner from the
//! partials after the committed offsets. Retrain cooldowns hold across owners in both modes
//! (replayed from `retrain-events` at start-up).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use driftwatch_codec::{from_avro, to_avro, to_json, AvroRecord, JsonRecord};
use driftwatch_core::monitor::{snapshot, Monitor, MonitorOutput, PolicyState};
use driftwatch_core::{DriftEvent, ModelMetrics, ModelReference, RetrainEvent};
use std::collections::{BTreeMap, BTreeSet};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::{Message, TopicPartitionList};
use tracing::{debug, error, info, warn};

mod epochs;

use epochs::PartitionClock;

use crate::changelog::{ensure_changelog, ChangelogReader};
use crate::clients::{
    consumer_config, member_config, producer_config, transactional_producer_config,
};
use crate::error::{Result, WorkerError};
use crate::settings::{OutputFormat, Settings};
use crate::transactions::{
    blocking, is_fatal, retrying, rewind_to_committed, send_waiting, ProducerSlot, Reincarnations,
};

/// What the monitor stage published so far, readable while it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorStats {
    pub partials: u64,
    pub bad_partials: u64,
    /// Partials whose signature could not be decoded (their counters still merged).
    pub bad_signatures: u64,
    pub drift_events: Vec<DriftEvent>,
    pub retrain_events: Vec<RetrainEvent>,
    /// The latest snapshot per (model, version, window).
    pub latest_metrics: Vec<ModelMetrics>,
    /// Event-time progress: the latest bucket end seen.
    pub progress_ms: i64,
    /// Reference profiles loaded from the model-references topic, as `model/version`.
    pub references: Vec<String>,
    /// Models whose retrain policy was restored from the retrain-events topic at start-up.
    pub restored_policies: Vec<String>,
    /// Transactions committed and aborted (exactly-once).
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// Changelog restores (exactly-once): how many, records and bytes read, models restored,
    /// seconds spent.
    pub restores: u64,
    pub restore_records: u64,
    pub restore_bytes: u64,
    pub restored_models: u64,
    pub restore_seconds: f64,
}

/// A handle on a running monitor stage.
#[derive(Clone)]
pub struct MonitorStageHandle {
    stats: Arc<Mutex<MonitorStats>>,
}

impl MonitorStageHandle {
    /// A snapshot of what the stage published.
    pub fn stats(&self) -> MonitorStats {
        lock(&self.stats).clone()
    }
}

fn lock(m: &Mutex<MonitorStats>) -> MutexGuard<'_, MonitorStats> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A rebalance, as the consumer's context saw it.
#[derive(Debug)]
enum RebalanceEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// The monitor consumer's context: rebalances are queued for the stage, which applies them
/// before it merges another partial (the callbacks run inside the consumer's poll, where the
/// stage's state is out of reach).
#[derive(Default)]
pub struct MonitorContext {
    events: Mutex<Vec<RebalanceEvent>>,
    pending: AtomicBool,
}

impl MonitorContext {
    fn push(&self, event: RebalanceEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
        self.pending.store(true, Ordering::Release);
    }

    fn take(&self) -> Vec<RebalanceEvent> {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl rdkafka::ClientContext for MonitorContext {}

impl ConsumerContext for MonitorContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions =
            |tpl: &TopicPartitionList| tpl.elements().iter().map(|e| e.partition()).collect();
        match rebalance {
            Rebalance::Assign(tpl) => self.push(RebalanceEvent::Assigned(partitions(tpl))),
            Rebalance::Revoke(tpl) => self.push(RebalanceEvent::Revoked(partitions(tpl))),
            Rebalance::Error(e) => error!(error = %e, "monitor rebalance error"),
        }
    }
}

/// How long one changelog restore may take before the stage gives up (and restarts).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(240);

/// A monitor stage, built but not yet consuming.
pub struct MonitorStage {
    settings: Settings,
    consumer: StreamConsumer<MonitorContext>,
    /// The changelog reader (exactly-once only).
    changelog: Option<ChangelogReader>,
    producer: ProducerSlot,
    /// Configuration of the producer, to open a new incarnation after it was fenced.
    producer_config: rdkafka::ClientConfig,
    reincarnations: Reincarnations,
    monitor: Monitor,
    stats: Arc<Mutex<MonitorStats>>,
    exactly_once: bool,
    /// Next offset per partials partition, as far as read.
    positions: BTreeMap<i32, i64>,
    /// Per partials partition, its event time and the partials waiting for it (see
    /// [`PartitionClock`]).
    clocks: BTreeMap<i32, PartitionClock>,
    /// Output of epochs applied since the last publication (at-least-once).
    pending: MonitorOutput,
    /// Partition each model's partials come from (to forget models whose partition left).
    model_partition: BTreeMap<String, i32>,
    assigned: BTreeSet<i32>,
    /// Encoded output of evaluations whose transaction has not committed yet.
    unpublished: Vec<OutputRecord>,
}

/// One encoded output record.
#[derive(Clone)]
struct OutputRecord {
    topic: String,
    key: Vec<u8>,
    /// The model the record is about.
    model: String,
    /// `None`: a tombstone (changelog records only).
    payload: Option<Vec<u8>>,
    /// Set for changelog records: the partition of the model's partials.
    partition: Option<i32>,
}

impl MonitorStage {
    /// Builds the clients and the monitor from the settings.
    pub fn new(settings: Settings) -> Result<Self> {
        settings.validate()?;
        let monitor = Monitor::new(settings.monitor.detection.clone())
            .map_err(|e| WorkerError::Config(format!("monitor: {e}")))?;
        let consumer: StreamConsumer<MonitorContext> =
            member_config(&settings.kafka, &settings.monitor.group_id)
                .create_with_context(MonitorContext::default())?;
        let exactly_once = settings.kafka.exactly_once();
        let changelog = if exactly_once {
            Some(ChangelogReader::for_monitor(&settings)?)
        } else {
            None
        };
        let producer_config = if exactly_once {
            transactional_producer_config(&settings.kafka, &settings.monitor.group_id)
        } else {
            producer_config(&settings.kafka)
        };
        let producer = ProducerSlot::new(producer_config.create()?);
        // Input and outputs must exist: one clear error at start-up instead of delivery errors.
        let t = &settings.topics;
        for topic in [
            &t.model_partials,
            &t.drift_events,
            &t.retrain_events,
            &t.model_metrics,
        ] {
            crate::topics::partition_count(
                consumer.client(),
                &settings.kafka.bootstrap_servers,
                topic,
                Duration::from_secs(10),
            )?;
        }
        let stats = MonitorStats::default();
        Ok(MonitorStage {
            settings,
            consumer,
            changelog,
            producer,
            producer_config,
            reincarnations: Reincarnations::default(),
            monitor,
            stats: Arc::new(Mutex::new(stats)),
            exactly_once,
            positions: BTreeMap::new(),
            clocks: BTreeMap::new(),
            pending: MonitorOutput::default(),
            model_partition: BTreeMap::new(),
            assigned: BTreeSet::new(),
            unpublished: Vec::new(),
        })
    }

    /// Replays every retrain event this deployment published into the policies, so cooldowns
    /// and daily budgets hold across restarts and hand-overs (exactly-once: a model's snapshot,
    /// restored on assignment, carries its policy too). Called after the producer's
    /// `init_transactions`, which aborts at once a transaction a killed predecessor under the
    /// same transactional id left open, instead of waiting for it to time out.
    fn replay_retrain_history(&mut self) -> Result<()> {
        let history = read_retrain_history(&self.settings)?;
        let mut by_model: BTreeMap<&str, Vec<&RetrainEvent>> = BTreeMap::new();
        for e in &history {
            by_model.entry(e.model_id.as_str()).or_default().push(e);
        }
        let mut restored = Vec::new();
        for (model, events) in by_model {
            self.monitor
                .restore_policy_state(model, PolicyState::replay(events));
            restored.push(model.to_string());
        }
        if !history.is_empty() {
            info!(
                events = history.len(),
                models = restored.len(),
                "retrain history replayed"
            );
        }
        lock(&self.stats).restored_policies = restored;
        Ok(())
    }

    /// A handle to read what the stage published.
    pub fn handle(&self) -> MonitorStageHandle {
        MonitorStageHandle {
            stats: self.stats.clone(),
        }
    }

    /// Consumes partials until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        if self.exactly_once {
            let partitions = crate::topics::partition_count(
                self.consumer.client(),
                &self.settings.kafka.bootstrap_servers,
                &self.settings.topics.model_partials,
                Duration::from_secs(10),
            )?;
            ensure_changelog(
                &self.settings,
                self.settings.monitor_changelog_topic(),
                partitions,
                "topics.monitor_changelog",
            )
            .await?;
            let timeout = self
                .settings
                .kafka
                .transaction_timeout
                .max(Duration::from_secs(30));
            self.producer.get().init_transactions(timeout)?;
            self.producer.get().begin_transaction()?;
        }
        blocking(|| self.replay_retrain_history())?;
        self.consumer
            .subscribe(&[&self.settings.topics.model_partials])?;
        let m = &self.settings.monitor;
        let mut tick = tokio::time::interval(m.commit_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let metrics_every = m.metrics_interval;
        let mut last_metrics = Instant::now();
        let (ref_tx, mut references) = tokio::sync::mpsc::unbounded_channel::<ModelReference>();
        let follower = follow_references(&self.settings, ref_tx);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(r) = references.recv() => {
                    match self.monitor.set_reference_signature(
                        &r.model_id, &r.model_version, &r.signature, r.created_at, r.created_at,
                    ) {
                        Ok(()) => {
                            info!(model = %r.model_id, version = %r.model_version, rows = r.rows, source = %r.source, "reference profile loaded");
                            lock(&self.stats).references.push(r.key());
                        }
                        Err(e) => warn!(error = %e, model = %r.model_id, "reference profile not usable"),
                    }
                }
                msg = self.consumer.recv() => match msg {
                    Ok(msg) => {
                        // Detached (partials are few and small) so that the rebalances can be
                        // applied first: a partial of a partition just assigned waits for
                        // its restore.
                        let msg = msg.detach();
                        self.apply_rebalances()?;
                        self.positions.insert(msg.partition(), msg.offset() + 1);
                        self.read(&msg);
                        self.apply_ready_epochs();
                    }
                    Err(e) => warn!(error = %e, "consumer error"),
                },
                _ = tick.tick() => {
                    self.apply_rebalances()?;
                    self.apply_ready_epochs();
                    let mut out = std::mem::take(&mut self.pending);
                    let judged = self.clocks.values().map(PartitionClock::judged_through).max();
                    if let Some(now) = judged.filter(|&t| t > i64::MIN) {
                        if last_metrics.elapsed() >= metrics_every {
                            last_metrics = Instant::now();
                            out.metrics = self.monitor.all_metrics(now);
                        }
                    }
                    if self.exactly_once {
                        self.record_output(&out);
                        self.commit_transaction()?;
                    } else if self.publish(out).await {
                        let offsets = self.offsets_to_commit();
                        if offsets.count() > 0 {
                            if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
                                debug!(error = %e, "commit");
                            }
                        }
                    }
                }
            }
        }
        info!("monitor stage shutting down");
        if let Some(f) = follower {
            f.abort();
        }
        if self.exactly_once {
            if let Err(e) = self.commit_transaction() {
                error!(error = %e, "final transaction failed; a successor reads those partials again");
            }
        } else {
            self.apply_ready_epochs();
            let out = std::mem::take(&mut self.pending);
            if self.publish(out).await {
                let offsets = self.offsets_to_commit();
                if offsets.count() > 0 {
                    if let Err(e) = self.consumer.commit(&offsets, CommitMode::Sync) {
                        debug!(error = %e, "final commit");
                    }
                }
            }
        }
        self.consumer.unsubscribe();
        let _ = self.producer.get().flush(Duration::from_secs(10));
        Ok(())
    }

    /// Applies the rebalances the consumer's context queued: revoked partitions' models are
    /// forgotten with their uncommitted output (their next owner derives it again), assigned
    /// partitions' models restored from the changelog (exactly-once).
    fn apply_rebalances(&mut self) -> Result<()> {
        for event in self.consumer.context().take() {
            match event {
                RebalanceEvent::Revoked(gone) => self.forget(&gone),
                RebalanceEvent::Assigned(added) => {
                    // Eager protocol: the whole assignment, after a revoke of the whole
                    // previous one; incremental: the added partitions. Either way, what is
                    // not held yet is restored.
                    let new: Vec<i32> = added
                        .into_iter()
                        .filter(|p| !self.assigned.contains(p))
                        .collect();
                    if !new.is_empty() {
                        self.restore(&new)?;
                        self.assigned.extend(new);
                    }
                }
            }
        }
        Ok(())
    }

    /// Forgets the models of partitions that left this worker.
    fn forget(&mut self, gone: &[i32]) {
        if gone.is_empty() {
            return;
        }
        let models: BTreeSet<String> = self
            .model_partition
            .iter()
            .filter(|(_, p)| gone.contains(p))
            .map(|(m, _)| m.clone())
            .collect();
        for m in &models {
            self.monitor.hand_over(m);
            self.model_partition.remove(m);
        }
        let before = self.unpublished.len();
        self.unpublished.retain(|r| !models.contains(&r.model));
        self.clocks.retain(|p, _| !gone.contains(p));
        let pending = &mut self.pending;
        pending
            .drift_events
            .retain(|e| !models.contains(&e.model_id));
        pending
            .retrain_events
            .retain(|e| !models.contains(&e.model_id));
        pending.metrics.retain(|m| !models.contains(&m.model_id));
        for p in gone {
            self.positions.remove(p);
            self.assigned.remove(p);
        }
        info!(partitions = ?gone, models = models.len(), dropped_output = before - self.unpublished.len(), "partials partitions left this worker; their models are forgotten");
    }

    /// Restores the models of newly assigned partitions from the changelog: the latest record
    /// of each key (a tombstone deletes it), grouped by model. A model whose records are
    /// refused starts over from its next partials; records left stale (the model's
    /// configuration changed) are deleted in the next transaction.
    fn restore(&mut self, partitions: &[i32]) -> Result<()> {
        let Some(reader) = &self.changelog else {
            return Ok(());
        };
        // Per partition, the latest value of each key (`None`: deleted).
        let mut latest: BTreeMap<i32, BTreeMap<Vec<u8>, Option<Vec<u8>>>> = BTreeMap::new();
        let totals = blocking(|| {
            reader.read_partitions(partitions, RESTORE_TIMEOUT, |m| {
                latest.entry(m.partition()).or_default().insert(
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().map(<[u8]>::to_vec),
                );
                Ok(())
            })
        })?;
        let topic = reader.topic().to_owned();
        let mut models = 0u64;
        for (partition, records) in latest {
            let live = records.into_iter().filter_map(|(k, v)| Some((k, v?)));
            let (grouped, bad) = snapshot::group_records(live);
            for (key, e) in bad {
                warn!(error = %e, partition, key = %String::from_utf8_lossy(&key), "monitor state record refused");
            }
            for (model, records) in grouped {
                match self.monitor.import_model(&model, records) {
                    Ok(r) => {
                        if r.config_changed {
                            warn!(model = %model, "model configuration changed since its state was written: windows and detectors start over, the retrain policy is kept");
                        }
                        for key in r.stale_keys {
                            self.unpublished.push(OutputRecord {
                                topic: topic.clone(),
                                key,
                                model: model.clone(),
                                payload: None,
                                partition: Some(partition),
                            });
                        }
                        self.model_partition.insert(model, partition);
                        models += 1;
                    }
                    Err(e) => {
                        warn!(error = %e, partition, model = %model, "model state refused: the model starts over from the next partials");
                    }
                }
            }
        }
        info!(
            topic = %topic,
            partitions = ?partitions,
            records = totals.records,
            bytes = totals.bytes,
            models,
            seconds = totals.elapsed.as_secs_f64(),
            "monitor state restored"
        );
        let mut s = lock(&self.stats);
        s.restores += 1;
        s.restore_records += totals.records;
        s.restore_bytes += totals.bytes;
        s.restored_models += models;
        s.restore_seconds += totals.elapsed.as_secs_f64();
        Ok(())
    }

    /// Encodes what changed in every model this worker owns (state records), for the open
    /// transaction.
    fn record_state_changes(&mut self) {
        let topic = self.settings.monitor_changelog_topic();
        for model in self.monitor.dirty_models() {
            let Some(&partition) = self.model_partition.get(&model) else {
                continue;
            };
            if !self.assigned.contains(&partition) {
                continue;
            }
            match self.monitor.export_model(&model) {
                Ok(records) => {
                    for r in records {
                        self.unpublished.push(OutputRecord {
                            topic: topic.clone(),
                            key: r.key,
                            model: model.clone(),
                            payload: r.value,
                            partition: Some(partition),
                        });
                    }
                }
                Err(e) => error!(error = %e, "model state not written"),
            }
        }
    }

    /// Logs one evaluation's output and keeps it, encoded, for the open transaction.
    fn record_output(&mut self, out: &MonitorOutput) {
        let t = &self.settings.topics;
        let format = self.settings.monitor.output_format;
        for e in &out.drift_events {
            info!(
                model = %e.model_id, version = %e.model_version, detector = %e.detector,
                feature = e.feature.as_deref().unwrap_or("-"), from = e.previous_state.as_str(),
                to = e.state.as_str(), value = e.value, threshold = e.threshold, id = %e.event_id,
                "drift event"
            );
            self.unpublished
                .extend(encode(&t.drift_events, &e.model_id, e, format));
        }
        for e in &out.retrain_events {
            info!(model = %e.model_id, version = %e.model_version, id = %e.event_id, reasons = ?e.reasons, dry_run = e.dry_run, "retrain event");
            self.unpublished
                .extend(encode(&t.retrain_events, &e.model_id, e, format));
        }
        for m in &out.metrics {
            self.unpublished
                .extend(encode(&t.model_metrics, &m.model_id, m, format));
        }
        let mut s = lock(&self.stats);
        s.drift_events.extend(out.drift_events.iter().cloned());
        s.retrain_events.extend(out.retrain_events.iter().cloned());
        if !out.metrics.is_empty() {
            s.latest_metrics = out.metrics.clone();
        }
    }

    /// Commits the unpublished output with the offsets of the partials merged so far. On an
    /// abortable failure the output is kept for the next transaction and the consumer rewound
    /// to the committed offsets (re-read partials are dropped as duplicates); when the producer
    /// was fenced, the same after opening a new incarnation of it (bounded, see
    /// [`Reincarnations`]).
    fn commit_transaction(&mut self) -> Result<()> {
        self.record_state_changes();
        let timeout = self.settings.kafka.transaction_timeout;
        let result = blocking(|| self.try_commit(timeout));
        let Err(e) = result else {
            self.unpublished.clear();
            lock(&self.stats).transactions_committed += 1;
            return Ok(());
        };
        lock(&self.stats).transactions_aborted += 1;
        let e = if is_fatal(&e) {
            e
        } else {
            warn!(error = %e, "monitor transaction failed: aborting; its output goes out with the next one");
            let aborted = blocking(|| -> std::result::Result<(), KafkaError> {
                let producer = self.producer.get();
                retrying("monitor", || producer.abort_transaction(timeout))?;
                producer.begin_transaction()?;
                Ok(())
            });
            match aborted {
                Ok(()) => {
                    return blocking(|| -> Result<()> {
                        rewind_to_committed(&self.consumer, timeout)?;
                        Ok(())
                    });
                }
                // The abort itself can leave the producer unusable: replace it as when fenced.
                Err(a) if is_fatal(&a) => a,
                Err(a) => return Err(a.into()),
            }
        };
        if !self.reincarnations.allow() {
            error!(error = %e, limit = Reincarnations::MAX, "fatal transaction error again: stopping the monitor stage");
            return Err(e.into());
        }
        warn!(error = %e, "monitor producer fenced: opening a new incarnation; the output goes out with the next transaction");
        blocking(|| -> Result<()> {
            self.producer
                .reincarnate(&self.producer_config, timeout.max(Duration::from_secs(30)))?;
            rewind_to_committed(&self.consumer, timeout)?;
            Ok(())
        })
    }

    fn try_commit(&self, timeout: Duration) -> std::result::Result<(), KafkaError> {
        let producer = self.producer.get();
        for r in &self.unpublished {
            let mut record = FutureRecord::to(&r.topic).key(r.key.as_slice());
            if let Some(payload) = &r.payload {
                record = record.payload(payload.as_slice());
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            send_waiting(&producer, record)?;
        }
        let offsets = self.offsets_to_commit();
        if offsets.count() > 0 {
            if let Some(metadata) = self.consumer.group_metadata() {
                retrying("monitor", || {
                    producer.send_offsets_to_transaction(&offsets, &metadata, timeout)
                })?;
            }
        }
        retrying("monitor", || producer.commit_transaction(timeout))?;
        producer.begin_transaction()
    }

    /// At-least-once: publishes one evaluation's output; true when everything was delivered.
    async fn publish(&mut self, out: MonitorOutput) -> bool {
        self.record_output(&out);
        let mut deliveries = Vec::with_capacity(self.unpublished.len());
        for r in self.unpublished.drain(..) {
            let mut record = FutureRecord::to(&r.topic).key(r.key.as_slice());
            if let Some(payload) = &r.payload {
                record = record.payload(payload.as_slice());
            }
            match self.producer.get().send_result(record) {
                Ok(d) => deliveries.push(d),
                Err((e, _)) => error!(error = %e, topic = %r.topic, "record not enqueued"),
            }
        }
        let mut ok = true;
        for d in deliveries {
            if !matches!(d.await, Ok(Ok(_))) {
                ok = false;
            }
        }
        if !ok {
            error!("some monitor output was not delivered; offsets not committed");
        }
        ok
    }
}

/// Encodes one output record in the configured format.
fn encode<T: AvroRecord + JsonRecord>(
    topic: &str,
    key: &str,
    record: &T,
    format: OutputFormat,
) -> Option<OutputRecord> {
    let payload = match format {
        OutputFormat::Avro => to_avro(record),
        OutputFormat::Json => to_json(record).map(String::into_bytes),
    };
    match payload {
        Ok(payload) => Some(OutputRecord {
            topic: topic.to_string(),
            key: key.as_bytes().to_vec(),
            model: key.to_string(),
            payload: Some(payload),
            partition: None,
        }),
        Err(e) => {
            error!(error = %e, topic, "record not encodable");
            None
        }
    }
}

/// Reads every reference profile of the `model-references` topic from its start and then
/// follows it, forwarding each one. Every monitor worker reads all of them (the topic is small
/// and compacted), so a model finds its reference whichever worker owns it. `None` when the
/// topic does not exist: live traffic then serves as the reference.
fn follow_references(
    settings: &Settings,
    tx: tokio::sync::mpsc::UnboundedSender<ModelReference>,
) -> Option<tokio::task::JoinHandle<()>> {
    use rdkafka::{Offset, TopicPartitionList};
    let topic = settings.topics.model_references.clone();
    // Assigned, not subscribed: no group membership, nothing committed.
    let consumer: StreamConsumer = match consumer_config(
        &settings.kafka,
        &format!("{}-references", settings.monitor.group_id),
    )
    .create()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "reference reader not created");
            return None;
        }
    };
    let partitions = match consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)) {
        Ok(md) => md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .unwrap_or(0),
        Err(_) => 0,
    };
    if partitions == 0 {
        info!(%topic, "no reference topic: the first traffic of each version is its reference");
        return None;
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        if let Err(e) = tpl.add_partition_offset(&topic, p as i32, Offset::Beginning) {
            warn!(error = %e, "reference partition");
        }
    }
    if let Err(e) = consumer.assign(&tpl) {
        warn!(error = %e, "reference topic not assigned");
        return None;
    }
    Some(tokio::spawn(async move {
        while !tx.is_closed() {
            match consumer.recv().await {
                Ok(m) => match m.payload().map(from_avro::<ModelReference>) {
                    Some(Ok(r)) => {
                        // The stage is gone once the channel closes; the loop ends below.
                        let _ = tx.send(r);
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, offset = m.offset(), "undecodable reference skipped")
                    }
                    None => {} // a tombstone: the reference was deleted
                },
                Err(e) => warn!(error = %e, "reference reader"),
            }
        }
    }))
}

/// Every retrain event on the retrain-events topic, read from the start to its end as of now
/// (Avro or JSON, whichever the deployment writes), the way a changelog is restored: an
/// aborted transaction's events (a worker killed mid-evaluation) are skipped, and an open one
/// is waited out rather than mistaken for the end.
fn read_retrain_history(settings: &Settings) -> Result<Vec<RetrainEvent>> {
    let topic = &settings.topics.retrain_events;
    let reader = ChangelogReader::of(
        settings,
        topic.clone(),
        &format!("{}-history", settings.monitor.group_id),
    )?;
    let partitions = crate::topics::partition_count(
        reader.client(),
        &settings.kafka.bootstrap_servers,
        topic,
        Duration::from_secs(10),
    )?;
    let partitions: Vec<i32> = (0..partitions)
        .filter_map(|p| i32::try_from(p).ok())
        .collect();
    let mut events = Vec::new();
    reader.read_partitions(&partitions, Duration::from_secs(120), |m| {
        let decoded = match m.payload() {
            Some(p) if p.first() == Some(&b'{') => {
                driftwatch_codec::from_json_slice::<RetrainEvent>(p).ok()
            }
            Some(p) => from_avro::<RetrainEvent>(p).ok(),
            None => None,
        };
        match decoded {
            Some(e) => events.push(e),
            None => warn!(offset = m.offset(), "undecodable retrain event skipped"),
        }
        Ok(())
    })?;
    Ok(events)
}
