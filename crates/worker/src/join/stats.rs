//! What the join stage tells about itself: [`JoinStats`] (read through the stage's handle and
//! served on `/metrics`), the meters it is built from, librdkafka's statistics (lag, last
//! stable offsets, broker states) and the periodic log lines.
//!
//! The loop owns the meters. Each publication ([`crate::runtime::Stage::publish`], at most
//! every [`crate::runtime::PUBLISH_EVERY`] and after every rebalance) builds a [`JoinStats`]
//! and leaves it in [`Shared`] for the handle; only the records read per input are counted
//! live (atomics), so throughput read through the handle is never a publication behind.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use driftwatch_core::join::Input;
use driftwatch_core::JoinCounters;
use hdrhistogram::Histogram;
use rdkafka::statistics::Statistics;
use tracing::info;

use super::partition::{input_index, model_key};
use super::stage::Join;
use super::standby::StandbyCounters;
use crate::changelog::RestoreTotals;

/// [`JoinStats::processing_micros`] times one message in this many: two clock reads for
/// every message were a measurable part of the loop's time, and a sample gives the same
/// quantiles.
pub const TIMED_EVERY: u64 = 16;

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
    /// the oldest pending one, as of the last scan ([`BUFFER_SCAN_EVERY`]).
    pub buffers: BTreeMap<i32, (u64, Option<i64>)>,
    /// Records read per topic.
    pub events_in: BTreeMap<String, u64>,
    /// Per input topic: records checked against their key's murmur2 partition, misrouted, and
    /// the likely partitioner ([`super::routing`]).
    pub misrouted: BTreeMap<String, super::routing::TopicRouting>,
    /// Records written per topic (partials, dead letters).
    pub events_out: BTreeMap<String, u64>,
    /// Consumer lag per (topic, partition), from the client's statistics.
    pub consumer_lag: BTreeMap<(String, i32), i64>,
    /// Time to decode and join one message, microseconds: one message in [`TIMED_EVERY`] is
    /// timed.
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
    /// state (partials taken from the aggregators, changelog changes swapped out; both are
    /// encoded by the committing thread), µs.
    pub batch_micros: Option<Histogram<u64>>,
    /// Exactly-once: time from a commit's start to its transaction committed (records sent,
    /// offsets added, commit acknowledged), µs; the stage keeps processing meanwhile.
    pub commit_micros: Option<Histogram<u64>>,
    /// Feature values left out of signatures: a current task's feature-name interner was
    /// full, or a signature could not be serialized (counted when its batch committed).
    pub signature_losses: u64,
    /// Changelog restores (exactly-once): records and bytes read, entries rebuilt, and the
    /// wall-clock seconds spent, summed over every restore of this worker.
    pub restore: RestoreTotals,
    /// Standby replicas (`join.standby_replicas`): partitions followed now, changelog
    /// records applied to them, stores sealed for a hand-over or a stop (`None`: off).
    pub standby: Option<StandbyCounters>,
    /// Transactions committed and aborted (exactly-once).
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// Whether the stage runs exactly-once.
    pub exactly_once: bool,
    /// Local state store (`join.state.dir`): buffer entries moved to disk since the stage
    /// started, and entries on disk now.
    pub state_spilled: u64,
    pub state_on_disk: u64,
    /// Schema registry (`[schema_registry]`): the error of a fetch that keeps failing (the
    /// registry does not answer; records of that id wait), and the input partitions held for
    /// a schema id being fetched.
    pub schema_registry_error: Option<String>,
    pub schema_registry_held: usize,
}

impl JoinStats {
    /// Sum over all models.
    pub fn total(&self) -> JoinCounters {
        self.per_model
            .values()
            .fold(JoinCounters::default(), |a, c| a.merged(c))
    }
}

/// What the stage's handle reads: the latest published [`JoinStats`] and the records read
/// per input, counted as they are read.
pub(super) struct Shared {
    published: Mutex<JoinStats>,
    read: [AtomicU64; 2],
    /// The input topics, by [`input_index`].
    topics: [String; 2],
}

impl Shared {
    pub(super) fn new(predictions: String, ground_truth: String) -> Self {
        Shared {
            published: Mutex::new(JoinStats::default()),
            read: [AtomicU64::new(0), AtomicU64::new(0)],
            topics: [predictions, ground_truth],
        }
    }

    /// One record of `input` read (the hot path: one uncontended atomic add).
    #[inline]
    pub(super) fn count_read(&self, input: Input) {
        self.read[input_index(input)].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn publish(&self, stats: JoinStats) {
        *lock(&self.published) = stats;
    }

    /// The latest publication, with the records read as of now.
    pub(super) fn stats(&self) -> JoinStats {
        let mut stats = lock(&self.published).clone();
        for (topic, read) in self.topics.iter().zip(&self.read) {
            let n = read.load(Ordering::Relaxed);
            if n > 0 {
                stats.events_in.insert(topic.clone(), n);
            }
        }
        stats
    }
}

fn lock(m: &Mutex<JoinStats>) -> MutexGuard<'_, JoinStats> {
    // A panic while publishing leaves the previous snapshot or the new one, both whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stage's meters, updated by the loop.
pub(super) struct Meters {
    pub(super) label_delay: BTreeMap<String, Histogram<u64>>,
    pub(super) events_out: BTreeMap<String, u64>,
    pub(super) consumer_lag: BTreeMap<(String, i32), i64>,
    /// Last stable offset per (input, partition) from the client's statistics.
    pub(super) last_stable: HashMap<(usize, i32), i64>,
    /// Per (source, partition), the consumer's application offset from the statistics: past
    /// the transaction markers that follow the last record read (the repartition topic is
    /// written in transactions, and its last stable offset counts the commit marker).
    pub(super) app_offset: HashMap<(usize, i32), i64>,
    /// Whether every broker was up in the latest statistics.
    pub(super) brokers_up: bool,
    pub(super) processing_micros: Option<Histogram<u64>>,
    /// Messages handled, for timing one in [`TIMED_EVERY`] ([`Join::handle_message`]).
    pub(super) handled: u64,
    pub(super) producing: bool,
    pub(super) outcome_lag_ms: Option<Histogram<u64>>,
    pub(super) input_age_ms: Option<Histogram<u64>>,
    pub(super) batch_micros: Option<Histogram<u64>>,
    pub(super) commit_micros: Option<Histogram<u64>>,
    pub(super) restore: RestoreTotals,
    pub(super) transactions_committed: u64,
    pub(super) transactions_aborted: u64,
    pub(super) dropped_on_revoke: u64,
    /// Signatures the committed batches could not serialize.
    pub(super) signature_errors: u64,
    /// The buffers' gauges ([`JoinStats::buffers`]) and when they were scanned.
    pub(super) buffers: BTreeMap<i32, (u64, Option<i64>)>,
    pub(super) buffers_scanned: Option<Instant>,
    /// Per kind of warning: when it was last logged and how many were suppressed since.
    pub(super) warnings: HashMap<&'static str, (Instant, u64)>,
    pub(super) last_log: Instant,
}

impl Default for Meters {
    fn default() -> Self {
        Meters {
            label_delay: BTreeMap::new(),
            events_out: BTreeMap::new(),
            consumer_lag: BTreeMap::new(),
            last_stable: HashMap::new(),
            app_offset: HashMap::new(),
            brokers_up: false,
            // One µs to one minute at 3 significant figures; cannot fail for these constants.
            processing_micros: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
            handled: 0,
            producing: false,
            outcome_lag_ms: Histogram::new_with_bounds(1, 3_600_000, 3).ok(),
            input_age_ms: Histogram::new_with_bounds(1, 3_600_000, 3).ok(),
            batch_micros: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
            commit_micros: Histogram::new_with_bounds(1, 3_600_000_000, 3).ok(),
            restore: RestoreTotals::default(),
            transactions_committed: 0,
            transactions_aborted: 0,
            dropped_on_revoke: 0,
            signature_errors: 0,
            buffers: BTreeMap::new(),
            buffers_scanned: None,
            warnings: HashMap::new(),
            last_log: Instant::now(),
        }
    }
}

/// Records `d` in microseconds.
pub(super) fn record_micros(h: &mut Option<Histogram<u64>>, d: Duration) {
    if let Some(h) = h.as_mut() {
        h.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
}

/// Logs `message` for `kind`, at most once every 10 s; the rest are counted as suppressed.
pub(super) fn warn_rate_limited(
    log: &mut HashMap<&'static str, (Instant, u64)>,
    kind: &'static str,
    message: &str,
) {
    let now = Instant::now();
    let entry = log
        .entry(kind)
        .or_insert((now - Duration::from_secs(3600), 0));
    if now.duration_since(entry.0) >= Duration::from_secs(10) {
        tracing::warn!(kind, suppressed = entry.1, "{message}");
        *entry = (now, 0);
    } else {
        entry.1 += 1;
    }
}

/// How often the buffers are counted for [`JoinStats::buffers`] while the assignment stays
/// the same. Counting scans every entry, tombstones included (millions per partition with
/// days-long timeouts): at every publish (5 per second) that held the loop for milliseconds
/// each time and cost more CPU than decoding the labels.
pub(super) const BUFFER_SCAN_EVERY: Duration = Duration::from_secs(5);

impl Join {
    /// Counts the buffers' entries again when the last count is older than
    /// [`BUFFER_SCAN_EVERY`], the partitions held have changed since, or `force`.
    pub(super) fn scan_buffers(&mut self, force: bool) {
        let m = &mut self.meters;
        let same_partitions = m.buffers.len() == self.tasks.len()
            && self.tasks.keys().all(|p| m.buffers.contains_key(p));
        let fresh = m
            .buffers_scanned
            .is_some_and(|at| at.elapsed() < BUFFER_SCAN_EVERY);
        if !force && same_partitions && fresh {
            return;
        }
        m.buffers = self
            .tasks
            .iter()
            .map(|(p, t)| {
                let b = t.task.buffer().stats();
                let entries = (b.pending_predictions + b.pending_labels + b.tombstones) as u64;
                (*p, (entries, b.oldest_pending))
            })
            .collect();
        m.buffers_scanned = Some(Instant::now());
    }

    /// The stage's accounting as of now (the buffers' gauges as of [`Self::scan_buffers`]).
    pub(super) fn stats(&self) -> JoinStats {
        let mut per_model = self.retired.clone();
        for (k, c) in self.rejections.counted() {
            let e = per_model.entry(k.clone()).or_default();
            *e = e.merged(c);
        }
        for t in self.tasks.values() {
            for (id, c) in t.task.all_counters() {
                let e = per_model.entry(model_key(&t.task, id)).or_default();
                *e = e.merged(&c);
            }
        }
        let m = &self.meters;
        let label_delay_ms = m
            .label_delay
            .iter()
            .map(|(model, h)| {
                let q = |q| h.value_at_quantile(q);
                (model.clone(), (q(0.5), q(0.9), q(0.99), h.len()))
            })
            .collect();
        let signature_losses = self
            .tasks
            .values()
            .map(|t| t.features_dropped + t.aggregator.signature_errors())
            .sum::<u64>()
            + self.meters.signature_errors;
        let (state_spilled, state_on_disk) = self.spill_counts();
        JoinStats {
            state_spilled,
            state_on_disk,
            per_model,
            label_delay_ms,
            assigned: self.assigned_partitions(),
            dropped_on_revoke: m.dropped_on_revoke,
            buffers: m.buffers.clone(),
            // Filled live by the handle (`Shared::stats`).
            events_in: BTreeMap::new(),
            events_out: m.events_out.clone(),
            misrouted: self
                .routing
                .published([&self.topics.predictions, &self.topics.ground_truth]),
            consumer_lag: self.lag(),
            processing_micros: m.processing_micros.clone(),
            producing: m.producing,
            outcome_lag_ms: m.outcome_lag_ms.clone(),
            input_age_ms: m.input_age_ms.clone(),
            batch_micros: m.batch_micros.clone(),
            commit_micros: m.commit_micros.clone(),
            signature_losses,
            restore: m.restore,
            standby: self.standby.as_ref().map(|s| s.counters()),
            transactions_committed: m.transactions_committed,
            transactions_aborted: m.transactions_aborted,
            exactly_once: self.exactly_once,
            schema_registry_error: self.registry.as_ref().and_then(|r| r.failing()),
            schema_registry_held: self.registry.as_ref().map_or(0, |r| r.held_count()),
        }
    }

    /// Lag per (topic, partition): the last stable offset (statistics) minus the next offset
    /// this worker will read, for partitions it has read from.
    fn lag(&self) -> BTreeMap<(String, i32), i64> {
        let m = &self.meters;
        let mut out = m.consumer_lag.clone();
        let sources = self.source_topics();
        for (p, t) in &self.tasks {
            for (source, topic) in sources.iter().enumerate() {
                let next = t.next_offset[source];
                if let (Some(ls), true) = (m.last_stable.get(&(source, *p)), next >= 0) {
                    out.insert((topic.to_string(), *p), (ls - next).max(0));
                }
            }
        }
        out
    }

    /// Takes in librdkafka's statistics: broker states, last stable offsets, consumer lag.
    pub(super) fn observe_statistics(&mut self, s: &Statistics) {
        // Offsets seen while a broker is down are stale: no input counts as caught up then,
        // so processing time cannot push the watermark past records the outage holds back.
        let mut brokers = s.brokers.values().filter(|b| b.nodeid >= 0).peekable();
        let brokers_up = brokers.peek().is_some() && brokers.all(|b| b.state == "UP");
        self.meters.brokers_up = brokers_up;
        for (name, topic) in &s.topics {
            let Some(source) = self.known_source(name) else {
                continue;
            };
            let m = &mut self.meters;
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.app_offset >= 0 {
                    m.app_offset.insert((source, *id), p.app_offset);
                }
                if *id >= 0 && p.ls_offset >= 0 {
                    m.last_stable.insert((source, *id), p.ls_offset);
                }
                if *id >= 0 && p.consumer_lag >= 0 {
                    m.consumer_lag.insert((name.clone(), *id), p.consumer_lag);
                }
            }
        }
    }

    /// Logs the accounting every 30 s (and when the stage stops, `force`).
    pub(super) fn log_stats(&mut self, force: bool) {
        if !force && self.meters.last_log.elapsed() < Duration::from_secs(30) {
            return;
        }
        self.meters.last_log = Instant::now();
        self.scan_buffers(force);
        let stats = self.stats();
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
}
