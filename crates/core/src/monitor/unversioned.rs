//! Labels of a model without a version, per bucket: what the `misrouted_inputs` check needs of
//! the partials the monitor makes no series of ([`unversioned_labels`](super::unversioned_labels)).
//!
//! A label carries no version, so one the join could not attribute through its prediction
//! (an orphan, a duplicate, and every misrouted one) is accounted to its model hint with an
//! empty version. In `join.misrouted = "account"` with a label producer on another partitioner,
//! most misrouted labels end that way: their predictions sit on another partition. The
//! monitor keeps, per model and bucket start (label time), the misrouted labels and all labels
//! of such partials, and each version's check adds those of its window's span.
//!
//! - Idempotent: a bucket remembers the `(source partition, sequence)` of the partials it
//!   took, as the windows do, so a partial delivered twice counts once.
//! - Bounded: buckets older than a retention span behind the newest one are dropped (twice the longest window plus the maturity delay: a version's
//!   judged window ends a maturity delay behind its predictions, and labels come after them).
//!   A partial for an evicted span is ignored. What is kept depends only on the partials in
//!   the order the epochs apply them, never on when the monitor evaluates.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::detectors::UnversionedLabels;
use super::{ModelState, Monitor};
use crate::{ModelPartial, TimestampMs};

/// Whether a partial only accounts for labels the join could not attribute to a version:
/// orphan and duplicate labels (and dead-lettered ones) go to the model their label names, with
/// an empty version, because labels carry none. Windows, metrics and drift states of such a
/// phantom version `""` would be noise (no predictions, and a progress driven by label times);
/// the counters stay on the partials topic and in the join's accounting, and their labels in
/// the model's tally for the `misrouted_inputs` check (this module). A model whose
/// predictions really have an empty version gets its series from their partials (received
/// predictions, outcomes, signatures), and these then merge into it.
pub fn unversioned_labels(p: &ModelPartial) -> bool {
    p.model_version.is_empty()
        && p.counters.predictions == 0
        && p.counters.received_predictions == 0
        && p.confusion.is_empty()
        && p.regression.count == 0
        && p.signature.is_none()
}

impl Monitor {
    /// Counts a partial of [`unversioned_labels`] into its model's tally (creating the model's
    /// state, without a version, when it has none yet).
    pub(super) fn tally_unversioned(&mut self, p: &ModelPartial) {
        if p.counters.misrouted_labels == 0 && p.counters.labels == 0 {
            return;
        }
        let config = &self.config;
        let m = self
            .models
            .entry(p.model_id.clone())
            .or_insert_with(|| ModelState::new(config.for_model(&p.model_id)));
        let longest = m
            .config
            .window_specs()
            .iter()
            .map(|w| w.length_ms)
            .max()
            .unwrap_or(0);
        let retention = longest
            .saturating_add(m.config.maturity_ms)
            .saturating_mul(2);
        if m.unversioned.add(p, retention) {
            m.dirty = true;
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TallyBucket {
    misrouted: u64,
    labels: u64,
    /// `(source partition, sequence)` of the partials counted.
    seen: BTreeSet<(i32, u64)>,
}

/// Unversioned labels of one model by bucket start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnversionedTally {
    buckets: BTreeMap<TimestampMs, TallyBucket>,
}

impl UnversionedTally {
    /// Counts an unversioned partial; keeps `retention_ms` of buckets behind the newest.
    /// Whether it changed anything.
    pub fn add(&mut self, p: &ModelPartial, retention_ms: i64) -> bool {
        let c = &p.counters;
        if c.misrouted_labels == 0 && c.labels == 0 {
            return false;
        }
        let newest = self
            .buckets
            .keys()
            .next_back()
            .map_or(p.bucket_start, |&n| n.max(p.bucket_start));
        let cutoff = newest.saturating_sub(retention_ms);
        if p.bucket_start < cutoff {
            return false;
        }
        let b = self.buckets.entry(p.bucket_start).or_default();
        if !b.seen.insert((p.source_partition, p.sequence)) {
            return false;
        }
        b.misrouted = b.misrouted.saturating_add(c.misrouted_labels);
        b.labels = b.labels.saturating_add(c.labels);
        self.buckets = self.buckets.split_off(&cutoff);
        true
    }

    /// Sums of the buckets starting in `[start, end)`.
    pub fn sum(&self, start: TimestampMs, end: TimestampMs) -> UnversionedLabels {
        let mut s = UnversionedLabels::default();
        if start >= end {
            return s;
        }
        for b in self.buckets.range(start..end).map(|(_, b)| b) {
            s.misrouted = s.misrouted.saturating_add(b.misrouted);
            s.labels = s.labels.saturating_add(b.labels);
        }
        s
    }

    /// Forgets everything (a model handed over).
    pub fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::join::partial::empty_partial;
    use crate::JoinCounters;

    fn partial(start: i64, partition: i32, seq: u64, misrouted: u64, labels: u64) -> ModelPartial {
        let mut p = empty_partial("m", "", start, 60_000, partition);
        p.sequence = seq;
        p.counters = JoinCounters {
            labels,
            orphan_labels: labels,
            misrouted_labels: misrouted,
            ..JoinCounters::default()
        };
        p
    }

    #[test]
    fn sums_a_span_counts_each_partial_once_and_drops_old_buckets() {
        let mut t = UnversionedTally::default();
        assert!(t.add(&partial(0, 0, 1, 3, 4), 600_000));
        assert!(t.add(&partial(60_000, 1, 1, 2, 2), 600_000));
        // Delivered again: not counted twice.
        assert!(!t.add(&partial(60_000, 1, 1, 2, 2), 600_000));
        let s = t.sum(0, 120_000);
        assert_eq!((s.misrouted, s.labels), (5, 6));
        assert_eq!(t.sum(60_000, 120_000).misrouted, 2);
        // A bucket 11 minutes later evicts the one at 0 (10 minutes kept).
        assert!(t.add(&partial(660_000, 0, 2, 1, 1), 600_000));
        assert_eq!(t.sum(0, 60_000), UnversionedLabels::default());
        // And a partial for the evicted span is ignored.
        assert!(!t.add(&partial(0, 2, 1, 9, 9), 600_000));
        assert_eq!(t.sum(0, 700_000).misrouted, 3);
    }
}
