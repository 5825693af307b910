//! The outcomes observed in the history, the accuracy each compared policy would have had
//! (see the parent module on the simulation), and the figures reported.

use std::collections::BTreeMap;

use serde::Serialize;

use super::run::{DriftMark, ModelRun};
use crate::{JoinCounters, ModelPartial, TimestampMs};

/// Classification outcomes of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub correct: u64,
    pub classified: u64,
}

/// Classification outcomes per model and prediction-time bucket, every version together: the
/// history as it happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    models: BTreeMap<String, BTreeMap<TimestampMs, Outcomes>>,
}

impl Observed {
    /// Adds a partial's confusion cells to its bucket.
    pub fn add(&mut self, p: &ModelPartial) {
        if p.confusion.is_empty() {
            return;
        }
        let o = self
            .models
            .entry(p.model_id.clone())
            .or_default()
            .entry(p.bucket_start)
            .or_default();
        for c in &p.confusion {
            o.classified = o.classified.saturating_add(c.count);
            if c.predicted == c.actual {
                o.correct = o.correct.saturating_add(c.count);
            }
        }
    }

    /// The buckets of `model`.
    pub fn model(&self, model: &str) -> Option<&BTreeMap<TimestampMs, Outcomes>> {
        self.models.get(model)
    }

    /// Every model with classification outcomes.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

/// Accuracy of the first `samples` outcomes of buckets starting at or after `from` (what the
/// monitor learns as a baseline); fewer when the history ends first, `None` without any.
pub fn reference_accuracy(
    buckets: &BTreeMap<TimestampMs, Outcomes>,
    from: TimestampMs,
    samples: u64,
) -> Option<f64> {
    let mut sum = Outcomes::default();
    for o in buckets.range(from..).map(|(_, o)| o) {
        sum.correct += o.correct;
        sum.classified += o.classified;
        if sum.classified >= samples.max(1) {
            break;
        }
    }
    (sum.classified > 0).then(|| sum.correct as f64 / sum.classified as f64)
}

/// One step of a simulated accuracy timeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    pub start: TimestampMs,
    /// Hours of history the step covers (the last one may be shorter).
    pub hours: f64,
    pub outcomes: u64,
    pub accuracy: f64,
}

/// The accuracy timeline in steps of `step_ms` from `start` to `end`, each bucket's outcomes
/// raised by the offset of the segment it falls in (`segments`: (start, offset), sorted; an
/// offset raises a bucket's accuracy, capped at 1).
pub fn simulate(
    buckets: &BTreeMap<TimestampMs, Outcomes>,
    segments: &[(TimestampMs, f64)],
    start: TimestampMs,
    end: TimestampMs,
    step_ms: i64,
) -> Vec<Step> {
    let step_ms = step_ms.max(1);
    let mut steps: Vec<Step> = Vec::new();
    let mut acc: BTreeMap<i64, (f64, u64)> = BTreeMap::new();
    for (&t, o) in buckets.range(start..end) {
        if o.classified == 0 {
            continue;
        }
        let offset = segments
            .iter()
            .rev()
            .find(|(s, _)| *s <= t)
            .map_or(0.0, |(_, off)| *off);
        let n = o.classified as f64;
        let correct = (o.correct as f64 + offset * n).min(n);
        let e = acc.entry((t - start).div_euclid(step_ms)).or_default();
        e.0 += correct;
        e.1 += o.classified;
    }
    for (i, (correct, n)) in acc {
        let s = start + i * step_ms;
        let hours = ((end.min(s + step_ms) - s) as f64 / 3_600_000.0).max(0.0);
        steps.push(Step {
            start: s,
            hours,
            outcomes: n,
            accuracy: correct / n as f64,
        });
    }
    steps
}

/// The figures of one policy for one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    pub name: String,
    /// Event times of the retrain decisions.
    pub retrains: Vec<TimestampMs>,
    /// Hours whose (simulated) accuracy was below the SLO.
    pub hours_below_slo: f64,
    /// Σ max(0, reference − accuracy) × hours.
    pub accuracy_hours_lost: f64,
    /// retrains × retrain cost + accuracy-hours lost × accuracy-hour cost.
    pub cost: f64,
    /// When the retrained models went live.
    pub deployed: Vec<TimestampMs>,
    /// Drift events (entering DRIFT) of this policy's monitor.
    pub drift_events: Vec<DriftMark>,
    /// The simulated accuracy, step by step (for charts; not in the JSON form).
    #[serde(skip)]
    pub timeline: Vec<Step>,
}

/// Decay estimate of one version at the end of the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionDecay {
    pub model_version: String,
    pub estimated_decay_per_day: Option<f64>,
    pub suggested_retrain_interval_ms: Option<i64>,
}

/// Everything reported about one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelReport {
    pub model_id: String,
    /// First bucket with outcomes, and the end of the last one.
    pub start: TimestampMs,
    pub end: TimestampMs,
    /// Accuracy the model started with (its first baseline), the level a retrain restores.
    pub reference_accuracy: f64,
    pub slo_accuracy: f64,
    pub retrain_cost: f64,
    pub accuracy_hour_cost: f64,
    /// Length of the timeline's steps (the judged window).
    pub step_ms: i64,
    /// Decay of each version as the history shows it (no retrains simulated).
    pub versions: Vec<VersionDecay>,
    pub policies: Vec<PolicyReport>,
}

/// The whole backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    /// Inputs taken (accounting of the join: matched, expired, orphans, duplicates, …).
    pub inputs: JoinCounters,
    /// Inputs refused before the join (empty request id, negative time, outside --from/--to
    /// is not counted here).
    pub rejected: u64,
    pub models: Vec<ModelReport>,
    /// Models without classification outcomes (regressors): not simulated.
    pub skipped_models: Vec<String>,
}

/// Cost figures and the SLO of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Terms {
    pub slo: f64,
    pub reference: f64,
    pub retrain_cost: f64,
    pub accuracy_hour_cost: f64,
    /// Outcomes a re-learned baseline takes.
    pub samples: u64,
    /// Warm-up before a new model's baseline.
    pub warmup_ms: i64,
}

/// The report of one policy's run on one model.
pub fn policy_report(
    name: &str,
    run: Option<&ModelRun>,
    buckets: &BTreeMap<TimestampMs, Outcomes>,
    terms: &Terms,
    (start, end, step_ms): (TimestampMs, TimestampMs, i64),
) -> PolicyReport {
    let empty = ModelRun::default();
    let run = run.unwrap_or(&empty);
    let mut segments = vec![(TimestampMs::MIN, 0.0)];
    for &d in &run.deployed {
        let level = reference_accuracy(buckets, d.saturating_add(terms.warmup_ms), terms.samples);
        let offset = level.map_or(0.0, |b| (terms.reference - b).max(0.0));
        segments.push((d, offset));
    }
    let timeline = simulate(buckets, &segments, start, end, step_ms);
    let (mut below, mut lost) = (0.0, 0.0);
    for s in &timeline {
        if s.accuracy < terms.slo {
            below += s.hours;
        }
        lost += (terms.reference - s.accuracy).max(0.0) * s.hours;
    }
    PolicyReport {
        name: name.to_owned(),
        retrains: run.retrains.clone(),
        hours_below_slo: below,
        accuracy_hours_lost: lost,
        cost: run.retrains.len() as f64 * terms.retrain_cost + lost * terms.accuracy_hour_cost,
        deployed: run.deployed.clone(),
        drift_events: run.drift.clone(),
        timeline,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const H: i64 = 3_600_000;

    fn buckets(acc: impl Fn(i64) -> u64) -> BTreeMap<TimestampMs, Outcomes> {
        (0..6 * 60)
            .map(|m| {
                let o = Outcomes {
                    correct: acc(m),
                    classified: 100,
                };
                (m * MIN, o)
            })
            .collect()
    }

    #[test]
    fn a_deployment_lifts_the_rest_to_the_reference_level() {
        // 90 % for two hours, then 60 %.
        let b = buckets(|m| if m < 120 { 90 } else { 60 });
        let terms = Terms {
            slo: 0.85,
            reference: reference_accuracy(&b, 0, 1000).unwrap(),
            retrain_cost: 2.0,
            accuracy_hour_cost: 10.0,
            samples: 1000,
            warmup_ms: 0,
        };
        assert!((terms.reference - 0.9).abs() < 1e-12);
        let span = (0, 6 * H, H);
        let none = policy_report("no-retrain", None, &b, &terms, span);
        assert!((none.hours_below_slo - 4.0).abs() < 1e-9);
        assert!((none.accuracy_hours_lost - 4.0 * 0.3).abs() < 1e-9);
        assert!((none.cost - 12.0).abs() < 1e-9);
        let mut run = ModelRun::default();
        run.retrains.push(2 * H + 30 * MIN);
        run.deployed.push(3 * H);
        let policy = policy_report("p", Some(&run), &b, &terms, span);
        assert!((policy.hours_below_slo - 1.0).abs() < 1e-9, "{policy:?}");
        assert!((policy.accuracy_hours_lost - 0.3).abs() < 1e-9);
        assert!((policy.cost - (2.0 + 3.0)).abs() < 1e-9);
        assert_eq!(policy.timeline.len(), 6);
        assert!((policy.timeline[5].accuracy - 0.9).abs() < 1e-12);
    }

    #[test]
    fn offsets_never_lower_accuracy_nor_lift_it_past_one() {
        let b = buckets(|m| if m < 60 { 80 } else { 95 });
        let steps = simulate(&b, &[(0, 0.0), (2 * H, 0.5)], 0, 6 * H, H);
        assert!((steps[0].accuracy - 0.8).abs() < 1e-12);
        assert!((steps[2].accuracy - 1.0).abs() < 1e-12);
        let terms = Terms {
            slo: 0.5,
            reference: 0.8,
            retrain_cost: 1.0,
            accuracy_hour_cost: 1.0,
            samples: 100,
            warmup_ms: 0,
        };
        let mut run = ModelRun::default();
        run.deployed.push(2 * H);
        // The level after the deployment (95 %) is above the reference: no offset.
        let r = policy_report("p", Some(&run), &b, &terms, (0, 6 * H, H));
        assert!((r.timeline[3].accuracy - 0.95).abs() < 1e-12);
    }
}
