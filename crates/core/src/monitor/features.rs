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
//! # Checks
//! | detector | feature | drifts when |
//! |---|---|---|
//! | the default test's method (`ks`, `wasserstein_normed`, `chi_square`, `jensen_shannon`) | the feature | [`drift::default_test`] says so (Evidently's defaults) |
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

use crate::summary::drift::{self, calibrate, DriftMethod, DriftResult, DriftSettings};
use crate::summary::{
    CategoricalSummary, FeatureId, FeatureInterner, FeatureKind, FeatureSummary, NumericSummary,
    SignatureSummary, SummaryError,
};
use crate::TimestampMs;

use super::config::parse_duration_ms;
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

/// Settings of the signature checks of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureDriftConfig {
    /// Default true.
    pub enabled: bool,
    /// Current window, a duration like `1h`. Default `1h`, the judged window of
    /// `accuracy_drop`: tens of thousands of values at modest traffic, so the tests see
    /// distribution changes, not noise.
    pub window: String,
    /// Reference: the traffic of this long from the version's first signed bucket. Default
    /// `1h`.
    pub reference: String,
    /// Both sides need at least this many values of a feature (predictions, for presence and
    /// missing rate) before it is judged. Default 200.
    pub min_samples: u64,
    /// Test the predicted label / value and score. Default true.
    pub prediction_drift: bool,
    /// Run the data-quality checks. Default true.
    pub data_quality: bool,
    /// `missing_rate` drifts when the missing share grew by more than this (absolute).
    /// Default 0.1.
    pub max_missing_rate_increase: f64,
    /// `unseen_categories` drifts when more than this share of current values are categories
    /// the reference never saw. Default 0.1.
    pub max_unseen_category_share: f64,
    /// `type_mismatch` drifts when the share of values of the wrong kind grew by more than
    /// this. Default 0.01.
    pub max_type_mismatch_increase: f64,
    /// Features never judged (ids, free text, timestamps). Default none.
    pub ignore: Vec<String>,
    /// False-discovery rate of one judgement's drift tests (every feature's default test,
    /// `prediction` and `prediction_score`), controlled by Benjamini–Hochberg over their
    /// p-values. Default 0.01: judgements repeat every minute, and a DRIFT verdict must
    /// moreover hold for a whole window of new data (see [`SignatureTracker::judge`]). On a stable model every test's p-value is uniform (or larger),
    /// and BH then bounds the chance that a judgement flags *any* feature by this rate, however
    /// many features the model has; with drift it keeps most of the power of testing each
    /// feature alone (Holm would also bound that chance, at a larger cost in power when several
    /// features drift together).
    pub false_discovery_rate: f64,
}

impl Default for FeatureDriftConfig {
    fn default() -> Self {
        FeatureDriftConfig {
            enabled: true,
            window: "1h".to_owned(),
            reference: "1h".to_owned(),
            min_samples: 200,
            prediction_drift: true,
            data_quality: true,
            max_missing_rate_increase: 0.1,
            max_unseen_category_share: 0.1,
            max_type_mismatch_increase: 0.01,
            ignore: Vec::new(),
            false_discovery_rate: 0.01,
        }
    }
}

impl FeatureDriftConfig {
    /// Window and reference lengths in ms (valid after [`validate`](Self::validate)).
    pub fn lengths_ms(&self) -> Option<(i64, i64)> {
        Some((
            parse_duration_ms(&self.window).filter(|&w| w > 0)?,
            parse_duration_ms(&self.reference).filter(|&r| r > 0)?,
        ))
    }

    /// The first invalid field and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if parse_duration_ms(&self.window).is_none_or(|w| w <= 0) {
            return Err((
                "feature_drift.window",
                format!("`{}` is not a positive duration like `1h`", self.window),
            ));
        }
        if parse_duration_ms(&self.reference).is_none_or(|r| r <= 0) {
            return Err((
                "feature_drift.reference",
                format!("`{}` is not a positive duration like `1h`", self.reference),
            ));
        }
        if self.min_samples < 1 {
            return Err(("feature_drift.min_samples", "must be at least 1".into()));
        }
        for (field, v) in [
            (
                "feature_drift.max_missing_rate_increase",
                self.max_missing_rate_increase,
            ),
            (
                "feature_drift.max_unseen_category_share",
                self.max_unseen_category_share,
            ),
            (
                "feature_drift.max_type_mismatch_increase",
                self.max_type_mismatch_increase,
            ),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err((field, format!("{v} must be in (0, 1]")));
            }
        }
        let q = self.false_discovery_rate;
        if !(q > 0.0 && q < 1.0) {
            return Err((
                "feature_drift.false_discovery_rate",
                format!("{q} must be in (0, 1)"),
            ));
        }
        Ok(())
    }

    /// The drift tests' settings: the defaults at this judgement's level.
    pub fn drift_settings(&self) -> DriftSettings {
        DriftSettings {
            alpha: self.false_discovery_rate,
            ..DriftSettings::default()
        }
    }
}

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
    /// Absent from snapshots written before it existed.
    #[serde(default)]
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

/// One drift test of a judgement: feature name, result, (reference, current) values.
type Tested = (String, DriftResult, (u64, u64));

/// What one judgement compares.
struct Ctx<'a> {
    cfg: &'a FeatureDriftConfig,
    names: &'a FeatureInterner,
    reference: &'a SignatureSummary,
    current: &'a SignatureSummary,
    reference_bounds: (TimestampMs, TimestampMs),
    window: (TimestampMs, TimestampMs),
}

/// Severity of a test: `1 − p_adj / q` for p-value tests (p_adj the BH-adjusted p-value),
/// 0.5 at the threshold and 1 at twice it for distances.
fn test_severity(r: &DriftResult, adjusted_p: f64, q: f64) -> f64 {
    let s = if r.method.is_p_value_test() {
        1.0 - adjusted_p / q
    } else {
        0.5 * r.statistic / r.threshold
    };
    if s.is_finite() {
        s.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Severity of a rate over its allowed increase: 0.5 at the threshold, 1 at twice it.
fn rate_severity(excess: f64, allowed: f64) -> f64 {
    let s = 0.5 * excess / allowed;
    if s.is_finite() {
        s.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn level(drifted: bool) -> Level {
    if drifted {
        Level::Drift
    } else {
        Level::Clean
    }
}

/// Share of the reference's categories among `current`'s values; `None` when the reference's
/// sketch is no longer exact (a category missing from it may just have been purged).
fn unseen_share(reference: &CategoricalSummary, current: &CategoricalSummary) -> Option<f64> {
    if reference.max_error() > 0 || current.count() == 0 {
        return None;
    }
    let known: BTreeSet<String> = reference
        .frequent_items()
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    let unseen: u64 = current
        .frequent_items()
        .into_iter()
        .filter(|(v, _)| !known.contains(v))
        .map(|(_, n)| n)
        .sum();
    Some(unseen as f64 / current.count() as f64)
}

/// Values of the minority kind relative to the reference's kind, as a share of all values.
fn wrong_kind_share(f: &FeatureSummary, kind: FeatureKind) -> Option<f64> {
    let n = f.numeric().map_or(0, NumericSummary::count);
    let c = f.categorical().map_or(0, CategoricalSummary::count);
    let total = n.saturating_add(c);
    if total == 0 {
        return None;
    }
    let wrong = match kind {
        FeatureKind::Numeric => c,
        FeatureKind::Categorical => n,
        FeatureKind::Unknown => return None,
    };
    Some(wrong as f64 / total as f64)
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn judgement(
        &self,
        detector: &str,
        feature: &str,
        drifted: bool,
        statistic: &str,
        value: f64,
        threshold: f64,
        samples: (u64, u64),
        severity: f64,
    ) -> Judgement {
        Judgement {
            detector: detector.to_owned(),
            feature: Some(feature.to_owned()),
            level: level(drifted),
            statistic: statistic.to_owned(),
            value,
            threshold,
            baseline_start: self.reference_bounds.0,
            baseline_end: self.reference_bounds.1,
            baseline_samples: samples.0,
            window_start: self.window.0,
            window_end: self.window.1,
            window_samples: samples.1,
            severity,
            onset: None,
        }
    }

    /// Judgements of every drift test of this judgement, Benjamini–Hochberg adjusted: a test
    /// drifts when its adjusted p-value is at most the false-discovery rate and (distances)
    /// its statistic reaches the minimum effect. p-value tests report the adjusted p-value
    /// against that rate; distances their statistic against their threshold at that rate
    /// (a drifting distance always reaches it; reaching it is not enough when many features
    /// are judged).
    fn test_judgements(&self, tests: &[Tested]) -> Vec<Judgement> {
        let q = self.cfg.false_discovery_rate;
        let p: Vec<f64> = tests
            .iter()
            .map(|(_, r, _)| r.p_value.unwrap_or(1.0))
            .collect();
        let adjusted = calibrate::bh_adjusted(&p);
        tests
            .iter()
            .zip(adjusted)
            .map(|((feature, r, samples), p_adj)| {
                let drifted = p_adj <= q && r.min_effect.is_none_or(|e| r.statistic >= e);
                let (statistic, value, threshold) = match r.method {
                    DriftMethod::KolmogorovSmirnov => ("ks_p_value", p_adj, q),
                    DriftMethod::ChiSquare => ("chi_square_p_value", p_adj, q),
                    m => (m.as_str(), r.statistic, r.threshold),
                };
                self.judgement(
                    r.method.as_str(),
                    feature,
                    drifted,
                    statistic,
                    value,
                    threshold,
                    *samples,
                    test_severity(r, p_adj, q),
                )
            })
            .collect()
    }

    fn judge_features(
        &self,
        appeared: &mut BTreeSet<String>,
        tests: &mut Vec<Tested>,
        out: &mut Vec<Judgement>,
    ) {
        let cfg = self.cfg;
        let settings = cfg.drift_settings();
        let min = cfg.min_samples;
        let (ref_n, cur_n) = (self.reference.predictions(), self.current.predictions());
        let ignored = |name: &str| cfg.ignore.iter().any(|i| i == name);
        let mut in_reference = BTreeSet::new();
        for (id, r) in self.reference.features() {
            let Some(name) = self.names.name(id) else {
                continue;
            };
            in_reference.insert(name);
            if ignored(name) {
                continue;
            }
            let c = self.current.feature(id);
            let (r_count, c_count) = (r.count(), c.map_or(0, FeatureSummary::count));
            if r_count >= min && c_count >= min {
                if let Some(c) = c {
                    if let Ok(result) = drift::default_test_with(r, c, &settings) {
                        tests.push((name.to_owned(), result, (r_count, c_count)));
                    }
                }
            }
            if !cfg.data_quality {
                continue;
            }
            if ref_n >= min && cur_n >= min {
                self.quality_checks(name, r, c, (ref_n, cur_n), out);
            }
        }
        if !cfg.data_quality || cur_n < min {
            return;
        }
        // Features the reference never had: judged while present, and cleared once gone.
        for (id, c) in self.current.features() {
            let Some(name) = self.names.name(id) else {
                continue;
            };
            if in_reference.contains(name) || ignored(name) {
                continue;
            }
            let n = c.count();
            out.push(self.judgement(
                FEATURE_PRESENCE,
                name,
                n >= min,
                "values",
                n as f64,
                min as f64,
                (0, n),
                if n >= min { 1.0 } else { 0.0 },
            ));
            appeared.insert(name.to_owned());
        }
        let gone: Vec<String> = appeared
            .iter()
            .filter(|n| {
                self.names
                    .get(n)
                    .and_then(|id| self.current.feature(id))
                    .is_none()
            })
            .cloned()
            .collect();
        for name in gone {
            out.push(self.judgement(
                FEATURE_PRESENCE,
                &name,
                false,
                "values",
                0.0,
                min as f64,
                (0, 0),
                0.0,
            ));
            appeared.remove(&name);
        }
    }

    fn quality_checks(
        &self,
        name: &str,
        r: &FeatureSummary,
        c: Option<&FeatureSummary>,
        (ref_n, cur_n): (u64, u64),
        out: &mut Vec<Judgement>,
    ) {
        let cfg = self.cfg;
        let min = cfg.min_samples;
        let c_count = c.map_or(0, FeatureSummary::count);
        // Presence: the reference had values, the current window has none.
        let gone = r.count() >= min && c_count == 0;
        out.push(self.judgement(
            FEATURE_PRESENCE,
            name,
            gone,
            "values",
            c_count as f64,
            1.0,
            (r.count(), c_count),
            if gone { 1.0 } else { 0.0 },
        ));
        // Missing: predictions without a usable value (absent, null, non-finite).
        let rate = |count: u64, n: u64| 1.0 - (count.min(n) as f64 / n as f64);
        let (r_rate, c_rate) = (rate(r.count(), ref_n), rate(c_count, cur_n));
        let threshold = r_rate + cfg.max_missing_rate_increase;
        out.push(self.judgement(
            MISSING_RATE,
            name,
            c_rate > threshold,
            MISSING_RATE,
            c_rate,
            threshold.min(1.0),
            (ref_n, cur_n),
            rate_severity(c_rate - r_rate, cfg.max_missing_rate_increase),
        ));
        let Some(c) = c else {
            return;
        };
        let kind = r.kind();
        if c.count() >= min {
            if let (Some(rs), Some(cs)) = (wrong_kind_share(r, kind), wrong_kind_share(c, kind)) {
                let threshold = rs + cfg.max_type_mismatch_increase;
                out.push(self.judgement(
                    TYPE_MISMATCH,
                    name,
                    cs > threshold,
                    "wrong_kind_share",
                    cs,
                    threshold.min(1.0),
                    (r.count(), c.count()),
                    rate_severity(cs - rs, cfg.max_type_mismatch_increase),
                ));
            }
        }
        if kind == FeatureKind::Categorical {
            if let (Some(rc), Some(cc)) = (r.categorical(), c.categorical()) {
                if cc.count() >= min {
                    if let Some(share) = unseen_share(rc, cc) {
                        let t = cfg.max_unseen_category_share;
                        out.push(self.judgement(
                            UNSEEN_CATEGORIES,
                            name,
                            share > t,
                            "unseen_share",
                            share,
                            t,
                            (rc.count(), cc.count()),
                            rate_severity(share, t),
                        ));
                    }
                }
            }
        }
    }

    fn judge_outputs(&self, tests: &mut Vec<Tested>) {
        let min = self.cfg.min_samples;
        let settings = self.cfg.drift_settings();
        let (r, c) = (self.reference, self.current);
        let (rl, cl) = (r.predicted_label(), c.predicted_label());
        let (rv, cv) = (r.predicted_value(), c.predicted_value());
        if rl.count() >= min && cl.count() >= min {
            if let Ok(result) = drift::default_categorical_test_with(rl, cl, &settings) {
                tests.push((PREDICTION.to_owned(), result, (rl.count(), cl.count())));
            }
        } else if rv.count() >= min && cv.count() >= min {
            if let Ok(result) = drift::default_numeric_test_with(rv, cv, &settings) {
                tests.push((PREDICTION.to_owned(), result, (rv.count(), cv.count())));
            }
        }
        let (rs, cs) = (r.score(), c.score());
        if rs.count() >= min && cs.count() >= min {
            if let Ok(result) = drift::default_numeric_test_with(rs, cs, &settings) {
                tests.push((
                    PREDICTION_SCORE.to_owned(),
                    result,
                    (rs.count(), cs.count()),
                ));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{FeatureValue, Prediction};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    const MIN: i64 = 60_000;

    /// Signature bytes of `n` predictions: `x` ~ N(mean, 1) as a sum of uniforms, `c` from
    /// `cats`, `m` missing with probability `missing`, optional extra feature.
    fn bucket(
        rng: &mut SmallRng,
        n: usize,
        mean: f64,
        cats: &[&str],
        missing: f64,
        extra: Option<&str>,
    ) -> Vec<u8> {
        let mut names = FeatureInterner::new();
        let mut sig = SignatureSummary::new();
        for _ in 0..n {
            let x = mean + (0..12).map(|_| rng.gen::<f64>()).sum::<f64>() - 6.0;
            let m = if rng.gen_bool(missing) {
                FeatureValue::Missing
            } else {
                FeatureValue::Number(rng.gen())
            };
            let mut features = vec![
                ("x".to_owned(), FeatureValue::Number(x)),
                (
                    "c".to_owned(),
                    FeatureValue::Category(cats[rng.gen_range(0..cats.len())].to_owned()),
                ),
                ("m".to_owned(), m),
            ];
            if let Some(e) = extra {
                features.push((e.to_owned(), FeatureValue::Number(1.0)));
            }
            let p = Prediction {
                request_id: "r".into(),
                model_id: "m".into(),
                model_version: "1".into(),
                timestamp: 0,
                features,
                predicted_label: Some(if rng.gen_bool(0.5) { "a" } else { "b" }.into()),
                predicted_value: None,
                scores: None,
                tags: vec![],
            };
            sig.update_prediction(&mut names, &p).unwrap();
        }
        sig.flush();
        sig.to_bytes(&names).unwrap()
    }

    fn drifted(js: &[Judgement], detector: &str, feature: &str) -> Option<bool> {
        js.iter()
            .find(|j| j.detector == detector && j.feature.as_deref() == Some(feature))
            .map(|j| j.level == Level::Drift)
    }

    fn drifting(js: &[Judgement]) -> Vec<(String, String)> {
        js.iter()
            .filter(|j| j.level == Level::Drift)
            .map(|j| (j.detector.clone(), j.feature.clone().unwrap_or_default()))
            .collect()
    }

    /// 60 minutes of reference, then `minutes` of current traffic made by `make`.
    fn run(
        minutes: i64,
        make: &dyn Fn(&mut SmallRng) -> Vec<u8>,
        cfg: &FeatureDriftConfig,
    ) -> (SignatureTracker, Vec<Judgement>) {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut t = SignatureTracker::new(60 * MIN, 60 * MIN);
        for b in 0..60 {
            let bytes = bucket(&mut rng, 100, 0.0, &["a", "b", "c"], 0.05, None);
            t.ingest(&bytes, b * MIN, MIN).unwrap();
            assert!(t.judge(cfg).is_empty(), "judged while the window overlaps");
        }
        let mut last = Vec::new();
        for b in 60..60 + minutes {
            t.ingest(&make(&mut rng), b * MIN, MIN).unwrap();
            let js = t.judge(cfg);
            if !js.is_empty() {
                last = js;
            }
        }
        (t, last)
    }

    #[test]
    fn stable_traffic_is_clean_and_a_shift_drifts_only_its_feature() {
        let cfg = FeatureDriftConfig::default();
        let (t, stable) = run(
            60,
            &|rng| bucket(rng, 100, 0.0, &["a", "b", "c"], 0.05, None),
            &cfg,
        );
        assert!(!stable.is_empty());
        assert!(drifting(&stable).is_empty(), "{:?}", drifting(&stable));
        assert_eq!(t.reference().unwrap().2, 6_000);
        // Every default check ran on `x` with the large-reference test.
        assert_eq!(drifted(&stable, "wasserstein_normed", "x"), Some(false));
        assert_eq!(drifted(&stable, "jensen_shannon", "c"), Some(false));
        assert_eq!(drifted(&stable, "jensen_shannon", PREDICTION), Some(false));
        assert_eq!(drifted(&stable, MISSING_RATE, "m"), Some(false));
        assert_eq!(drifted(&stable, UNSEEN_CATEGORIES, "c"), Some(false));
        assert_eq!(drifted(&stable, FEATURE_PRESENCE, "x"), Some(false));

        // A drift verdict stands once drifting verdicts have run for a whole window: the
        // first judgement (minute 120) plus 60 more.
        let (_, shifted) = run(
            121,
            &|rng| bucket(rng, 100, 1.0, &["a", "b", "c"], 0.05, None),
            &cfg,
        );
        assert_eq!(
            drifting(&shifted),
            vec![("wasserstein_normed".to_owned(), "x".to_owned())]
        );
    }

    #[test]
    fn data_quality_checks_fire_on_their_problem() {
        let cfg = FeatureDriftConfig::default();
        let (_, js) = run(
            60,
            &|rng| bucket(rng, 100, 0.0, &["a", "b", "zz", "yy"], 0.5, Some("new")),
            &cfg,
        );
        let d = drifting(&js);
        assert!(d.contains(&(MISSING_RATE.into(), "m".into())), "{d:?}");
        assert!(d.contains(&(UNSEEN_CATEGORIES.into(), "c".into())), "{d:?}");
        assert!(
            d.contains(&(FEATURE_PRESENCE.into(), "new".into())),
            "{d:?}"
        );
        assert_eq!(drifted(&js, MISSING_RATE, "x"), Some(false));

        let off = FeatureDriftConfig {
            data_quality: false,
            prediction_drift: false,
            ignore: vec!["c".into()],
            ..FeatureDriftConfig::default()
        };
        let (_, js) = run(
            60,
            &|rng| bucket(rng, 100, 0.0, &["zz"], 0.5, Some("new")),
            &off,
        );
        assert!(js
            .iter()
            .all(|j| j.feature.as_deref() == Some("x") || j.feature.as_deref() == Some("m")));
        assert!(js.iter().all(|j| j.detector == "wasserstein_normed"));
    }

    #[test]
    fn judges_once_per_window_end_and_evicts_old_buckets() {
        let cfg = FeatureDriftConfig::default();
        let (mut t, js) = run(90, &|rng| bucket(rng, 100, 0.0, &["a"], 0.0, None), &cfg);
        assert!(!js.is_empty());
        assert!(t.judge(&cfg).is_empty(), "same window end judged twice");
        assert!(t.retained_buckets() <= 61, "{}", t.retained_buckets());
        assert!(t.ingest(b"garbage", 200 * MIN, MIN).is_err());
        assert_eq!(t.decode_errors(), 1);
    }

    #[test]
    fn an_external_reference_is_used_at_once() {
        let cfg = FeatureDriftConfig::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut t = SignatureTracker::new(10 * MIN, 60 * MIN);
        let reference = bucket(&mut rng, 2_000, 0.0, &["a"], 0.0, None);
        t.set_reference(&reference, -100 * MIN, -40 * MIN).unwrap();
        let mut js = Vec::new();
        // Judged once 200 values are in (minute 1); DRIFT once drifting for a whole (10 min)
        // window.
        for b in 0..12 {
            t.ingest(&bucket(&mut rng, 100, 3.0, &["a"], 0.0, None), b * MIN, MIN)
                .unwrap();
            js = t.judge(&cfg);
            let expect = match b {
                0 => None,
                1..=10 => Some(false),
                _ => Some(true),
            };
            assert_eq!(
                drifted(&js, "wasserstein_normed", "x"),
                expect,
                "minute {b}"
            );
        }
        assert_eq!(drifted(&js, "wasserstein_normed", "x"), Some(true));
        assert_eq!(t.reference().unwrap().2, 2_000);
    }

    #[test]
    fn config_validation_names_the_field() {
        FeatureDriftConfig::default().validate().unwrap();
        let bad = |c: FeatureDriftConfig| c.validate().unwrap_err().0;
        assert_eq!(
            bad(FeatureDriftConfig {
                window: "1x".into(),
                ..Default::default()
            }),
            "feature_drift.window"
        );
        assert_eq!(
            bad(FeatureDriftConfig {
                max_missing_rate_increase: 0.0,
                ..Default::default()
            }),
            "feature_drift.max_missing_rate_increase"
        );
    }
}
