//! One compared policy: its own [`Monitor`] over the shared partials, its retrains, and the
//! simulated deployments that follow them.

use std::collections::BTreeMap;

use crate::monitor::{Monitor, MonitorConfig, MonitorError, MonitorOutput, PolicyConfig};
use crate::{DriftState, ModelPartial, TimestampMs};

/// How a compared policy decides to retrain.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// The monitor configuration's own per-model policies.
    Configured,
    /// This policy for every model (a `--policy` file).
    Policy(PolicyConfig),
    /// Never: the history as it happened.
    NoRetrain,
    /// Every interval (ms) of event time from a model's first bucket on, whatever the data.
    Fixed(i64),
}

/// A drift event of a compared policy's monitor (entering DRIFT).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DriftMark {
    pub at: TimestampMs,
    pub model_version: String,
    pub detector: String,
    pub feature: Option<String>,
}

/// What happened to one model under one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRun {
    /// Event times of the retrain decisions.
    pub retrains: Vec<TimestampMs>,
    /// Bucket-aligned times the retrained models went live.
    pub deployed: Vec<TimestampMs>,
    pub drift: Vec<DriftMark>,
    /// Deployments decided but not live yet.
    pending: Vec<TimestampMs>,
    /// Partials of predictions before this are the retired model's: dropped.
    live_since: TimestampMs,
    /// Fixed schedule: the next retrain.
    next_fixed: Option<TimestampMs>,
    /// End of the latest bucket with outcomes: a schedule does not run past the data.
    data_end: TimestampMs,
}

impl Default for ModelRun {
    fn default() -> Self {
        ModelRun {
            retrains: Vec::new(),
            deployed: Vec::new(),
            drift: Vec::new(),
            pending: Vec::new(),
            live_since: TimestampMs::MIN,
            next_fixed: None,
            data_end: TimestampMs::MIN,
        }
    }
}

/// One compared policy.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: String,
    pub strategy: Strategy,
    monitor: Monitor,
    pub models: BTreeMap<String, ModelRun>,
    training_delay_ms: i64,
    width_ms: i64,
    /// The time models were last advanced to.
    advanced: TimestampMs,
}

/// `config` with every model's policy replaced by `policy`.
fn with_policy(config: &MonitorConfig, policy: &PolicyConfig) -> MonitorConfig {
    let mut c = config.clone();
    c.default.policy = policy.clone();
    for o in c.models.values_mut() {
        o.policy = Some(policy.clone());
    }
    c
}

impl Run {
    /// A run of `strategy` over `config`, simulating retrains that go live `training_delay_ms`
    /// after their decision (rounded up to the bucket width `width_ms`).
    pub fn new(
        name: String,
        strategy: Strategy,
        config: &MonitorConfig,
        training_delay_ms: i64,
        width_ms: i64,
    ) -> Result<Self, MonitorError> {
        let config = match &strategy {
            Strategy::Configured => config.clone(),
            Strategy::Policy(p) => with_policy(config, p),
            Strategy::NoRetrain | Strategy::Fixed(_) => {
                let mut off = config.default.policy.clone();
                off.enabled = false;
                let mut c = with_policy(config, &off);
                // Each model keeps its own cost figures (they are not used here anyway).
                for (id, o) in c.models.iter_mut() {
                    if let Some(p) = o.policy.as_mut() {
                        let own = config.for_model(id).policy;
                        p.retrain_cost = own.retrain_cost;
                        p.accuracy_hour_cost = own.accuracy_hour_cost;
                    }
                }
                c
            }
        };
        Ok(Run {
            name,
            strategy,
            monitor: Monitor::new(config)?,
            models: BTreeMap::new(),
            training_delay_ms: training_delay_ms.max(0),
            width_ms: width_ms.max(1),
            advanced: TimestampMs::MIN,
        })
    }

    /// The run's monitor (its metrics and decay estimates at the end).
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    fn align_up(&self, t: TimestampMs) -> TimestampMs {
        let w = self.width_ms;
        t.div_euclid(w)
            .saturating_add(i64::from(t.rem_euclid(w) != 0))
            * w
    }

    fn retrain(&mut self, model: &str, at: TimestampMs) {
        let deploy = self.align_up(at.saturating_add(self.training_delay_ms));
        let m = self.models.entry(model.to_owned()).or_default();
        m.retrains.push(at);
        m.pending.push(deploy);
    }

    /// Applies one epoch ending at `end`: the fixed schedule, then the deployments due by the
    /// epoch's start (the model's state starts over, as for a new version), then the partials
    /// of predictions made by the live model, then the policy's decisions.
    pub fn apply_epoch(&mut self, partials: &[ModelPartial], end: TimestampMs) {
        let start = end.saturating_sub(self.width_ms);
        for p in partials {
            if !self.models.contains_key(&p.model_id) {
                self.models.insert(p.model_id.clone(), ModelRun::default());
            }
            if let (Strategy::Fixed(interval), Some(m)) =
                (&self.strategy, self.models.get_mut(&p.model_id))
            {
                if carries_outcomes(p) {
                    if m.next_fixed.is_none() {
                        m.next_fixed = Some(p.bucket_start.saturating_add((*interval).max(1)));
                    }
                    let bucket_end = p.bucket_start.saturating_add(p.bucket_width_ms);
                    m.data_end = m.data_end.max(bucket_end);
                }
            }
        }
        if let Strategy::Fixed(interval) = self.strategy {
            let due: Vec<(String, TimestampMs)> = self
                .models
                .iter_mut()
                .flat_map(|(id, m)| {
                    let mut out = Vec::new();
                    while let Some(t) = m.next_fixed.filter(|&t| t <= end && t < m.data_end) {
                        out.push((id.clone(), t));
                        m.next_fixed = Some(t.saturating_add(interval.max(1)));
                    }
                    out
                })
                .collect();
            for (id, t) in due {
                self.retrain(&id, t);
            }
        }
        for (id, m) in self.models.iter_mut() {
            let due = m.pending.iter().copied().filter(|&d| d <= start).max();
            if let Some(d) = due {
                m.pending.retain(|&p| p > d);
                m.live_since = d;
                m.deployed.push(d);
                self.monitor.hand_over(id);
            }
        }
        let models = &self.models;
        let live = partials.iter().filter(|p| {
            models
                .get(&p.model_id)
                .is_none_or(|m| p.bucket_start >= m.live_since)
        });
        let out = self.monitor.apply_epoch(live, end, |_, _| {});
        self.take(out);
    }

    /// Moves every model's time to `time` (as the monitor stage does once no epoch is ready).
    pub fn advance(&mut self, time: TimestampMs) {
        if time <= self.advanced {
            return;
        }
        self.advanced = time;
        let ids: Vec<String> = self.models.keys().cloned().collect();
        let out = self.monitor.advance(ids.iter().map(String::as_str), time);
        self.take(out);
    }

    fn take(&mut self, out: MonitorOutput) {
        for e in out.drift_events {
            if e.state == DriftState::Drift {
                self.models
                    .entry(e.model_id.clone())
                    .or_default()
                    .drift
                    .push(DriftMark {
                        at: e.detected_at,
                        model_version: e.model_version,
                        detector: e.detector,
                        feature: e.feature,
                    });
            }
        }
        for r in out.retrain_events {
            self.retrain(&r.model_id, r.created_at);
        }
    }
}

/// Whether a partial holds outcomes of predictions (not only predictions taken in).
fn carries_outcomes(p: &ModelPartial) -> bool {
    !p.confusion.is_empty() || p.regression.count > 0
}
