//! One evaluation of the monitor's models: the drop test window by window, the stream and
//! feature detectors, the drift state machines and the retrain policy (see the parent module).

use super::policy::{self, Decision, DetectorStatus};
use super::UnversionedTally;
use super::{detectors, Metrics, ModelState, Monitor, MonitorOutput, VersionState, WindowView};
use super::{Judgement, ModelConfig, PolicyConfig, PolicyState, MAX_CATCH_UP_JUDGEMENTS};
use crate::{DriftEvent, DriftState, ModelMetrics, RetrainEvent, TimestampMs};

fn machine_key_name(detector: &str, feature: Option<&str>) -> String {
    match feature {
        Some(f) => format!("{detector}:{f}"),
        None => detector.to_owned(),
    }
}

impl Monitor {
    pub(super) fn evaluate_where(
        &mut self,
        now: TimestampMs,
        include: impl Fn(&str) -> bool,
        with_metrics: bool,
    ) -> MonitorOutput {
        let mut out = MonitorOutput::default();
        for (model_id, model) in &mut self.models {
            if !include(model_id) {
                continue;
            }
            let ModelState {
                config: cfg,
                versions,
                policy: policy_state,
                unversioned,
                dirty,
            } = model;
            let policy_before = policy_state.clone();
            for (version, v) in versions.iter_mut() {
                if with_metrics {
                    for view in v.windows.windows() {
                        out.metrics
                            .push(snapshot(model_id, version, v, &view, &cfg.policy, now));
                    }
                }
                if cfg.accuracy_drop.enabled && v.baseline.is_ready() {
                    // Every window end passed since the last judgement, in order, each followed
                    // by the policy's decision on that window: data that arrives in a burst (a
                    // backlog, a replay) is judged window by window, as it would be live.
                    // The first judgement: windows ending from the baseline's end on, the first
                    // a live monitor judges.
                    let after = v.last_judged_end.or_else(|| {
                        let (_, end) = v.baseline.bounds();
                        (end != 0).then(|| end.saturating_sub(1))
                    });
                    let views = v.windows.views_since(
                        &cfg.accuracy_drop.window,
                        after,
                        MAX_CATCH_UP_JUDGEMENTS,
                    );
                    let current = views.last().map(|w| w.end);
                    for view in views {
                        let held = v
                            .machines
                            .get(&(detectors::ACCURACY_DROP.to_owned(), None))
                            .is_some_and(|m| {
                                matches!(m.state, DriftState::Warning | DriftState::Drift)
                            });
                        let verdict = detectors::judge_accuracy_drop(
                            &cfg.accuracy_drop,
                            &v.baseline,
                            &view,
                            held,
                        );
                        // Each end is considered once, except the current one while it abstains
                        // (labels may still reach it before the window moves on).
                        if verdict.is_some() || Some(view.end) != current {
                            v.last_judged_end = Some(view.end);
                        }
                        let Some(j) = verdict else {
                            continue;
                        };
                        out.drift_events
                            .extend(step_machine(v, model_id, version, &j, cfg, now));
                        out.retrain_events.extend(decide(
                            cfg,
                            policy_state,
                            model_id,
                            version,
                            v,
                            Some(&view),
                            now,
                        ));
                    }
                }
                if cfg.estimated_drop.enabled {
                    judge_estimated(v, model_id, version, cfg, now, &mut out);
                }
                if cfg.misrouted_inputs.enabled {
                    judge_misrouted(v, unversioned, model_id, version, cfg, now, &mut out);
                }
                let mut verdicts = Vec::new();
                for s in &mut v.streams {
                    verdicts.extend(s.judge(&v.baseline));
                }
                if cfg.feature_drift.enabled {
                    verdicts.extend(v.signatures.judge(&cfg.feature_drift));
                }
                verdicts.append(&mut v.submitted);
                for j in verdicts {
                    out.drift_events
                        .extend(step_machine(v, model_id, version, &j, cfg, now));
                }
            }
            for (version, v) in versions.iter() {
                let judged = v.windows.window(&cfg.accuracy_drop.window);
                out.retrain_events.extend(decide(
                    cfg,
                    policy_state,
                    model_id,
                    version,
                    v,
                    judged.as_ref(),
                    now,
                ));
            }
            // Verdicts only come from data ingested since the last evaluation (which made the
            // model dirty already); the policy may also move with `now` alone.
            if *policy_state != policy_before {
                *dirty = true;
            }
        }
        out
    }
}

/// The estimated drop on every end of its window passed since its last verdict, in order, as
/// the drop test does: the same windows are judged however often the monitor evaluates. The
/// retrain policy hears of its machine at the evaluation's decision.
fn judge_estimated(
    v: &mut VersionState,
    model_id: &str,
    version: &str,
    cfg: &ModelConfig,
    now: TimestampMs,
    out: &mut MonitorOutput,
) {
    if !v.baseline.is_ready() {
        return;
    }
    let after = v.last_estimated_end.or_else(|| {
        let (_, end) = v.baseline.bounds();
        (end != 0).then(|| end.saturating_sub(1))
    });
    let views = v
        .windows
        .views_since(&cfg.estimated_drop.window, after, MAX_CATCH_UP_JUDGEMENTS);
    let current = views.last().map(|w| w.end);
    for view in views {
        let verdict = detectors::judge_estimated_drop(&cfg.estimated_drop, &v.baseline, &view);
        // As the drop test: the current end stays open while it abstains (its predictions may
        // still come in), every earlier end is considered once.
        if verdict.is_some() || Some(view.end) != current {
            v.last_estimated_end = Some(view.end);
        }
        if let Some(j) = verdict {
            out.drift_events
                .extend(step_machine(v, model_id, version, &j, cfg, now));
        }
    }
}

/// The misrouted-inputs check on every end of its window passed since its last verdict, in
/// order, with the model's unversioned labels over each window's span: the same windows are
/// judged however often the monitor evaluates. Needs no baseline.
fn judge_misrouted(
    v: &mut VersionState,
    unversioned: &UnversionedTally,
    model_id: &str,
    version: &str,
    cfg: &ModelConfig,
    now: TimestampMs,
    out: &mut MonitorOutput,
) {
    let window = cfg
        .misrouted_inputs
        .window
        .as_deref()
        .unwrap_or(&cfg.accuracy_drop.window);
    let views = v
        .windows
        .views_since(window, v.last_misrouted_end, MAX_CATCH_UP_JUDGEMENTS);
    let current = views.last().map(|w| w.end);
    let key = (detectors::MISROUTED_INPUTS.to_owned(), None);
    for view in views {
        let labels = unversioned.sum(view.start, view.end);
        let seen = v.machines.contains_key(&key);
        let verdict = detectors::judge_misrouted_inputs(&cfg.misrouted_inputs, &view, labels, seen);
        // As the drop test: the current end stays open while it abstains (its inputs may still
        // come in), every earlier end is considered once.
        if verdict.is_some() || Some(view.end) != current {
            v.last_misrouted_end = Some(view.end);
        }
        if let Some(j) = verdict {
            out.drift_events
                .extend(step_machine(v, model_id, version, &j, cfg, now));
        }
    }
}

/// Applies a verdict to its (detector, feature) machine; the event when the state changed.
fn step_machine(
    v: &mut VersionState,
    model_id: &str,
    version: &str,
    j: &Judgement,
    cfg: &ModelConfig,
    now: TimestampMs,
) -> Option<DriftEvent> {
    let key = (j.detector.clone(), j.feature.clone());
    v.verdicts.insert(
        key.clone(),
        super::LatestVerdict {
            statistic: j.statistic.clone(),
            value: j.value,
            threshold: j.threshold,
            window_end: j.window_end,
        },
    );
    v.machines
        .entry(key)
        .or_default()
        .step(model_id, version, j, cfg.hysteresis, now)
}

/// Asks a model's retrain policy, given a version's drift states and the judged window.
fn decide(
    cfg: &ModelConfig,
    state: &mut PolicyState,
    model_id: &str,
    version: &str,
    v: &VersionState,
    judged: Option<&WindowView>,
    now: TimestampMs,
) -> Option<RetrainEvent> {
    let statuses: Vec<DetectorStatus> = v
        .machines
        .iter()
        .map(|((d, f), m)| DetectorStatus {
            key: machine_key_name(d, f.as_deref()),
            state: m.state,
            evaluations_in_drift: m.evaluations_in_drift,
            drift_event_id: m.drift_event_id.clone(),
            onset: m.onset,
        })
        .collect();
    let (labeled, metrics) = judged.map_or((0, Vec::new()), |w| {
        (
            w.aggregate.labeled(),
            Metrics::compute(&w.aggregate, w.length_ms).to_pairs(),
        )
    });
    let decision = Decision {
        model_id,
        model_version: version,
        detectors: &statuses,
        labeled,
        metrics,
        now,
        decay: v.decay.estimate(),
    };
    policy::decide(&cfg.policy, state, decision)
}

/// A version's metrics over one window, with its decay estimate.
pub(super) fn snapshot(
    model_id: &str,
    version: &str,
    v: &VersionState,
    view: &WindowView,
    policy: &PolicyConfig,
    now: TimestampMs,
) -> ModelMetrics {
    let m = Metrics::compute(&view.aggregate, view.length_ms);
    let decay = v.decay.estimate();
    ModelMetrics {
        model_id: model_id.to_owned(),
        model_version: version.to_owned(),
        window: view.name.clone(),
        window_start: view.start,
        window_end: view.end,
        predictions: m.predictions,
        // `ModelMetrics` defines coverage as labeled / predictions: labeled means matched.
        labeled: m.matched,
        label_coverage: m.label_coverage.unwrap_or(0.0),
        metrics: m.to_pairs(),
        emitted_at: now,
        estimated_decay_per_day: decay.map(|e| e.per_day),
        suggested_retrain_interval_ms: decay
            .and_then(|e| e.suggested_interval_ms(policy.retrain_cost, policy.accuracy_hour_cost)),
    }
}
