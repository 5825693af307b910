//! Per-(model, version) buckets and the sliding windows over them.
//!
//! The join stage sends [`ModelPartial`]s keyed by (model, version, prediction-time bucket).
//! [`ModelWindows`] keeps one merged partial per bucket, in a map ordered by bucket start (a
//! ring in effect: buckets enter at the new end and leave at the old end). Several partials of
//! one bucket merge with [`merge_partials`]; an exact re-delivery (same source partition and
//! sequence) is recognized and dropped, so a replay after a restart does not count twice.
//!
//! # Time
//! - *progress*: the latest bucket end among partials that carry resolved predictions. It
//!   only moves forward, driven by the data. A partial with zero counters carries only a
//!   signature (the join sends those as predictions arrive, before any is resolved): it must
//!   not move the windows, or a backlog whose predictions are read ahead of their labels would
//!   cut windows where no outcome has arrived yet. Nor do orphan, duplicate or late labels,
//!   bucketed by their own time: labels arriving days after the last prediction would cut
//!   windows past all the data. Nor does one counting only `received_predictions`
//!   (predictions taken in, not resolved).
//! - *end* = progress − `maturity_ms`: labels take time to arrive, so a bucket younger than the
//!   maturity delay is incomplete and left out of every window (its accuracy would be measured
//!   on the quickest labels only, a biased sample).
//! - A named window of length `L` is the merge of the buckets lying entirely in `[end − L, end)`.
//! - A bucket *matures* once it ends at or before `end`; [`ModelWindows::take_matured`] hands
//!   each bucket out once, in bucket order, for the stream detectors and the baseline.
//! - Buckets ending at or before `end − longest window` are evicted. A partial for such a bucket
//!   is counted in [`WindowStats::too_late_partials`] and dropped. A partial for a bucket that
//!   matured but is still retained still merges (windows see it), and is counted in
//!   [`WindowStats::after_maturity_partials`] because the stream detectors have moved on.
//!
//! Buckets keep partials without their `signature`: the monitor hands signatures to its
//! [`SignatureTracker`](super::SignatureTracker), so a bucket merge never decodes sketches.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::join::partial::merge_partials;
use crate::{ModelPartial, TimestampMs};

use super::metrics::Aggregate;

/// A named sliding window, e.g. `15m` of 900 000 ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub name: String,
    pub length_ms: i64,
}

/// A partial that cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("partial of {model}/{version}: bucket width {width} ms is not positive")]
    InvalidWidth {
        model: String,
        version: String,
        width: i64,
    },
    #[error("partial of {model}/{version}: bucket width {got} ms differs from {expected} ms seen before")]
    WidthMismatch {
        model: String,
        version: String,
        expected: i64,
        got: i64,
    },
    #[error("partial of {model}/{version}: bucket start {start} is not a multiple of the width {width} ms")]
    Misaligned {
        model: String,
        version: String,
        start: TimestampMs,
        width: i64,
    },
    #[error("partial of {model}/{version}: bucket {start} is out of the representable time range")]
    TimeOutOfRange {
        model: String,
        version: String,
        start: TimestampMs,
    },
    #[error(transparent)]
    Merge(#[from] crate::join::PartialMergeError),
}

/// What happened to one partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Merged into its bucket.
    Merged,
    /// Same (source partition, sequence) already merged into this bucket: dropped.
    Duplicate,
    /// Its bucket was evicted already: dropped and counted.
    TooLate,
    /// It only accounts for labels of no known version (orphan or duplicate labels): no
    /// version series is made of it (see [`Monitor::ingest`](super::Monitor::ingest)).
    Unversioned,
}

/// Counters of a model version's windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStats {
    pub partials: u64,
    pub duplicates: u64,
    pub too_late_partials: u64,
    pub after_maturity_partials: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bucket {
    partial: ModelPartial,
    /// (source partition, sequence) of every partial merged in, for exact de-duplication.
    seen: Vec<(i32, u64)>,
    matured: bool,
}

/// A bucket handed out once, when it matured.
#[derive(Debug, Clone, PartialEq)]
pub struct MaturedBucket {
    pub start: TimestampMs,
    pub end: TimestampMs,
    pub aggregate: Aggregate,
}

/// One window's merged content.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowView {
    pub name: String,
    pub start: TimestampMs,
    pub end: TimestampMs,
    pub length_ms: i64,
    pub aggregate: Aggregate,
}

/// A bucket's start and its encoded content (`None`: evicted).
pub(crate) type ChangedBucket = (TimestampMs, Option<Vec<u8>>);

/// Buckets and windows of one (model, version).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelWindows {
    specs: Vec<WindowSpec>,
    longest_ms: i64,
    maturity_ms: i64,
    width_ms: Option<i64>,
    /// Persisted bucket by bucket (see [`take_changed_buckets`](Self::take_changed_buckets)),
    /// not with the rest.
    #[serde(skip)]
    buckets: BTreeMap<TimestampMs, Bucket>,
    /// Buckets created, changed or evicted since the last `take_changed_buckets`.
    #[serde(skip)]
    changed: std::collections::BTreeSet<TimestampMs>,
    progress_ms: Option<TimestampMs>,
    /// The monitor's event time at the last epoch that brought this version traffic (see
    /// [`advance_to`](Self::advance_to)).
    clock_ms: Option<TimestampMs>,
    /// Buckets ending at or before this are gone.
    evicted_until: TimestampMs,
    /// Every bucket ending at or before this has been considered by `take_matured`.
    matured_until: TimestampMs,
    /// Buckets created already mature (a late first partial): `take_matured` must look back.
    late_created: Vec<TimestampMs>,
    stats: WindowStats,
}

impl ModelWindows {
    /// Windows of the given specs (non-empty, positive lengths: checked by the config).
    pub fn new(specs: Vec<WindowSpec>, maturity_ms: i64) -> Self {
        let longest_ms = specs.iter().map(|s| s.length_ms).max().unwrap_or(0);
        ModelWindows {
            specs,
            longest_ms,
            maturity_ms: maturity_ms.max(0),
            width_ms: None,
            buckets: BTreeMap::new(),
            changed: std::collections::BTreeSet::new(),
            progress_ms: None,
            clock_ms: None,
            evicted_until: TimestampMs::MIN,
            matured_until: TimestampMs::MIN,
            late_created: Vec::new(),
            stats: WindowStats::default(),
        }
    }

    /// The window specs.
    pub fn specs(&self) -> &[WindowSpec] {
        &self.specs
    }

    /// Bucket width, once a partial has been seen.
    pub fn bucket_width_ms(&self) -> Option<i64> {
        self.width_ms
    }

    /// Latest end of a bucket with resolved predictions: the data's own progress.
    pub fn progress_ms(&self) -> Option<TimestampMs> {
        self.progress_ms
    }

    /// Moves the windows' time to `t` (never back): the monitor's event time, as the join's
    /// watermarks passed it. A bucket is mature once that time is `maturity` past its end, so
    /// the last buckets of a stream mature as time goes on, not only when later predictions
    /// come. Only where there is data: a version without a bucket keeps no time.
    pub fn advance_to(&mut self, t: TimestampMs) {
        if self.progress_ms.is_some() {
            self.clock_ms = Some(self.clock_ms.map_or(t, |c| c.max(t)));
        }
    }

    /// End of every window: the later of the data's progress and the time given to
    /// [`advance_to`](Self::advance_to), minus the maturity delay.
    pub fn end_ms(&self) -> Option<TimestampMs> {
        let now = match (self.progress_ms, self.clock_ms) {
            (Some(p), Some(c)) => Some(p.max(c)),
            (p, c) => p.or(c),
        };
        now.map(|p| p.saturating_sub(self.maturity_ms))
    }

    /// Counters.
    pub fn stats(&self) -> WindowStats {
        self.stats
    }

    /// Buckets retained.
    pub fn retained_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Merges one partial into its bucket and advances progress. Does not evict: call
    /// [`take_matured`](Self::take_matured) then [`evict`](Self::evict).
    pub fn ingest(&mut self, p: &ModelPartial) -> Result<Placement, WindowError> {
        let err_ctx = || (p.model_id.clone(), p.model_version.clone());
        let width = p.bucket_width_ms;
        if width <= 0 {
            let (model, version) = err_ctx();
            return Err(WindowError::InvalidWidth {
                model,
                version,
                width,
            });
        }
        if let Some(expected) = self.width_ms {
            if expected != width {
                let (model, version) = err_ctx();
                return Err(WindowError::WidthMismatch {
                    model,
                    version,
                    expected,
                    got: width,
                });
            }
        }
        if p.bucket_start.rem_euclid(width) != 0 {
            let (model, version) = err_ctx();
            return Err(WindowError::Misaligned {
                model,
                version,
                start: p.bucket_start,
                width,
            });
        }
        let Some(bucket_end) = p.bucket_start.checked_add(width) else {
            let (model, version) = err_ctx();
            return Err(WindowError::TimeOutOfRange {
                model,
                version,
                start: p.bucket_start,
            });
        };
        self.width_ms = Some(width);
        self.stats.partials += 1;
        if bucket_end <= self.evicted_until {
            self.stats.too_late_partials += 1;
            return Ok(Placement::TooLate);
        }
        let id = (p.source_partition, p.sequence);
        match self.buckets.get_mut(&p.bucket_start) {
            Some(b) => {
                if b.seen.contains(&id) {
                    self.stats.duplicates += 1;
                    return Ok(Placement::Duplicate);
                }
                b.partial = merge_partials(&b.partial, p)?;
                // Signatures live in the monitor's signature tracker, not in buckets.
                b.partial.signature = None;
                b.seen.push(id);
                self.changed.insert(p.bucket_start);
                if b.matured {
                    self.stats.after_maturity_partials += 1;
                }
            }
            None => {
                let mut partial = p.clone();
                partial.signature = None;
                self.buckets.insert(
                    p.bucket_start,
                    Bucket {
                        partial,
                        seen: vec![id],
                        matured: false,
                    },
                );
                self.changed.insert(p.bucket_start);
                if bucket_end <= self.matured_until {
                    self.late_created.push(p.bucket_start);
                }
            }
        }
        // Counters bucketed by prediction time only: orphan, duplicate and late labels are
        // bucketed by their own time, which may lie days after the model's last prediction.
        if p.counters.predictions > 0 || !p.confusion.is_empty() || p.regression.count > 0 {
            self.progress_ms = Some(self.progress_ms.map_or(bucket_end, |q| q.max(bucket_end)));
        }
        Ok(Placement::Merged)
    }

    /// Buckets that matured since the last call (ending at or before [`end_ms`](Self::end_ms)),
    /// in bucket order; each bucket is handed out once.
    pub fn take_matured(&mut self) -> Vec<MaturedBucket> {
        let (Some(end), Some(width)) = (self.end_ms(), self.width_ms) else {
            return Vec::new();
        };
        let mut starts = std::mem::take(&mut self.late_created);
        // Only buckets past the previous cut can be newly mature, besides late-created ones.
        let from = self.matured_until.saturating_sub(width);
        starts.extend(
            self.buckets
                .range(from..end.saturating_sub(width).saturating_add(1))
                .map(|(&s, _)| s),
        );
        starts.sort_unstable();
        starts.dedup();
        let mut out = Vec::new();
        for start in starts {
            if let Some(b) = self.buckets.get_mut(&start) {
                if !b.matured && start.saturating_add(width) <= end {
                    b.matured = true;
                    self.changed.insert(start);
                    out.push(MaturedBucket {
                        start,
                        end: start.saturating_add(width),
                        aggregate: Aggregate::from_partial(&b.partial),
                    });
                }
            }
        }
        self.matured_until = self.matured_until.max(end);
        out
    }

    /// Drops the buckets no window can reach any more, oldest first. `extra_ms` keeps that
    /// much more history (e.g. for a detector that looks further back). A bucket not handed out
    /// by [`take_matured`](Self::take_matured) yet is kept, and so is everything after it.
    pub fn evict(&mut self, extra_ms: i64) {
        let (Some(end), Some(width)) = (self.end_ms(), self.width_ms) else {
            return;
        };
        let floor = end
            .saturating_sub(self.longest_ms)
            .saturating_sub(extra_ms.max(0));
        while let Some(entry) = self.buckets.first_entry() {
            if entry.key().saturating_add(width) <= floor && entry.get().matured {
                self.changed.insert(*entry.key());
                entry.remove();
            } else {
                break;
            }
        }
        self.evicted_until = self.evicted_until.max(floor);
    }

    /// The buckets created, changed or evicted since the last call, encoded: `None` for an
    /// evicted one. With the rest of the windows (serde, buckets skipped) they make up the
    /// persisted state, written incrementally.
    pub(crate) fn take_changed_buckets(&mut self) -> Result<Vec<ChangedBucket>, postcard::Error> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|start| {
                let bytes = self
                    .buckets
                    .get(&start)
                    .map(postcard::to_allocvec)
                    .transpose()?;
                Ok((start, bytes))
            })
            .collect()
    }

    /// Puts back one bucket written by [`take_changed_buckets`](Self::take_changed_buckets).
    pub(crate) fn restore_bucket(
        &mut self,
        start: TimestampMs,
        bytes: &[u8],
    ) -> Result<(), postcard::Error> {
        self.buckets.insert(start, postcard::from_bytes(bytes)?);
        Ok(())
    }

    /// The window named `name`, or `None` when there is no such window or no data yet.
    pub fn window(&self, name: &str) -> Option<WindowView> {
        let spec = self.specs.iter().find(|s| s.name == name)?;
        self.view(spec)
    }

    /// Every window, in spec order (none before the first partial).
    pub fn windows(&self) -> Vec<WindowView> {
        self.specs.iter().filter_map(|s| self.view(s)).collect()
    }

    /// The views of window `name` ending at each bucket step after `after` (after the oldest
    /// retained bucket's start when `None`), up to the current end, oldest first, at most `max`
    /// (the newest ones). A caller judging each window end once judges, after a burst of data
    /// (a backlog, a replay), the same windows as it would have live.
    pub fn views_since(
        &self,
        name: &str,
        after: Option<TimestampMs>,
        max: usize,
    ) -> Vec<WindowView> {
        let (Some(spec), Some(end), Some(width)) = (
            self.specs.iter().find(|s| s.name == name),
            self.end_ms(),
            self.width_ms,
        ) else {
            return Vec::new();
        };
        let Some(after) = after.or_else(|| self.buckets.keys().next().copied()) else {
            return Vec::new();
        };
        let mut ends = Vec::new();
        let mut e = end;
        while e > after && ends.len() < max {
            ends.push(e);
            e = e.saturating_sub(width);
        }
        ends.iter()
            .rev()
            .map(|&e| self.view_ending(spec, e, width))
            .collect()
    }

    fn view(&self, spec: &WindowSpec) -> Option<WindowView> {
        let end = self.end_ms()?;
        let width = self.width_ms?;
        Some(self.view_ending(spec, end, width))
    }

    fn view_ending(&self, spec: &WindowSpec, end: TimestampMs, width: i64) -> WindowView {
        let start = end.saturating_sub(spec.length_ms);
        let mut aggregate = Aggregate::default();
        for (&s, b) in self.buckets.range(start..end) {
            if s.saturating_add(width) <= end {
                aggregate.add(&b.partial);
            }
        }
        WindowView {
            name: spec.name.clone(),
            start,
            end,
            length_ms: spec.length_ms,
            aggregate,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::join::partial::empty_partial;
    use crate::ConfusionCell;

    const MIN: i64 = 60_000;

    fn partial(bucket: i64, seq: u64, right: u64, wrong: u64) -> ModelPartial {
        let mut p = empty_partial("m", "v", bucket * MIN, MIN, 0);
        p.sequence = seq;
        p.counters.predictions = right + wrong;
        p.counters.matched = right + wrong;
        p.confusion = vec![
            ConfusionCell {
                predicted: "a".into(),
                actual: "a".into(),
                count: right,
            },
            ConfusionCell {
                predicted: "a".into(),
                actual: "b".into(),
                count: wrong,
            },
        ];
        p
    }

    fn specs() -> Vec<WindowSpec> {
        vec![
            WindowSpec {
                name: "5m".into(),
                length_ms: 5 * MIN,
            },
            WindowSpec {
                name: "10m".into(),
                length_ms: 10 * MIN,
            },
        ]
    }

    #[test]
    fn windows_cover_buckets_before_the_maturity_cut() {
        let mut w = ModelWindows::new(specs(), 2 * MIN);
        for b in 0..20 {
            w.ingest(&partial(b, b as u64, 1, 0)).unwrap();
        }
        // Progress 20 min, end 18 min.
        assert_eq!(w.progress_ms(), Some(20 * MIN));
        let v = w.window("5m").unwrap();
        assert_eq!((v.start, v.end), (13 * MIN, 18 * MIN));
        assert_eq!(v.aggregate.classified(), 5);
        assert_eq!(w.window("10m").unwrap().aggregate.classified(), 10);
        assert!(w.window("1h").is_none());
        let matured = w.take_matured();
        assert_eq!(matured.len(), 18);
        assert_eq!(matured.last().unwrap().end, 18 * MIN);
        assert!(w.take_matured().is_empty(), "handed out twice");
        w.ingest(&partial(20, 100, 1, 0)).unwrap();
        let next = w.take_matured();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].start, 18 * MIN);
    }

    #[test]
    fn eviction_and_too_late_partials() {
        let mut w = ModelWindows::new(specs(), 0);
        for b in 0..30 {
            w.ingest(&partial(b, b as u64, 1, 0)).unwrap();
        }
        w.take_matured();
        w.evict(0);
        // End 30 min, longest 10 min: buckets 20..30 remain.
        assert_eq!(w.retained_buckets(), 10);
        assert_eq!(
            w.ingest(&partial(19, 1000, 1, 0)).unwrap(),
            Placement::TooLate
        );
        assert_eq!(w.stats().too_late_partials, 1);
        // A late partial for a retained (already matured) bucket still merges.
        assert_eq!(
            w.ingest(&partial(25, 1001, 0, 4)).unwrap(),
            Placement::Merged
        );
        assert_eq!(w.stats().after_maturity_partials, 1);
        let v = w.window("10m").unwrap();
        assert_eq!((v.aggregate.classified(), v.aggregate.correct()), (14, 10));
        // `extra_ms` keeps more.
        let mut w2 = ModelWindows::new(specs(), 0);
        for b in 0..30 {
            w2.ingest(&partial(b, b as u64, 1, 0)).unwrap();
        }
        w2.take_matured();
        w2.evict(5 * MIN);
        assert_eq!(w2.retained_buckets(), 15);
    }

    #[test]
    fn unmatured_buckets_survive_eviction() {
        let mut w = ModelWindows::new(specs(), 0);
        w.ingest(&partial(0, 0, 1, 0)).unwrap();
        w.ingest(&partial(100, 1, 1, 0)).unwrap();
        w.evict(0);
        assert_eq!(w.retained_buckets(), 2);
        assert_eq!(w.take_matured().len(), 2);
        w.evict(0);
        assert_eq!(w.retained_buckets(), 1);
    }

    #[test]
    fn late_pieces_merge_and_duplicates_are_dropped() {
        let mut w = ModelWindows::new(specs(), 0);
        w.ingest(&partial(0, 1, 3, 1)).unwrap();
        w.ingest(&partial(1, 2, 1, 0)).unwrap();
        assert_eq!(
            w.ingest(&partial(0, 1, 3, 1)).unwrap(),
            Placement::Duplicate
        );
        w.ingest(&partial(0, 3, 2, 2)).unwrap();
        let v = w.window("10m").unwrap();
        assert_eq!((v.aggregate.classified(), v.aggregate.correct()), (9, 6));
        assert_eq!(w.stats().duplicates, 1);
    }

    #[test]
    fn bad_partials_are_refused() {
        let mut w = ModelWindows::new(specs(), 0);
        let mut p = partial(0, 0, 1, 0);
        p.bucket_width_ms = 0;
        assert!(matches!(
            w.ingest(&p),
            Err(WindowError::InvalidWidth { .. })
        ));
        w.ingest(&partial(0, 0, 1, 0)).unwrap();
        let mut q = partial(1, 1, 1, 0);
        q.bucket_width_ms = 30_000;
        assert!(matches!(
            w.ingest(&q),
            Err(WindowError::WidthMismatch { .. })
        ));
        let mut r = partial(1, 1, 1, 0);
        r.bucket_start += 1;
        assert!(matches!(w.ingest(&r), Err(WindowError::Misaligned { .. })));
    }
}
