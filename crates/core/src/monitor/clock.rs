//! The monitor's event-time clock, and the partials waiting for it.
//!
//! # Why
//! A verdict must not depend on how fast the data came: a catch-up after an outage, a rescale
//! or a backfill must decide what live processing decided. So the monitor does not evaluate
//! on a wall-clock tick over whatever partials happened to arrive; it evaluates at *epoch
//! ends* (one bucket width apart) in event time, each over exactly the changes the join made
//! before that end.
//!
//! # How
//! Every partial carries its *epoch* (see [`PartialAggregator`](crate::join::PartialAggregator)):
//! when, in event time, the join task made its changes. With every flush a join task also
//! announces its watermark, after that flush's partials, on every partials partition; what it
//! sends later lies in a later epoch. [`JoinClock`] keeps the latest announcement of every
//! task read on one partition; that partition's time is their minimum, known once every task
//! (the input partition count) has announced (one clock per partition: a clock fed by
//! partitions read at different speeds could pass a partial not read yet). An
//! [`EpochQueue`] holds partials until that time passes their epoch's end, and then hands
//! out one epoch at a time, oldest first, its partials in a fixed order: applied and judged
//! at the epoch's end, they give the same verdicts on every run, whatever the flush
//! timing, batch sizes, worker count or restarts of either stage.
//!
//! A partial whose epoch ended before the last epoch handed out (its task was restored behind
//! the others, or it was written without an epoch) is handed out at once and judged at that
//! last end: never lost, and the model's time never goes back.
//!
//! Limits, documented in `docs/ARCHITECTURE.md`: a join task that has no owner holds the
//! clock back (as a Kafka Streams task would); the join's idle fallback advances a quiet
//! task's watermark by processing time, so the last epochs of a stream that stops are judged
//! when that fallback fires.

use std::collections::BTreeMap;

use crate::{ModelPartial, TimestampMs};

/// The minimum of the join tasks' announced watermarks. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinClock {
    tasks: usize,
    watermarks: BTreeMap<i32, TimestampMs>,
}

impl JoinClock {
    /// A clock that has heard from no task.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes task `source`'s announcement of `watermark`, one of `tasks` join tasks. A
    /// watermark never goes back; a new task count (the inputs were repartitioned) starts over.
    pub fn observe(&mut self, tasks: usize, source: i32, watermark: TimestampMs) {
        if tasks != self.tasks {
            self.tasks = tasks;
            self.watermarks.clear();
        }
        if usize::try_from(source).is_ok_and(|s| s < tasks) {
            let w = self.watermarks.entry(source).or_insert(watermark);
            *w = (*w).max(watermark);
        }
    }

    /// The monitor's event time: the smallest announced watermark, once every task announced.
    pub fn time(&self) -> Option<TimestampMs> {
        if self.tasks == 0 || self.watermarks.len() < self.tasks {
            return None;
        }
        self.watermarks.values().min().copied()
    }

    /// Tasks heard from, and how many there are.
    pub fn heard(&self) -> (usize, usize) {
        (self.watermarks.len(), self.tasks)
    }
}

/// One epoch handed out by [`EpochQueue::pop_ready`].
#[derive(Debug)]
pub struct Epoch<T> {
    /// When to judge it: the epoch's end, or the last end handed out for a late partial.
    pub end: TimestampMs,
    /// Its partials, ordered by (model, version, bucket, source partition, sequence), each
    /// with the tag it was pushed with.
    pub partials: Vec<(T, ModelPartial)>,
}

/// Partials waiting for the clock to pass their epoch. `T` tags each (where it was read).
#[derive(Debug, Clone)]
pub struct EpochQueue<T> {
    by_end: BTreeMap<TimestampMs, Vec<(T, ModelPartial)>>,
    /// End of the last epoch handed out.
    handed_out: TimestampMs,
}

impl<T> Default for EpochQueue<T> {
    fn default() -> Self {
        EpochQueue {
            by_end: BTreeMap::new(),
            handed_out: TimestampMs::MIN,
        }
    }
}

impl<T> EpochQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a partial until its epoch ends (one without an epoch: until its bucket ends).
    pub fn push(&mut self, tag: T, partial: ModelPartial) {
        let start = partial.epoch_start.unwrap_or(partial.bucket_start);
        let end = start.saturating_add(partial.bucket_width_ms.max(1));
        self.by_end.entry(end).or_default().push((tag, partial));
    }

    /// The oldest epoch that ended at or before `time`, if any.
    pub fn pop_ready(&mut self, time: TimestampMs) -> Option<Epoch<T>> {
        let entry = self.by_end.first_entry()?;
        let end = *entry.key();
        // Late partials are judged at the last end handed out: time never goes back.
        if end > time && end > self.handed_out {
            return None;
        }
        let mut partials = entry.remove();
        partials.sort_by(|(_, a), (_, b)| {
            (
                &a.model_id,
                &a.model_version,
                a.bucket_start,
                a.source_partition,
                a.sequence,
            )
                .cmp(&(
                    &b.model_id,
                    &b.model_version,
                    b.bucket_start,
                    b.source_partition,
                    b.sequence,
                ))
        });
        self.handed_out = self.handed_out.max(end);
        Some(Epoch {
            end: self.handed_out,
            partials,
        })
    }

    /// Keeps only the partials `keep` says yes to (those of partitions that stay).
    pub fn retain(&mut self, mut keep: impl FnMut(&T, &ModelPartial) -> bool) {
        self.by_end.retain(|_, v| {
            v.retain(|(t, p)| keep(t, p));
            !v.is_empty()
        });
    }

    /// Every waiting partial's tag.
    pub fn tags(&self) -> impl Iterator<Item = &T> {
        self.by_end.values().flatten().map(|(t, _)| t)
    }

    /// Partials waiting.
    pub fn len(&self) -> usize {
        self.by_end.values().map(Vec::len).sum()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.by_end.is_empty()
    }

    /// End of the last epoch handed out (`i64::MIN` before the first).
    pub fn handed_out(&self) -> TimestampMs {
        self.handed_out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::join::partial::empty_partial;

    fn partial(
        model: &str,
        bucket: i64,
        epoch: Option<i64>,
        source: i32,
        seq: u64,
    ) -> ModelPartial {
        let mut p = empty_partial(model, "v1", bucket, 60_000, source);
        p.sequence = seq;
        p.epoch_start = epoch;
        p
    }

    #[test]
    fn clock_is_the_minimum_once_every_task_announced_and_never_goes_back() {
        let mut c = JoinClock::new();
        c.observe(2, 0, 500);
        assert_eq!(c.time(), None, "task 1 not heard yet");
        c.observe(2, 1, 300);
        assert_eq!(c.time(), Some(300));
        c.observe(2, 1, 200);
        assert_eq!(c.time(), Some(300), "an older announcement is ignored");
        c.observe(2, 1, 900);
        assert_eq!(c.time(), Some(500));
        c.observe(2, 7, 0);
        assert_eq!(c.time(), Some(500), "no such task");
        c.observe(3, 0, 1_000);
        assert_eq!(
            c.time(),
            None,
            "repartitioned: every task must announce again"
        );
        assert_eq!(c.heard(), (1, 3));
    }

    #[test]
    fn epochs_come_out_oldest_first_once_the_clock_passed_their_end_in_a_fixed_order() {
        let mut q = EpochQueue::new();
        q.push(1, partial("b", 0, Some(60_000), 1, 9));
        q.push(2, partial("a", 60_000, Some(60_000), 0, 3));
        q.push(3, partial("a", 0, Some(60_000), 1, 1));
        q.push(4, partial("a", 0, Some(0), 0, 2));
        assert!(q.pop_ready(59_999).is_none());
        let e = q.pop_ready(150_000).unwrap();
        assert_eq!((e.end, e.partials.len()), (60_000, 1));
        let e = q.pop_ready(150_000).unwrap();
        assert_eq!(e.end, 120_000);
        let tags: Vec<i32> = e.partials.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, [3, 2, 1], "by model, then bucket");
        assert!(q.pop_ready(150_000).is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn a_late_partial_is_judged_at_the_last_end_handed_out() {
        let mut q = EpochQueue::new();
        q.push((), partial("a", 0, Some(120_000), 0, 1));
        assert_eq!(q.pop_ready(200_000).unwrap().end, 180_000);
        q.push((), partial("a", 0, Some(0), 1, 1));
        q.push((), partial("a", 0, None, 2, 1));
        let e = q.pop_ready(0).unwrap();
        assert_eq!(
            (e.end, e.partials.len()),
            (180_000, 2),
            "no epoch: by its bucket's end"
        );
        assert!(q.pop_ready(0).is_none());
        assert_eq!(q.handed_out(), 180_000);
    }

    #[test]
    fn retain_drops_the_partials_of_partitions_that_left() {
        let mut q = EpochQueue::new();
        q.push((0, 10), partial("a", 0, Some(0), 0, 1));
        q.push((1, 11), partial("b", 0, Some(0), 0, 2));
        q.retain(|&(partition, _), _| partition != 1);
        assert_eq!(q.len(), 1);
        assert_eq!(q.tags().copied().collect::<Vec<_>>(), [(0, 10)]);
    }
}
