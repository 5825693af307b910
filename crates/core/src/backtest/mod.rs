//! Backtest: replay a history of predictions and labels through the service's own join,
//! windows, detectors and retrain policies, and compare policies by what they would have cost.
//!
//! # The replay
//! Predictions and labels are taken in the order given (a caller merges two files by event
//! time, as a join task merges its two partitions), mapped as the join stage maps them
//! ([`intake`]), and pushed into one [`JoinTask`]. Every time event time crosses a bucket
//! boundary the task processes what it queued, its events fold into a [`PartialAggregator`],
//! and the aggregator flushes with the task's watermark, as the join stage does each flush
//! interval. Partials wait in an [`EpochQueue`] until the watermark passes their epoch, and
//! each epoch goes, in the queue's fixed order, to every compared policy's own [`Monitor`]
//! ([`run::Run`]), which is then advanced to the watermark, as the monitor stage does. Event time
//! is the only clock: the same history gives the same report, bit for bit, on any machine.
//! The join's processing-time rules (idle fallback, `max_task_idle`) never fire: both inputs
//! count as read to their end.
//!
//! # Compared policies
//! `configured` (the monitor configuration's per-model policies), any named policies (applied
//! to every model), and two baselines: `no-retrain` and `fixed-<interval>` (a retrain every
//! interval from a model's first outcome on). Each has its own monitor, so drift events,
//! cooldowns and budgets are each policy's own.
//!
//! # What a retrain does (simulated)
//! The history holds one model's predictions; what a retrained model would have predicted is
//! unknown. The simulation: a retrained model goes live `training_delay` after the decision
//! (rounded up to a bucket) and is then *as good as the model was at its start*, decaying from
//! there as the history decays. Precisely, with b₀ the model's reference accuracy (that of its
//! first `baseline.samples` outcomes, what the monitor learns as its baseline) and bₖ the
//! accuracy of the first `baseline.samples` outcomes after the k-th deployment (after
//! `baseline.warmup`), every bucket from that deployment on has its accuracy raised by
//! max(0, b₀ − bₖ), capped at 1. A step change before a retrain is thus undone, a step after it
//! hits the retrained model too, and a gradual decay restarts from b₀. In the policy's monitor
//! a deployment starts the model's state over (windows, baseline, detectors, as for a new
//! version; the policy's cooldown and budget carry on), and partials of predictions from
//! before it, the retired model's, are dropped: its new baseline is bₖ, so it judges the drops
//! the simulation puts on the retrained model.
//!
//! # Figures, per model and policy
//! The simulated accuracy in steps of the judged window (`accuracy_drop.window`, 1 h by
//! default): hours below the accuracy SLO (default: b₀ − `accuracy_drop.min_drop`), accuracy-hours
//! lost (Σ max(0, b₀ − accuracy) × hours), and cost = retrains × `retrain_cost` + accuracy-hours
//! lost × `accuracy_hour_cost`, with the model's configured policy's costs for every policy so
//! that they compare. Classification accuracy only: a model without classification outcomes
//! is listed as skipped.

pub mod intake;
pub mod report;
pub mod run;

use std::collections::BTreeMap;

pub use report::{BacktestReport, ModelReport, Observed, PolicyReport, Step, VersionDecay};
pub use run::{DriftMark, Run, Strategy};

use crate::join::partial::DEFAULT_BUCKET_WIDTH_MS;
use crate::join::{JoinConfig, JoinError, JoinEvent, JoinTask, PartialAggregator};
use crate::monitor::duration::parse_duration_ms;
use crate::monitor::{EpochQueue, MonitorConfig, MonitorError, PolicyConfig};
use crate::{GroundTruth, Prediction, TimestampMs};

/// Default interval of the `fixed-<interval>` baseline: a week.
pub const DEFAULT_FIXED_INTERVAL_MS: i64 = 7 * 86_400_000;
/// Default time from a retrain decision to the retrained model going live.
pub const DEFAULT_TRAINING_DELAY_MS: i64 = 2 * 3_600_000;

/// Configuration of a backtest.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestConfig {
    pub join: JoinConfig,
    /// The service's monitor configuration: its policies are `configured`.
    pub monitor: MonitorConfig,
    /// Further policies by name, each applied to every model.
    pub policies: Vec<(String, PolicyConfig)>,
    /// Interval of the `fixed-<interval>` baseline, ms.
    pub fixed_interval_ms: i64,
    /// From a retrain decision to the retrained model going live, ms.
    pub training_delay_ms: i64,
    /// The accuracy SLO; default per model: reference − `accuracy_drop.min_drop`.
    pub slo_accuracy: Option<f64>,
    /// Cost of a retrain; default per model: its policy's `retrain_cost`.
    pub retrain_cost: Option<f64>,
    pub bucket_width_ms: i64,
    /// Summarize prediction features, so feature-drift detectors run (and may trigger
    /// policies that list them). Costs most of the replay's time.
    pub features: bool,
}

impl Default for BacktestConfig {
    fn default() -> Self {
        BacktestConfig {
            join: JoinConfig::default(),
            monitor: MonitorConfig::default(),
            policies: Vec::new(),
            fixed_interval_ms: DEFAULT_FIXED_INTERVAL_MS,
            training_delay_ms: DEFAULT_TRAINING_DELAY_MS,
            slo_accuracy: None,
            retrain_cost: None,
            bucket_width_ms: DEFAULT_BUCKET_WIDTH_MS,
            features: false,
        }
    }
}

/// Why a backtest could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error("invalid backtest setting: {0}")]
    Invalid(String),
}

/// `7d`, `36h`, `90m`: the shortest exact form of a duration, for policy names.
pub fn duration_name(ms: i64) -> String {
    for (unit, scale) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms % scale == 0 {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

/// The replay. See the module docs.
#[derive(Debug)]
pub struct Backtest {
    config: BacktestConfig,
    task: JoinTask,
    aggregator: PartialAggregator,
    queue: EpochQueue<()>,
    runs: Vec<Run>,
    observed: Observed,
    events: Vec<JoinEvent>,
    /// Event time at which the task is next polled and flushed.
    next_flush: TimestampMs,
    /// Latest event time pushed.
    latest: TimestampMs,
    rejected: u64,
}

impl Backtest {
    /// A replay with the given configuration; fails on an invalid join or monitor
    /// configuration or a policy that does not validate.
    pub fn new(config: BacktestConfig) -> Result<Self, BacktestError> {
        let width = config.bucket_width_ms;
        if width <= 0 || config.fixed_interval_ms <= 0 || config.training_delay_ms < 0 {
            return Err(BacktestError::Invalid(format!(
                "bucket width ({width} ms) and fixed interval ({} ms) must be positive, the \
                 training delay ({} ms) not negative",
                config.fixed_interval_ms, config.training_delay_ms
            )));
        }
        let task = JoinTask::new(config.join.clone())?;
        let aggregator =
            PartialAggregator::new(0, width).map_err(|e| BacktestError::Invalid(e.to_string()))?;
        let mut strategies = vec![("configured".to_owned(), Strategy::Configured)];
        for (name, p) in &config.policies {
            strategies.push((name.clone(), Strategy::Policy(p.clone())));
        }
        strategies.push(("no-retrain".to_owned(), Strategy::NoRetrain));
        strategies.push((
            format!("fixed-{}", duration_name(config.fixed_interval_ms)),
            Strategy::Fixed(config.fixed_interval_ms),
        ));
        let runs = strategies
            .into_iter()
            .map(|(name, s)| Run::new(name, s, &config.monitor, config.training_delay_ms, width))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Backtest {
            config,
            task,
            aggregator,
            queue: EpochQueue::new(),
            runs,
            observed: Observed::default(),
            events: Vec::new(),
            next_flush: TimestampMs::MIN,
            latest: TimestampMs::MIN,
            rejected: 0,
        })
    }

    /// Takes one prediction.
    pub fn push_prediction(&mut self, p: &Prediction) {
        self.reach(p.timestamp);
        match intake::prediction_in(&mut self.task, p) {
            Ok((input, model)) => {
                self.task.push_prediction(input);
                if self.config.features {
                    // Counted like the join stage's dropped features: not an error of the replay.
                    let _ = self.aggregator.record_prediction(model, p);
                }
            }
            Err(_) => self.rejected += 1,
        }
    }

    /// Takes one label.
    pub fn push_label(&mut self, l: &GroundTruth) {
        self.reach(l.timestamp);
        match intake::label_in(&mut self.task, l) {
            Ok(input) => self.task.push_label(input),
            Err(_) => self.rejected += 1,
        }
    }

    /// Event time reached `t`: past a bucket boundary, what was queued is processed and
    /// flushed first.
    fn reach(&mut self, t: TimestampMs) {
        if t >= self.next_flush {
            if self.next_flush != TimestampMs::MIN {
                self.flush();
            }
            self.next_flush = self.aggregator.bucket_start(t) + self.config.bucket_width_ms;
        }
        self.latest = self.latest.max(t);
    }

    /// Processes the queued records, flushes the partials and applies the epochs the
    /// watermark passed.
    fn flush(&mut self) {
        for input in [crate::join::Input::Predictions, crate::join::Input::Labels] {
            self.task.set_caught_up(input, true);
        }
        let events = &mut self.events;
        // `i64::MIN` as processing time keeps the idle fallback out of the watermark.
        self.task.poll(i64::MIN, &mut |e| events.push(e));
        self.fold_and_flush(self.task.watermark());
    }

    fn fold_and_flush(&mut self, watermark: TimestampMs) {
        for e in self.events.drain(..) {
            self.aggregator.fold(&e);
        }
        for p in self.aggregator.flush(self.task.interner(), watermark) {
            self.queue.push((), p);
        }
        while let Some(epoch) = self.queue.pop_ready(watermark) {
            let partials: Vec<_> = epoch.partials.into_iter().map(|(_, p)| p).collect();
            for p in &partials {
                self.observed.add(p);
            }
            for run in &mut self.runs {
                run.apply_epoch(&partials, epoch.end);
            }
        }
        if watermark > TimestampMs::MIN {
            for run in &mut self.runs {
                run.advance(watermark);
            }
        }
    }

    /// Ends the history: every queued record is processed, every prediction still waiting
    /// expires, every epoch is applied and the last buckets mature; then the report.
    pub fn finish(mut self) -> BacktestReport {
        let events = &mut self.events;
        self.task.drain(&mut |e| events.push(e));
        let longest_maturity = self
            .runs
            .first()
            .map(|r| {
                r.models
                    .keys()
                    .map(|m| self.config.monitor.for_model(m).maturity_ms)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let end = self
            .latest
            .max(self.task.watermark())
            .saturating_add(longest_maturity)
            .saturating_add(self.config.bucket_width_ms);
        self.fold_and_flush(end);
        self.report()
    }

    fn report(&self) -> BacktestReport {
        let mut models = Vec::new();
        let mut skipped = Vec::new();
        let known: Vec<&String> = self
            .runs
            .first()
            .map_or(Vec::new(), |r| r.models.keys().collect());
        for model in known {
            let Some(report) = self.model_report(model) else {
                skipped.push(model.clone());
                continue;
            };
            models.push(report);
        }
        BacktestReport {
            inputs: self.task.total_counters(),
            rejected: self.rejected,
            models,
            skipped_models: skipped,
        }
    }

    fn model_report(&self, model: &str) -> Option<ModelReport> {
        let buckets = self.observed.model(model)?;
        let cfg = self.config.monitor.for_model(model);
        let first = buckets
            .iter()
            .find(|(_, o)| o.classified > 0)
            .map(|(&t, _)| t)?;
        let end = buckets.keys().next_back()? + self.config.bucket_width_ms;
        let reference = report::reference_accuracy(
            buckets,
            first.saturating_add(cfg.baseline.warmup_ms),
            cfg.baseline.samples,
        )?;
        let terms = report::Terms {
            slo: self
                .config
                .slo_accuracy
                .unwrap_or(reference - cfg.accuracy_drop.min_drop),
            reference,
            retrain_cost: self.config.retrain_cost.unwrap_or(cfg.policy.retrain_cost),
            accuracy_hour_cost: cfg.policy.accuracy_hour_cost,
            samples: cfg.baseline.samples,
            warmup_ms: cfg.baseline.warmup_ms,
        };
        let step_ms = parse_duration_ms(&cfg.accuracy_drop.window).unwrap_or(3_600_000);
        let policies = self
            .runs
            .iter()
            .map(|r| {
                report::policy_report(
                    &r.name,
                    r.models.get(model),
                    buckets,
                    &terms,
                    (first, end, step_ms),
                )
            })
            .collect();
        let mut versions: BTreeMap<String, VersionDecay> = BTreeMap::new();
        if let Some(history) = self.runs.iter().find(|r| r.strategy == Strategy::NoRetrain) {
            for m in history.monitor().model_metrics(model, end) {
                versions.insert(
                    m.model_version.clone(),
                    VersionDecay {
                        model_version: m.model_version,
                        estimated_decay_per_day: m.estimated_decay_per_day,
                        suggested_retrain_interval_ms: m.suggested_retrain_interval_ms,
                    },
                );
            }
        }
        Some(ModelReport {
            model_id: model.to_owned(),
            start: first,
            end,
            reference_accuracy: reference,
            slo_accuracy: terms.slo,
            retrain_cost: terms.retrain_cost,
            accuracy_hour_cost: terms.accuracy_hour_cost,
            step_ms,
            versions: versions.into_values().collect(),
            policies,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
