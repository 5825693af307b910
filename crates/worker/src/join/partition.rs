//! Per-partition state: one [`PartitionTask`] per partition pair, its read positions and the
//! offsets of the records still queued in it, and what happens to tasks as partitions come
//! and go.
//!
//! Offsets: a task's records wait in its merge queue until the two inputs' timestamps let the
//! task take them, and only then change the state. The offset a commit may record for an
//! input is therefore that of the oldest record still queued (or the next one to read when
//! none is): `queued_offsets` keeps the queued records' offsets, oldest first, and loses its
//! front as the task processes them. Queued records are not in the changelog, so after a
//! crash they are read again.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use driftwatch_codec::borrowed::FeatureRef;
use driftwatch_core::join::changelog::ChangelogCursor;
use driftwatch_core::join::{
    ColdTier, Input, JoinEvent, JoinTask, ModelVersionId, PartialAggregator,
};
use driftwatch_core::summary::FeatureId;
use driftwatch_core::JoinCounters;
use hdrhistogram::Histogram;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, error};

use super::dead_letter::UNKNOWN;
use super::stage::Join;
use super::stats::warn_rate_limited;
use crate::changelog::Restored;
use crate::runtime::InputPartition;

/// A gap between two polls of every task longer than this is a stall of the loop (ticks come
/// every 100 ms at most).
const STALL: std::time::Duration = std::time::Duration::from_secs(1);

/// One partition pair's join state.
pub(super) struct PartitionTask {
    pub(super) task: JoinTask,
    pub(super) aggregator: PartialAggregator,
    /// Next offset to read per source topic ([`SOURCES`]), as far as this worker read.
    pub(super) next_offset: [i64; SOURCES],
    /// Per input queue of the task, the (source, offset) of the records waiting in it, oldest
    /// first: the offset a commit may record for a source is the oldest of its records. Both
    /// queues may hold records of the repartition topic.
    pub(super) queued_offsets: [VecDeque<(usize, i64)>; 2],
    /// What the changelog holds of this task (exactly-once).
    pub(super) cursor: ChangelogCursor,
    /// The task's counters as of the last committed transaction (exactly-once): what is
    /// kept in the totals when the task is dropped after an abort.
    pub(super) committed: Vec<(ModelVersionId, JoinCounters)>,
    /// Feature id at each position of the previous prediction: interning hints.
    pub(super) feature_hints: Vec<FeatureId>,
    /// The staging buffer of [`super::visitor::SignatureOfPredicted`], kept empty between
    /// messages so its allocation is reused.
    pub(super) staged: Vec<(FeatureId, FeatureRef<'static>)>,
    /// The class-score buffer of [`super::visitor::ScoreOfPredicted`], reused the same way.
    pub(super) scores: Vec<(&'static str, f64)>,
    /// Features not summarized because the task's feature interner is full.
    pub(super) features_dropped: u64,
}

impl Join {
    /// Creates the task of `partition`: `restored`, or a new one with the cold tier `cold`
    /// (`None`: all in memory).
    pub(super) fn create_task(
        &mut self,
        partition: i32,
        restored: Option<JoinTask>,
        cold: Option<(Box<dyn ColdTier>, usize)>,
    ) {
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
                if let Some((tier, hot_capacity)) = cold {
                    t.set_cold_tier(tier, hot_capacity);
                }
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
                        next_offset: [-1; SOURCES],
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

    /// Installs restored tasks.
    pub(super) fn install_restored(&mut self, restored: Restored) {
        let r = &mut self.meters.restore;
        r.restores += 1;
        r.resumed += restored.resumed;
        r.records += restored.records;
        r.bytes += restored.bytes;
        r.entries += restored.entries;
        r.seconds += restored.elapsed.as_secs_f64();
        for (p, task) in restored.tasks {
            self.tasks.remove(&p);
            self.create_task(p, Some(task), None);
        }
    }

    /// Drops tasks whose state is in the changelog (exactly-once: revoked, or rebuilt after an
    /// abort). Their totals keep what was committed.
    pub(super) fn abandon(&mut self, partitions: &HashSet<i32>) {
        for p in partitions {
            self.take_task(*p);
        }
    }

    /// Takes `partition`'s task out, its committed counts kept in the totals: to drop it
    /// ([`Self::abandon`]) or to hand it to the standby thread.
    pub(super) fn take_task(&mut self, partition: i32) -> Option<JoinTask> {
        let t = self.tasks.remove(&partition)?;
        keep_totals(&mut self.retired, &t.task, t.committed.iter().copied());
        self.retire_spills(&t.task);
        Some(t.task)
    }

    /// Drops tasks with their pending state (at-least-once: revoked), counted in
    /// `dropped_on_revoke`.
    pub(super) fn retire(&mut self, partitions: &HashSet<i32>) {
        for p in partitions {
            if let Some(t) = self.tasks.remove(p) {
                let b = t.task.buffer().stats();
                let pending = (b.pending_predictions + b.pending_labels) as u64;
                let (qp, ql) = t.task.queued();
                self.meters.dropped_on_revoke += pending + (qp + ql) as u64;
                keep_totals(&mut self.retired, &t.task, t.task.all_counters());
                self.retire_spills(&t.task);
            }
        }
    }

    pub(super) fn assigned_partitions(&self) -> Vec<i32> {
        self.tasks.keys().copied().collect()
    }

    /// Sets read positions from `offsets` (entries without an offset are left alone). Tasks
    /// start there: one whose inputs have nothing past them receives no record and must still
    /// know where it stands to count as caught up (the watermark's idle fallback needs that).
    pub(super) fn set_positions(&mut self, offsets: &TopicPartitionList) {
        // The statistics' offsets are of the position before; new ones follow.
        self.meters.app_offset.clear();
        for e in offsets.elements() {
            let Offset::Offset(o) = e.offset() else {
                continue;
            };
            let Some(source) = self.known_source(e.topic()) else {
                continue;
            };
            if let Some(t) = self.tasks.get_mut(&e.partition()) {
                t.next_offset[source] = o;
            }
        }
    }

    /// Next offset to read of every input partition a task processed from: what a commit may
    /// record once the output of that work is in Kafka.
    pub(super) fn processed_offsets(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        let sources = self.source_topics();
        for (p, t) in &self.tasks {
            for (i, topic) in sources.iter().enumerate() {
                // Records still queued are not processed: the commit stops at the oldest.
                let next = t
                    .queued_offsets
                    .iter()
                    .filter_map(|q| q.iter().find(|(s, _)| *s == i).map(|(_, o)| *o))
                    .min()
                    .unwrap_or(t.next_offset[i]);
                if next >= 0 {
                    if let Err(e) = tpl.add_partition_offset(topic, *p, Offset::Offset(next)) {
                        debug!(error = %e, "offset not recorded");
                    }
                }
            }
        }
        tpl
    }

    /// Sets caught-up flags, lets every task make progress (idle fallback), and returns paused
    /// inputs whose queues have drained enough to resume.
    pub(super) fn poll_all(
        &mut self,
        now: i64,
        paused: &HashSet<InputPartition>,
    ) -> Vec<InputPartition> {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        let at = Instant::now();
        if self
            .last_poll_all
            .is_some_and(|t| at.duration_since(t) > STALL)
        {
            // The loop was held (a restore, a seal, a slow commit, the machine): the last
            // stable offsets are as old as the stall and may call an input caught up that has
            // records waiting. Marked not caught up, each input's idle clock starts over once
            // the flags below set it again, so the processing-time fallback needs a quiet
            // stretch observed after the stall, never the stall itself.
            for t in self.tasks.values_mut() {
                t.task.set_caught_up(Input::Predictions, false);
                t.task.set_caught_up(Input::Labels, false);
            }
        }
        self.last_poll_all = Some(at);
        for p in partitions {
            let source_caught_up = |source: usize| {
                let last_stable = self.meters.last_stable.get(&(source, p));
                match (last_stable, self.tasks.get(&p)) {
                    _ if !self.meters.brokers_up => false,
                    (Some(ls), Some(t)) => {
                        // The application offset also steps over transaction markers.
                        let app = self.meters.app_offset.get(&(source, p)).copied();
                        let next = t.next_offset[source].max(app.unwrap_or(-1));
                        // Without a record read yet, an empty partition (ls 0) is caught up.
                        next >= *ls || (*ls == 0 && next < 0)
                    }
                    _ => false,
                }
            };
            // With repartitioning, both inputs also arrive through the repartition topic.
            let republished_caught_up = self
                .repartition
                .as_ref()
                .is_none_or(|r| r.settled(p, at) && source_caught_up(REPARTITION_SOURCE));
            let flags = [Input::Predictions, Input::Labels].map(|input| {
                (
                    input,
                    source_caught_up(input_index(input)) && republished_caught_up,
                )
            });
            for (input, caught_up) in flags {
                if let Some(t) = self.tasks.get_mut(&p) {
                    t.task.set_caught_up(input, caught_up);
                }
            }
            self.poll_one(p, now);
        }
        paused
            .iter()
            .filter(|ip| {
                self.tasks.get(&ip.partition).is_none_or(|t| {
                    let (qp, ql) = t.task.queued();
                    let q = match ip.topic {
                        0 => qp,
                        1 => ql,
                        _ => qp.max(ql),
                    };
                    q <= self.max_queued / 4
                })
            })
            .copied()
            .collect()
    }

    /// Lets one task process what it can and folds its events into partials and meters.
    pub(super) fn poll_one(&mut self, partition: i32, now: i64) {
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
        let m = &mut self.meters;
        for e in events.iter() {
            t.aggregator.fold(e);
            match e {
                JoinEvent::Matched(o) => {
                    if let Some(h) = m.outcome_lag_ms.as_mut() {
                        let lag = now - o.prediction_time.max(o.label_time);
                        h.saturating_record(u64::try_from(lag).unwrap_or(0));
                    }
                    if let Some(model) = t.task.interner().model_id(o.model) {
                        if !m.label_delay.contains_key(model) {
                            // Up to 30 days at 3 significant figures; construction cannot fail
                            // for these constants, and a failure would only skip the histogram.
                            if let Ok(h) = Histogram::new_with_bounds(1, 30 * 24 * 3_600_000, 3) {
                                m.label_delay.insert(model.to_string(), h);
                            }
                        }
                        if let Some(h) = m.label_delay.get_mut(model) {
                            h.saturating_record(u64::try_from(o.label_delay_ms).unwrap_or(0));
                        }
                    }
                }
                JoinEvent::Rejected { error, time, .. } => {
                    warn_rate_limited(
                        &mut m.warnings,
                        "join_rejected",
                        &format!("input rejected by the join at time {time}: {error}"),
                    );
                }
                _ => {}
            }
        }
    }
}

/// Adds the counters of a task being dropped to the totals that outlive it.
pub(super) fn keep_totals(
    retired: &mut BTreeMap<(String, String), JoinCounters>,
    task: &JoinTask,
    counters: impl IntoIterator<Item = (ModelVersionId, JoinCounters)>,
) {
    for (id, c) in counters {
        let e = retired.entry(model_key(task, id)).or_default();
        *e = e.merged(&c);
    }
}

/// The (model id, version) an id of `task` stands for.
pub(super) fn model_key(task: &JoinTask, id: ModelVersionId) -> (String, String) {
    task.interner()
        .model(id)
        .map(|(m, v)| (m.to_string(), v.to_string()))
        .unwrap_or_else(|| (UNKNOWN.0.to_string(), UNKNOWN.1.to_string()))
}

/// The index of an input: in per-input arrays, and the index of its own topic among the
/// sources.
pub(super) fn input_index(input: Input) -> usize {
    match input {
        Input::Predictions => 0,
        Input::Labels => 1,
    }
}

/// Source topics: the stage's subscription, by index — `predictions` (0), `ground-truth` (1)
/// and, with `join.misrouted = "repartition"`, the repartition topic (2).
pub(super) const SOURCES: usize = 3;

/// The repartition topic's index among the sources.
pub(super) const REPARTITION_SOURCE: usize = 2;

/// The input of a direct source (0 or 1).
pub(super) fn source_input(source: usize) -> Input {
    if source == 0 {
        Input::Predictions
    } else {
        Input::Labels
    }
}

impl Join {
    /// The source topics read, by index.
    pub(super) fn source_topics(&self) -> Vec<&str> {
        let mut out = vec![
            self.topics.predictions.as_str(),
            self.topics.ground_truth.as_str(),
        ];
        if let Some(r) = &self.repartition {
            out.push(r.topic.as_str());
        }
        out
    }

    /// The index of a topic among the sources, if it is one.
    pub(super) fn known_source(&self, topic: &str) -> Option<usize> {
        self.source_topics().iter().position(|t| *t == topic)
    }

    /// The index of a topic read (anything else counts as the ground truth's).
    #[inline]
    pub(super) fn source_of(&self, topic: &str) -> usize {
        if topic == self.topics.predictions {
            0
        } else if self.repartition.as_ref().is_some_and(|r| r.topic == topic) {
            REPARTITION_SOURCE
        } else {
            1
        }
    }
}
