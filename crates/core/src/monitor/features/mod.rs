//! Data drift, prediction drift and data quality from the partials' signatures.
//!
//! The join stage attaches to each [`ModelPartial`](crate::ModelPartial) the serialized
//! [`SignatureSummary`] of the predictions of its bucket (features and outputs, labeled or
//! not). Per (model, version) a [`SignatureTracker`] keeps:
//!
//! - a **reference** signature: the merge of the signatures of the buckets starting within
//!   `reference` (default 1 h) of the version's first signed bucket, or one set from outside
//!   ([`Monitor::set_reference_signature`](super::Monitor::set_reference_signature)). It is
//!   frozen at the first judgement: a slow drift must not drag the reference along;
//! - the **current** buckets: signatures by bucket start, those of the last `window` (default
//!   1 h, the judged window of `accuracy_drop`) of data progress. Inputs need no labels, so
//!   there is no maturity delay: the window is `[progress − window, progress)` where progress is
//!   the latest signed bucket end.
//!
//! Judging starts once the whole current window lies after the reference (no overlap, so the
//! comparison is not diluted by shared data) and happens once per new window end (an evaluation
//! with no new bucket abstains, as the built-in detectors do). Each check yields a
//! [`Judgement`] through the same state machines, hysteresis and retrain policy as the
//! performance detectors; checks abstain when either side has fewer than `min_samples` values.
//!
//! # False alarms across features and over time
//! Every drift test is a two-sample test with a p-value that accounts for both sample sizes
//! and the sketches' error ([`drift`](crate::summary::drift)). One judgement tests every
//! feature, the prediction and the score; their p-values are adjusted together with
//! Benjamini–Hochberg at `false_discovery_rate` (default 0.01), so a stable model's judgement
//! flags any feature with probability at most that rate however many features it has. A
//! distance test (normed Wasserstein, Jensen–Shannon) also needs its minimum effect (0.1).
//! Judgements repeat every minute on windows that share all but a minute of data, so a DRIFT
//! verdict stands only once the test's drifting verdicts have run unbroken for a whole window
//! (it reads clean until then): a change is reported about one window after it shows, and an
//! unlucky stretch of data is not. Measured: a stable model with 50 features (1 800 values per
//! window), judged every minute, raises no event (`tests/stable_model.rs`;
//! docs/STATISTICS.md).
//!
//! # Checks
//! | detector | feature | drifts when |
//! |---|---|---|
//! | the default test's method (`ks`, `wasserstein_normed`, `chi_square`, `jensen_shannon`) | the feature | [`drift::default_test`](crate::summary::drift::default_test)'s test (Evidently's choice of test: KS / χ² up to 1 000 reference values, normed Wasserstein / Jensen–Shannon above) rejects after the Benjamini–Hochberg adjustment, with the minimum effect, for a whole window |
//! | same | `prediction` | the predicted label (classifiers) or value (regressors) drifted |
//! | same | `prediction_score` | the predicted class's score drifted |
//! | `missing_rate` | the feature | the share of predictions without a value (absent, null or non-finite) grew by more than `max_missing_rate_increase` (default 0.1, absolute) |
//! | `unseen_categories` | the feature | more than `max_unseen_category_share` (default 0.1) of the current values are categories the reference never saw (only while the reference's frequent-items sketch is exact) |
//! | `type_mismatch` | the feature | the share of values of the other kind than the reference's (strings in a numeric feature) grew by more than `max_type_mismatch_increase` (default 0.01) |
//! | `feature_presence` | the feature | a reference feature has no value in a current window of at least `min_samples` predictions, or a feature unknown to the reference has at least `min_samples` values |
//!
//! Data drift is advisory: the default retrain policy lists `accuracy_drop` only. A model may
//! list feature checks as triggers (`"wasserstein_normed:age"`, `"*:age"`, `"missing_rate:*"`).
//!
//! `prediction` and `prediction_score` are reserved feature names here: an input feature of
//! that name shares their state machines.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::summary::{FeatureId, FeatureInterner, SignatureSummary, SummaryError};
use crate::TimestampMs;

use super::detectors::{Judgement, Level};

/// Detector names of the data-quality checks.
pub const MISSING_RATE: &str = "missing_rate";
pub const UNSEEN_CATEGORIES: &str = "unseen_categories";
pub const TYPE_MISMATCH: &str = "type_mismatch";
pub const FEATURE_PRESENCE: &str = "feature_presence";
/// Feature name of prediction drift on the predicted label or value.
pub const PREDICTION: &str = "prediction";
/// Feature name of prediction drift on the predicted class's score.
pub const PREDICTION_SCORE: &str = "prediction_score";

mod config;
mod judge;
#[cfg(test)]
mod tests;

pub use config::FeatureDriftConfig;
use judge::Ctx;

/// The reference signature of a version.
#[derive(Debug, Clone)]
struct Reference {
    summary: SignatureSummary,
    start: TimestampMs,
    end: TimestampMs,
    frozen: bool,
}

/// Signatures of one (model, version): reference and current buckets.
///
/// Persisted for the monitor's changelog in parts: the serde form holds the feature names (in
/// id order, so a restored tracker interns them to the same ids) and the bookkeeping; the
/// reference summary and each bucket's summary are written on their own, in their binary form,
/// when they change ([`take_changes`](Self::take_changes)).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "TrackerState", into = "TrackerState")]
pub struct SignatureTracker {
    names: FeatureInterner,
    window_ms: i64,
    reference_ms: i64,
    reference: Option<Reference>,
    buckets: BTreeMap<TimestampMs, SignatureSummary>,
    width_ms: Option<i64>,
    progress_ms: Option<TimestampMs>,
    last_judged_end: Option<TimestampMs>,
    /// Features that were judged absent from the reference, to clear their presence verdict.
    appeared: BTreeSet<String>,
    /// Per drift test (`detector:feature`): the window end of the first drifting verdict of
    /// its current unbroken run.
    drift_since: BTreeMap<String, TimestampMs>,
    decode_errors: u64,
    /// Buckets created, changed or dropped since the last `take_changes`.
    changed: BTreeSet<TimestampMs>,
    /// The reference summary changed since the last `take_changes`.
    reference_changed: bool,
}

/// What changed in a tracker's summaries since the last [`SignatureTracker::take_changes`],
/// encoded.
#[derive(Debug, Default)]
pub(crate) struct TrackerChanges {
    /// By bucket start: `None` for a dropped bucket.
    pub buckets: Vec<(TimestampMs, Option<Vec<u8>>)>,
    /// The reference summary, when it changed.
    pub reference: Option<Vec<u8>>,
}

/// The serialized form of a [`SignatureTracker`] (without its summaries).
#[derive(Serialize, Deserialize)]
struct TrackerState {
    names: Vec<String>,
    window_ms: i64,
    reference_ms: i64,
    /// (start, end, frozen) of the reference, whose summary is persisted on its own.
    reference: Option<(TimestampMs, TimestampMs, bool)>,
    width_ms: Option<i64>,
    progress_ms: Option<TimestampMs>,
    last_judged_end: Option<TimestampMs>,
    appeared: BTreeSet<String>,
    drift_since: BTreeMap<String, TimestampMs>,
    decode_errors: u64,
}

impl From<SignatureTracker> for TrackerState {
    fn from(t: SignatureTracker) -> Self {
        let names = (0..t.names.len())
            .filter_map(|i| u16::try_from(i).ok())
            .filter_map(|i| t.names.name(FeatureId(i)).map(str::to_owned))
            .collect();
        TrackerState {
            names,
            window_ms: t.window_ms,
            reference_ms: t.reference_ms,
            reference: t.reference.as_ref().map(|r| (r.start, r.end, r.frozen)),
            width_ms: t.width_ms,
            progress_ms: t.progress_ms,
            last_judged_end: t.last_judged_end,
            appeared: t.appeared,
            drift_since: t.drift_since,
            decode_errors: t.decode_errors,
        }
    }
}

impl TryFrom<TrackerState> for SignatureTracker {
    type Error = SummaryError;

    fn try_from(s: TrackerState) -> Result<Self, SummaryError> {
        let mut t = SignatureTracker::new(s.window_ms, s.reference_ms);
        for name in &s.names {
            t.names.intern(name)?;
        }
        t.reference = s.reference.map(|(start, end, frozen)| Reference {
            summary: SignatureSummary::new(),
            start,
            end,
            frozen,
        });
        t.width_ms = s.width_ms;
        t.progress_ms = s.progress_ms;
        t.last_judged_end = s.last_judged_end;
        t.appeared = s.appeared;
        t.drift_since = s.drift_since;
        t.decode_errors = s.decode_errors;
        Ok(t)
    }
}

impl SignatureTracker {
    /// A tracker of `window_ms` current windows and a `reference_ms` learned reference.
    pub fn new(window_ms: i64, reference_ms: i64) -> Self {
        SignatureTracker {
            names: FeatureInterner::with_limit(usize::from(u16::MAX) + 1),
            window_ms: window_ms.max(1),
            reference_ms: reference_ms.max(1),
            reference: None,
            buckets: BTreeMap::new(),
            width_ms: None,
            progress_ms: None,
            last_judged_end: None,
            appeared: BTreeSet::new(),
            drift_since: BTreeMap::new(),
            decode_errors: 0,
            changed: BTreeSet::new(),
            reference_changed: false,
        }
    }

    /// The summaries changed since the last call, encoded (see the type docs).
    pub(crate) fn take_changes(&mut self) -> Result<TrackerChanges, SummaryError> {
        let mut out = TrackerChanges::default();
        for start in std::mem::take(&mut self.changed) {
            let bytes = match self.buckets.get(&start) {
                Some(s) => Some(s.to_bytes(&self.names)?),
                None => None,
            };
            out.buckets.push((start, bytes));
        }
        if std::mem::take(&mut self.reference_changed) {
            if let Some(r) = &self.reference {
                out.reference = Some(r.summary.to_bytes(&self.names)?);
            }
        }
        Ok(out)
    }

    /// Puts back one bucket's summary written by [`take_changes`](Self::take_changes).
    pub(crate) fn restore_bucket(
        &mut self,
        start: TimestampMs,
        bytes: &[u8],
    ) -> Result<(), SummaryError> {
        let summary = SignatureSummary::from_bytes(bytes, &mut self.names)?;
        self.buckets.insert(start, summary);
        Ok(())
    }

    /// Puts back the reference summary written by [`take_changes`](Self::take_changes); the
    /// reference's bounds came with the tracker.
    pub(crate) fn restore_reference(&mut self, bytes: &[u8]) -> Result<(), SummaryError> {
        let summary = SignatureSummary::from_bytes(bytes, &mut self.names)?;
        match &mut self.reference {
            Some(r) => {
                r.summary = summary;
                Ok(())
            }
            None => Err(SummaryError::malformed(
                "a reference summary for a tracker without a reference",
            )),
        }
    }

    /// Whether the tracker has a reference whose summary must be restored.
    pub(crate) fn has_reference(&self) -> bool {
        self.reference.is_some()
    }

    /// Signatures that could not be decoded (dropped; the partial's counters still count).
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Current buckets retained.
    pub fn retained_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Reference bounds and predictions, once a reference exists.
    pub fn reference(&self) -> Option<(TimestampMs, TimestampMs, u64)> {
        self.reference
            .as_ref()
            .map(|r| (r.start, r.end, r.summary.predictions()))
    }

    /// Adds the serialized signature of one merged partial (bucket `start`, width `width`).
    pub fn ingest(
        &mut self,
        bytes: &[u8],
        start: TimestampMs,
        width: i64,
    ) -> Result<(), SummaryError> {
        let sig = match SignatureSummary::from_bytes(bytes, &mut self.names) {
            Ok(s) => s,
            Err(e) => {
                self.decode_errors += 1;
                return Err(e);
            }
        };
        let width = width.max(1);
        self.width_ms = Some(width);
        let end = start.saturating_add(width);
        let reference_ms = self.reference_ms;
        let r = self.reference.get_or_insert_with(|| Reference {
            summary: SignatureSummary::new(),
            start,
            end: start.saturating_add(reference_ms),
            frozen: false,
        });
        if !r.frozen && start >= r.start && end <= r.end {
            r.summary.merge(&sig);
            self.reference_changed = true;
        }
        let progress = self.progress_ms.map_or(end, |p| p.max(end));
        self.progress_ms = Some(progress);
        let floor = progress.saturating_sub(self.window_ms);
        if start >= floor {
            self.buckets.entry(start).or_default().merge(&sig);
            self.changed.insert(start);
        }
        // Buckets that left the current window can never be judged again.
        while let Some(e) = self.buckets.first_entry() {
            if *e.key() < floor {
                self.changed.insert(*e.key());
                e.remove();
            } else {
                break;
            }
        }
        Ok(())
    }

    /// Replaces the reference with `bytes` spanning `[start, end)`, frozen at once.
    pub fn set_reference(
        &mut self,
        bytes: &[u8],
        start: TimestampMs,
        end: TimestampMs,
    ) -> Result<(), SummaryError> {
        let mut summary = SignatureSummary::from_bytes(bytes, &mut self.names)?;
        summary.flush();
        self.reference = Some(Reference {
            summary,
            start,
            end,
            frozen: true,
        });
        self.reference_changed = true;
        Ok(())
    }

    /// Verdicts of every check for the current window, or nothing when there is no new
    /// window end, no reference yet, or the window still overlaps the reference. A drift
    /// test's verdict is DRIFT only once its drifting verdicts have run unbroken for a whole
    /// window; before that it reads clean.
    pub fn judge(&mut self, cfg: &FeatureDriftConfig) -> Vec<Judgement> {
        let Some(end) = self.progress_ms else {
            return Vec::new();
        };
        let start = end.saturating_sub(self.window_ms);
        let Some(reference) = self.reference.as_mut() else {
            return Vec::new();
        };
        if start < reference.end || self.last_judged_end == Some(end) {
            return Vec::new();
        }
        if !reference.frozen {
            reference.summary.flush();
            reference.frozen = true;
            self.reference_changed = true;
        }
        self.last_judged_end = Some(end);
        let width = self.width_ms.unwrap_or(1);
        let mut current = SignatureSummary::new();
        for (&s, sig) in self.buckets.range(start..end) {
            if s.saturating_add(width) <= end {
                current.merge(sig);
            }
        }
        current.flush();
        let ctx = Ctx {
            cfg,
            names: &self.names,
            reference: &reference.summary,
            current: &current,
            reference_bounds: (reference.start, reference.end),
            window: (start, end),
        };
        let mut tests = Vec::new();
        let mut quality = Vec::new();
        ctx.judge_features(&mut self.appeared, &mut tests, &mut quality);
        if cfg.prediction_drift {
            ctx.judge_outputs(&mut tests);
        }
        let mut out = ctx.test_judgements(&tests);
        self.require_persistence(&mut out);
        out.append(&mut quality);
        out
    }

    /// A drift test's DRIFT verdict stands only once its run of drifting verdicts spans a whole
    /// window (`window_ms`): until then it reads clean. Consecutive windows share all but a
    /// minute of data, so one unlucky stretch of data makes a run of verdicts; asking the run
    /// to outlast the window asks for the change to show in data it did not come from.
    fn require_persistence(&mut self, judgements: &mut [Judgement]) {
        for j in judgements {
            let key = format!(
                "{}:{}",
                j.detector,
                j.feature.as_deref().unwrap_or_default()
            );
            if j.level != Level::Drift {
                self.drift_since.remove(&key);
                continue;
            }
            let since = *self.drift_since.entry(key).or_insert(j.window_end);
            if j.window_end.saturating_sub(since) < self.window_ms {
                j.level = Level::Clean;
            }
        }
    }
}
