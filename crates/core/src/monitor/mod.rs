//! The monitor stage: from [`ModelPartial`]s to metrics, drift events and retrain advice.
//!
//! One monitor owns a set of models (partials are keyed by model id, so one owner sees every
//! partial of its models). Per (model, version) it keeps:
//!
//! - [`window`]: buckets of merged partials by prediction time and named sliding windows over
//!   them, cut a `maturity` delay behind the data's progress because labels arrive late;
//! - [`baseline`]: the reference performance, learned from the first labeled outcomes or set
//!   from outside;
//! - [`detectors`]: the windowed drop test against the baseline, the stream detectors
//!   (ADWIN, Page-Hinkley, DDM) over matured bucket error rates, and (off by default) the
//!   drop of the accuracy [`estimate`]d from scores before labels come;
//! - [`features`]: the reference and current signatures (feature and output sketches the join
//!   stage attaches to partials) and the data-drift, prediction-drift and data-quality checks
//!   between them;
//! - [`state`]: one drift state machine per detector (and feature), with hysteresis and
//!   idempotent event ids;
//!
//! and per model a [`policy`] that turns sustained drift into a [`RetrainEvent`], configured by
//! [`config`] with per-model overrides; [`metrics`] derives every metric from merged sums.
//!
//! # Flow
//! [`Monitor::ingest`] merges a partial, then hands every bucket that matured to the baseline
//! and the stream detectors (once each, in bucket order), then evicts buckets no window needs.
//! [`Monitor::evaluate`] computes window metrics, collects one verdict per detector (the drop
//! test: one per window end passed since its last verdict, so a burst of data is judged window
//! by window), steps the state machines, and asks the policies. The caller decides how often to
//! evaluate; a detector abstains when nothing new reached it since its last verdict, so evaluating more often does
//! not make the hysteresis easier to satisfy.
//!
//! Pure and deterministic: no clocks (event time is passed in), no I/O, ordered maps only, so
//! the same partials in the same order give the same output on any worker.
//!
//! Signatures bypass the windows: [`Monitor::ingest`] decodes a merged partial's signature into
//! the version's [`SignatureTracker`] (a partial the windows drop as duplicate or too late is
//! not counted there either), and the windows keep the partial without it, so merging buckets
//! never re-encodes sketches. [`Monitor::evaluate`] asks the tracker for its verdicts after the
//! built-in detectors.
//!
//! Other detectors plug in through [`Monitor::submit`]: they produce a [`Judgement`] and share
//! the state machines, event ids and retrain policy.

pub mod baseline;
pub mod clock;
pub mod config;
pub mod decay;
pub mod detectors;
pub mod duration;
pub mod estimate;
mod evaluate;
pub mod features;
pub mod metrics;
pub mod policy;
pub mod snapshot;
pub mod state;
mod unversioned;
pub mod window;

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

pub use baseline::{Baseline, BaselineConfig, BaselineSource};
pub use clock::{Epoch, EpochQueue, JoinClock};
pub use config::{ConfigError, ModelConfig, ModelOverride, MonitorConfig};
pub use decay::{DecayEstimate, DecayFit, DecayShape};
pub use detectors::{
    AccuracyDropConfig, EstimatedDropConfig, Judgement, Level, MisroutedInputsConfig,
    StreamDetectorConfig,
};
pub use duration::{format_duration_ms, parse_duration_ms, DurationError};
pub use features::{FeatureDriftConfig, SignatureTracker};
pub use metrics::{Aggregate, Metrics};
pub use policy::{PolicyConfig, PolicyState, TriggerMode};
pub use snapshot::{Restored, SnapshotError, SNAPSHOT_FORMAT};
pub use state::{event_id, DriftMachine, Hysteresis};
pub use window::{ModelWindows, Placement, WindowError, WindowSpec, WindowStats, WindowView};

use crate::{DriftEvent, DriftState, ModelMetrics, ModelPartial, RetrainEvent, TimestampMs};
use detectors::StreamWatch;
use evaluate::snapshot;
pub use unversioned::unversioned_labels;
use unversioned::UnversionedTally;

/// Why the monitor refused something.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Detector(#[from] crate::detect::ConfigError),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error("signature of {model}/{version}: {source}")]
    Signature {
        model: String,
        version: String,
        source: crate::summary::SummaryError,
    },
}

/// What one evaluation produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorOutput {
    pub drift_events: Vec<DriftEvent>,
    pub retrain_events: Vec<RetrainEvent>,
    /// One snapshot per model version and window with data.
    pub metrics: Vec<ModelMetrics>,
}

/// Most window ends the drop test judges in one evaluation after a burst of data: a day of
/// one-minute buckets. Older ones are skipped.
const MAX_CATCH_UP_JUDGEMENTS: usize = 1440;

/// The latest verdict of a detector: its statistic against its threshold over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestVerdict {
    pub statistic: String,
    pub value: f64,
    pub threshold: f64,
    pub window_end: TimestampMs,
}

/// One detector machine of a model version, as [`Monitor::detector_states`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorState {
    pub version: String,
    pub detector: String,
    /// `None` for model-level detectors.
    pub feature: Option<String>,
    pub state: DriftState,
    /// `None` until the machine's first verdict since this process holds the version.
    pub latest: Option<LatestVerdict>,
}

/// Machines are keyed by (detector, feature).
type MachineKey = (String, Option<String>);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct VersionState {
    windows: ModelWindows,
    baseline: Baseline,
    streams: Vec<StreamWatch>,
    machines: BTreeMap<MachineKey, DriftMachine>,
    /// The latest verdict of each machine, for dashboards: not persisted (a restored version
    /// shows none until its next verdict), never read by a decision.
    #[serde(skip)]
    verdicts: BTreeMap<MachineKey, LatestVerdict>,
    /// Window end the drop test last judged: the same window is not judged twice.
    last_judged_end: Option<TimestampMs>,
    /// Window end the estimated drop last judged.
    last_estimated_end: Option<TimestampMs>,
    /// Window end the misrouted-inputs check last judged.
    last_misrouted_end: Option<TimestampMs>,
    submitted: Vec<Judgement>,
    signatures: SignatureTracker,
    /// Accuracy against time since go-live, from matured buckets.
    decay: DecayFit,
}

impl VersionState {
    fn new(cfg: &ModelConfig) -> Result<Self, MonitorError> {
        let mut streams = Vec::new();
        if cfg.adwin.enabled {
            streams.push(StreamWatch::adwin(&cfg.adwin)?);
        }
        if cfg.page_hinkley.enabled {
            streams.push(StreamWatch::page_hinkley(&cfg.page_hinkley)?);
        }
        if cfg.ddm.enabled {
            streams.push(StreamWatch::ddm(&cfg.ddm)?);
        }
        if cfg.eddm.enabled {
            streams.push(StreamWatch::eddm(&cfg.eddm)?);
        }
        // Validated config: both lengths parse; the fallbacks only keep this total.
        let (window_ms, reference_ms) = cfg
            .feature_drift
            .lengths_ms()
            .unwrap_or((3_600_000, 3_600_000));
        Ok(VersionState {
            signatures: SignatureTracker::new(window_ms, reference_ms),
            windows: ModelWindows::new(cfg.window_specs(), cfg.maturity_ms),
            baseline: Baseline::learned(cfg.baseline.clone()),
            streams,
            machines: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            last_judged_end: None,
            last_estimated_end: None,
            last_misrouted_end: None,
            submitted: Vec::new(),
            decay: DecayFit::new(),
        })
    }
}

#[derive(Debug, Clone)]
struct ModelState {
    config: ModelConfig,
    versions: BTreeMap<String, VersionState>,
    policy: PolicyState,
    /// Labels of partials without a version, for the misrouted-inputs check of every version.
    unversioned: UnversionedTally,
    /// Changed since its last [`Monitor::export_model`]: the changelog needs a new snapshot.
    dirty: bool,
}

impl ModelState {
    fn new(config: ModelConfig) -> Self {
        ModelState {
            config,
            versions: BTreeMap::new(),
            policy: PolicyState::default(),
            unversioned: UnversionedTally::default(),
            dirty: true,
        }
    }
}

/// The monitor of a set of models.
#[derive(Debug, Clone)]
pub struct Monitor {
    config: MonitorConfig,
    models: BTreeMap<String, ModelState>,
}

impl Monitor {
    /// A monitor; fails on an invalid configuration.
    pub fn new(config: MonitorConfig) -> Result<Self, MonitorError> {
        config.validate()?;
        Ok(Monitor {
            config,
            models: BTreeMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    fn version_mut(
        &mut self,
        model_id: &str,
        version: &str,
    ) -> Result<&mut VersionState, MonitorError> {
        let config = &self.config;
        let model = self
            .models
            .entry(model_id.to_owned())
            .or_insert_with(|| ModelState::new(config.for_model(model_id)));
        model.dirty = true;
        Ok(match model.versions.entry(version.to_owned()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(VersionState::new(&model.config)?),
        })
    }

    /// Merges one partial; feeds the buckets that matured to the baseline and the stream
    /// detectors; evicts what no window needs any more. Its signature, if any, goes to the
    /// version's signature tracker; a malformed one is dropped (and counted) while the
    /// partial's counters still merge. A partial of [`unversioned_labels`] starts no version
    /// series: [`Placement::Unversioned`]; its labels go to the model's tally of unversioned
    /// labels (the `misrouted_inputs` check's, see `unversioned`).
    pub fn ingest(&mut self, p: &ModelPartial) -> Result<Placement, MonitorError> {
        // Look up by `&str` first: the common case allocates nothing.
        if let Some(m) = self.models.get_mut(p.model_id.as_str()) {
            if let Some(v) = m.versions.get_mut(p.model_version.as_str()) {
                m.dirty = true;
                return Self::ingest_into(v, p);
            }
        }
        if unversioned_labels(p) {
            self.tally_unversioned(p);
            return Ok(Placement::Unversioned);
        }
        let v = self.version_mut(&p.model_id, &p.model_version)?;
        Self::ingest_into(v, p)
    }

    fn ingest_into(v: &mut VersionState, p: &ModelPartial) -> Result<Placement, MonitorError> {
        let placement = v.windows.ingest(p)?;
        if placement == Placement::Merged {
            if let Some(bytes) = &p.signature {
                // A bad signature must not cost the counters: it is counted and skipped.
                let _ = v
                    .signatures
                    .ingest(bytes, p.bucket_start, p.bucket_width_ms);
            }
            Self::feed_matured(v, p.bucket_width_ms);
        }
        Ok(placement)
    }

    /// Hands every bucket that matured to the baseline and the stream detectors, in bucket
    /// order, then evicts what no window needs.
    fn feed_matured(v: &mut VersionState, default_width: i64) {
        let width = v.windows.bucket_width_ms().unwrap_or(default_width);
        for bucket in v.windows.take_matured() {
            v.baseline.offer(&bucket);
            v.decay.offer(
                bucket.start,
                bucket.aggregate.correct(),
                bucket.aggregate.classified(),
            );
            for s in &mut v.streams {
                s.feed(&bucket, width);
            }
        }
        v.windows.evict(0);
    }

    /// Sets an external baseline for a model version (a reference period's outcomes as one
    /// partial spanning it); replaces a learned one.
    pub fn set_baseline(
        &mut self,
        model_id: &str,
        version: &str,
        reference: &ModelPartial,
    ) -> Result<(), MonitorError> {
        let v = self.version_mut(model_id, version)?;
        v.baseline = Baseline::external(reference);
        Ok(())
    }

    /// Sets the reference signature of a model version (serialized
    /// [`SignatureSummary`](crate::summary::SignatureSummary) of a reference period
    /// `[start, end)`, e.g. the training data); replaces a learned one, frozen at once.
    pub fn set_reference_signature(
        &mut self,
        model_id: &str,
        version: &str,
        signature: &[u8],
        start: TimestampMs,
        end: TimestampMs,
    ) -> Result<(), MonitorError> {
        let v = self.version_mut(model_id, version)?;
        v.signatures
            .set_reference(signature, start, end)
            .map_err(|source| MonitorError::Signature {
                model: model_id.to_owned(),
                version: version.to_owned(),
                source,
            })
    }

    /// The signature tracker of a model version (reference bounds, decode errors).
    pub fn signatures(&self, model_id: &str, version: &str) -> Option<&SignatureTracker> {
        Some(&self.models.get(model_id)?.versions.get(version)?.signatures)
    }

    /// Queues a verdict of a detector living outside the monitor (feature drift, say), to be
    /// applied at the next [`evaluate`](Self::evaluate), after the built-in detectors.
    pub fn submit(
        &mut self,
        model_id: &str,
        version: &str,
        judgement: Judgement,
    ) -> Result<(), MonitorError> {
        let v = self.version_mut(model_id, version)?;
        v.submitted.push(judgement);
        Ok(())
    }

    /// Evaluates every model at event time `now`, with a metrics snapshot per version and
    /// window.
    pub fn evaluate(&mut self, now: TimestampMs) -> MonitorOutput {
        self.evaluate_where(now, |_| true, true)
    }

    /// Applies one epoch (see [`clock`]): merges its partials in their order, then evaluates
    /// the models that got predictions or outcomes from it (expiries alone, which a quiet join
    /// dates by its watermark, do not count). Each is evaluated at the epoch's end, or at its
    /// own data's progress if that is earlier: labels arriving long after the last prediction
    /// (days, say, after the stream ended) update their predictions' buckets but never move the
    /// model's time past its predictions, so they cannot run a retrain cooldown out. `placed`
    /// hears of every partial's placement. No metrics snapshots: a catch-up applies thousands
    /// of epochs; take them with [`model_metrics`](Self::model_metrics).
    pub fn apply_epoch<'a>(
        &mut self,
        partials: impl IntoIterator<Item = &'a ModelPartial>,
        end: TimestampMs,
        mut placed: impl FnMut(&ModelPartial, &Result<Placement, MonitorError>),
    ) -> MonitorOutput {
        let mut active = std::collections::BTreeSet::new();
        for p in partials {
            let placement = self.ingest(p);
            if placement == Ok(Placement::Merged) && carries_traffic(p) {
                active.insert(p.model_id.clone());
            }
            placed(p, &placement);
        }
        let mut out = MonitorOutput::default();
        for model in active {
            let Some(m) = self.models.get_mut(&model) else {
                continue;
            };
            let progress = m
                .versions
                .values()
                .filter_map(|v| v.windows.progress_ms())
                .max();
            // Windows mature with the monitor's time; the model's own time (cooldowns, event
            // times) stays at its data.
            for v in m.versions.values_mut() {
                v.windows.advance_to(end);
                let width = v.windows.bucket_width_ms().unwrap_or(1);
                Self::feed_matured(v, width);
            }
            let now = progress.map_or(end, |p| p.min(end));
            let o = self.evaluate_where(now, |m| m == model, false);
            out.drift_events.extend(o.drift_events);
            out.retrain_events.extend(o.retrain_events);
        }
        out
    }

    /// Moves the given models' time to `time` (the monitor's event time, past every epoch
    /// applied) without new data: their windows mature as time goes on — the last buckets of a
    /// stream too — and they are judged at the earlier of `time` and their data's progress.
    /// What matures holds exactly the epochs before `time`, and a burst of matured windows is
    /// judged window by window, so calling this more or less often gives the same events.
    pub fn advance<'a>(
        &mut self,
        models: impl IntoIterator<Item = &'a str>,
        time: TimestampMs,
    ) -> MonitorOutput {
        let mut out = MonitorOutput::default();
        for model in models {
            let Some(m) = self.models.get_mut(model) else {
                continue;
            };
            let progress = m
                .versions
                .values()
                .filter_map(|v| v.windows.progress_ms())
                .max();
            let Some(progress) = progress else {
                continue;
            };
            for v in m.versions.values_mut() {
                v.windows.advance_to(time);
                let width = v.windows.bucket_width_ms().unwrap_or(1);
                Self::feed_matured(v, width);
            }
            let o = self.evaluate_where(progress.min(time), |m| m == model, false);
            out.drift_events.extend(o.drift_events);
            out.retrain_events.extend(o.retrain_events);
        }
        out
    }

    /// Current metrics of one model version over one window (for dashboards).
    pub fn metrics(
        &self,
        model_id: &str,
        version: &str,
        window: &str,
        now: TimestampMs,
    ) -> Option<ModelMetrics> {
        let m = self.models.get(model_id)?;
        let v = m.versions.get(version)?;
        v.windows
            .window(window)
            .map(|view| snapshot(model_id, version, v, &view, &m.config.policy, now))
    }

    /// Current metrics of every version and window of a model.
    pub fn model_metrics(&self, model_id: &str, now: TimestampMs) -> Vec<ModelMetrics> {
        let Some(m) = self.models.get(model_id) else {
            return Vec::new();
        };
        m.versions
            .iter()
            .flat_map(|(version, v)| {
                v.windows
                    .windows()
                    .into_iter()
                    .map(move |view| snapshot(model_id, version, v, &view, &m.config.policy, now))
            })
            .collect()
    }

    /// Current metrics of every version and window of every model.
    pub fn all_metrics(&self, now: TimestampMs) -> Vec<ModelMetrics> {
        self.models
            .keys()
            .flat_map(|m| self.model_metrics(m, now))
            .collect()
    }

    /// State of one detector's machine.
    pub fn drift_state(
        &self,
        model_id: &str,
        version: &str,
        detector: &str,
        feature: Option<&str>,
    ) -> Option<DriftState> {
        let v = self.models.get(model_id)?.versions.get(version)?;
        v.machines
            .get(&(detector.to_owned(), feature.map(str::to_owned)))
            .map(|m| m.state)
    }

    /// Every detector machine of a model with its state and latest verdict, for dashboards
    /// (the console's detector table).
    pub fn detector_states(&self, model_id: &str) -> Vec<DetectorState> {
        let Some(m) = self.models.get(model_id) else {
            return Vec::new();
        };
        m.versions
            .iter()
            .flat_map(|(version, v)| {
                v.machines.iter().map(move |(key, machine)| DetectorState {
                    version: version.clone(),
                    detector: key.0.clone(),
                    feature: key.1.clone(),
                    state: machine.state,
                    latest: v.verdicts.get(key).cloned(),
                })
            })
            .collect()
    }

    /// The baseline of a model version.
    pub fn baseline(&self, model_id: &str, version: &str) -> Option<&Baseline> {
        Some(&self.models.get(model_id)?.versions.get(version)?.baseline)
    }

    /// The fitted accuracy decay of a model version (see [`decay`]), once there is enough
    /// matured data.
    pub fn decay(&self, model_id: &str, version: &str) -> Option<DecayEstimate> {
        self.models
            .get(model_id)?
            .versions
            .get(version)?
            .decay
            .estimate()
    }

    /// Window counters of a model version (late, duplicate partials).
    pub fn window_stats(&self, model_id: &str, version: &str) -> Option<WindowStats> {
        Some(
            self.models
                .get(model_id)?
                .versions
                .get(version)?
                .windows
                .stats(),
        )
    }

    /// A model's policy state, to persist.
    pub fn policy_state(&self, model_id: &str) -> Option<&PolicyState> {
        self.models.get(model_id).map(|m| &m.policy)
    }

    /// Forgets what was learned of a model's versions (windows, baselines, detectors, drift
    /// states, signatures) but keeps its retrain policy, whose history holds across owners:
    /// for a model whose partition moved to another worker, so that stale windows are never
    /// evaluated again if it comes back.
    pub fn hand_over(&mut self, model_id: &str) {
        if let Some(m) = self.models.get_mut(model_id) {
            m.versions.clear();
            m.unversioned.clear();
            m.dirty = false;
        }
    }

    /// Restores a model's persisted policy state.
    pub fn restore_policy_state(&mut self, model_id: &str, state: PolicyState) {
        let config = self.config.for_model(model_id);
        let m = self
            .models
            .entry(model_id.to_owned())
            .or_insert_with(|| ModelState::new(config));
        m.policy = state;
        m.dirty = true;
    }
}

/// Whether a partial brings predictions (a signature) or outcomes, not only expiries, orphans
/// or duplicates.
fn carries_traffic(p: &ModelPartial) -> bool {
    p.signature.is_some()
        || p.counters.received_predictions > 0
        || p.counters.matched > 0
        || !p.confusion.is_empty()
        || p.regression.count > 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
