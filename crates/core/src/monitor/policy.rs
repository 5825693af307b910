//! When drift becomes advice to retrain.
//!
//! At each evaluation the policy of a model looks at its detectors' state machines. It fires
//! when the configured detectors are in DRIFT (`any` of them, or `all`) for at least
//! `min_drift_evaluations` consecutive evaluations, the judged window holds at least
//! `min_labeled` labeled outcomes, the cooldown since the last retrain event has passed and the
//! event-time day's budget is not spent. Dry-run events are flagged advisory but otherwise count
//! like real ones (cooldown, budget), so switching dry-run off does not change *when* events come.
//!
//! The suggested training range runs from the estimated drift onset (the earliest onset among
//! the triggering detectors: ADWIN's cut point or the start of the first drifting window) to now.
//!
//! [`PolicyState`] is plain serializable data: persisted with the rest of a model's state and
//! restored, the policy continues exactly where it stopped (exactly-once changelogs).

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::{DriftState, RetrainEvent, TimestampMs};

/// One event-time day.
pub const DAY_MS: i64 = 86_400_000;

/// How the listed detectors combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerMode {
    /// One listed detector in DRIFT is enough.
    #[default]
    Any,
    /// Every listed detector must be in DRIFT.
    All,
}

/// Retrain policy of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Default true.
    pub enabled: bool,
    /// Default `any`.
    pub mode: TriggerMode,
    /// Detectors that may trigger (feature detectors as `detector:feature`, where either part
    /// may be `*`: `*:age` is any check of feature `age`, `missing_rate:*` that check on any
    /// feature; in mode `all` each entry needs one match). Default
    /// `["accuracy_drop"]`: the only detector that compares with the baseline under a practical
    /// floor; the stream detectors react to any significant change, useful as early warnings but
    /// too eager to spend a retrain on.
    pub detectors: Vec<String>,
    /// Consecutive evaluations in DRIFT before firing. Default 1: the state machine's hysteresis
    /// already asked for consecutive drifting verdicts.
    pub min_drift_evaluations: u32,
    /// Labeled outcomes the judged window must hold. Default 200, as the drop test.
    pub min_labeled: u64,
    /// `cooldown` (formerly `cooldown_ms`): minimum event time between two retrain events of a
    /// model. Default `24h`: a retrain takes hours and its effect must be observed before
    /// asking again.
    #[serde(
        rename = "cooldown",
        alias = "cooldown_ms",
        with = "crate::monitor::duration::cooldown"
    )]
    pub cooldown_ms: i64,
    /// Maximum retrain events per event-time (UTC) day. Default 1.
    pub daily_budget: u32,
    /// Emit events flagged advisory. Default false.
    pub dry_run: bool,
    /// Cost of one retrain, in the unit of `accuracy_hour_cost`. With the defaults the unit is
    /// one accuracy-hour: a retrain costs as much as serving a model one accuracy point worse
    /// for 100 hours. Used for the suggested retrain interval (`monitor::decay`) and by
    /// `driftwatch backtest`. Default 1.
    pub retrain_cost: f64,
    /// Cost of one accuracy-hour lost against the version's accuracy at go-live (a drop of
    /// 0.01 for 100 hours is one accuracy-hour). Default 1.
    pub accuracy_hour_cost: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            enabled: true,
            mode: TriggerMode::Any,
            detectors: vec![super::detectors::ACCURACY_DROP.to_owned()],
            min_drift_evaluations: 1,
            min_labeled: 200,
            cooldown_ms: DAY_MS,
            daily_budget: 1,
            dry_run: false,
            retrain_cost: 1.0,
            accuracy_hour_cost: 1.0,
        }
    }
}

impl PolicyConfig {
    /// Checks the cost fields: the field and the message when one is invalid.
    pub fn validate_costs(&self) -> Result<(), (&'static str, String)> {
        if !(self.retrain_cost.is_finite() && self.retrain_cost >= 0.0) {
            return Err((
                "policy.retrain_cost",
                format!("{} must be finite and >= 0", self.retrain_cost),
            ));
        }
        if !(self.accuracy_hour_cost.is_finite() && self.accuracy_hour_cost > 0.0) {
            return Err((
                "policy.accuracy_hour_cost",
                format!("{} must be finite and > 0", self.accuracy_hour_cost),
            ));
        }
        Ok(())
    }
}

/// Persistent state of a model's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    pub last_retrain_at: Option<TimestampMs>,
    /// Event-time day (days since the epoch) `spent_today` refers to.
    pub budget_day: Option<i64>,
    pub spent_today: u32,
    pub emitted: u64,
    pub suppressed_by_cooldown: u64,
    pub suppressed_by_budget: u64,
}

impl PolicyState {
    /// The state a model's policy had after publishing `events` (its retrain events, in any
    /// order): read back from the retrain-events topic when a monitor starts or takes a model
    /// over, so the cooldown and the daily budget hold across restarts and workers.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a crate::RetrainEvent>) -> PolicyState {
        let mut times: Vec<TimestampMs> = events.into_iter().map(|e| e.created_at).collect();
        times.sort_unstable();
        let mut state = PolicyState::default();
        for t in times {
            let day = t.div_euclid(DAY_MS);
            if state.budget_day != Some(day) {
                state.budget_day = Some(day);
                state.spent_today = 0;
            }
            state.spent_today += 1;
            state.last_retrain_at = Some(t);
            state.emitted += 1;
        }
        state
    }
}

/// What the policy needs to know of one detector's machine.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorStatus {
    /// `detector` or `detector:feature`.
    pub key: String,
    pub state: DriftState,
    pub evaluations_in_drift: u32,
    pub drift_event_id: Option<String>,
    pub onset: Option<TimestampMs>,
}

/// Everything one decision looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'a> {
    pub model_id: &'a str,
    pub model_version: &'a str,
    pub detectors: &'a [DetectorStatus],
    /// Labeled outcomes of the judged window.
    pub labeled: u64,
    pub metrics: Vec<(String, f64)>,
    pub now: TimestampMs,
    /// The version's fitted accuracy decay, published with the event.
    pub decay: Option<super::decay::DecayEstimate>,
}

/// Whether a policy entry names a detector key: equal, or `detector:feature` with `*` for
/// either part (a `*` never matches a model-level key, which has no feature).
pub fn key_matches(pattern: &str, key: &str) -> bool {
    if pattern == key {
        return true;
    }
    match (pattern.split_once(':'), key.split_once(':')) {
        (Some((pd, pf)), Some((kd, kf))) => (pd == "*" || pd == kd) && (pf == "*" || pf == kf),
        _ => false,
    }
}

/// Decides; updates `state` when an event is produced or suppressed.
pub fn decide(
    cfg: &PolicyConfig,
    state: &mut PolicyState,
    d: Decision<'_>,
) -> Option<RetrainEvent> {
    if !cfg.enabled || cfg.detectors.is_empty() {
        return None;
    }
    let min_evals = cfg.min_drift_evaluations.max(1);
    let drifting = |name: &str| {
        d.detectors.iter().find(|s| {
            key_matches(name, &s.key)
                && s.state == DriftState::Drift
                && s.evaluations_in_drift >= min_evals
        })
    };
    let triggering: Vec<&DetectorStatus> =
        cfg.detectors.iter().filter_map(|n| drifting(n)).collect();
    let fires = match cfg.mode {
        TriggerMode::Any => !triggering.is_empty(),
        TriggerMode::All => triggering.len() == cfg.detectors.len(),
    };
    if !fires || d.labeled < cfg.min_labeled {
        return None;
    }
    if let Some(last) = state.last_retrain_at {
        if d.now < last.saturating_add(cfg.cooldown_ms) {
            state.suppressed_by_cooldown += 1;
            return None;
        }
    }
    let day = d.now.div_euclid(DAY_MS);
    if state.budget_day != Some(day) {
        state.budget_day = Some(day);
        state.spent_today = 0;
    }
    if state.spent_today >= cfg.daily_budget {
        state.suppressed_by_budget += 1;
        return None;
    }
    state.spent_today += 1;
    state.last_retrain_at = Some(d.now);
    state.emitted += 1;

    let drift_event_ids: Vec<String> = triggering
        .iter()
        .filter_map(|s| s.drift_event_id.clone())
        .collect();
    let reasons = triggering
        .iter()
        .map(|s| {
            format!(
                "{} in DRIFT for {} evaluation(s)",
                s.key, s.evaluations_in_drift
            )
        })
        .collect();
    let train_from = triggering
        .iter()
        .filter_map(|s| s.onset)
        .min()
        .unwrap_or(d.now)
        .min(d.now);
    let mut key = Vec::new();
    for part in [d.model_id, d.model_version, "retrain"] {
        key.extend_from_slice(&(part.len() as u64).to_le_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key.extend_from_slice(&d.now.to_le_bytes());
    for id in &drift_event_ids {
        key.extend_from_slice(id.as_bytes());
    }
    Some(RetrainEvent {
        event_id: format!("{:032x}", xxh3_128(&key)),
        model_id: d.model_id.to_owned(),
        model_version: d.model_version.to_owned(),
        reasons,
        drift_event_ids,
        metrics: d.metrics,
        train_from,
        train_to: d.now,
        dry_run: cfg.dry_run,
        created_at: d.now,
        estimated_decay_per_day: d.decay.map(|e| e.per_day),
        suggested_retrain_interval_ms: d
            .decay
            .and_then(|e| e.suggested_interval_ms(cfg.retrain_cost, cfg.accuracy_hour_cost)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn replaying_published_events_restores_cooldown_and_budget() {
        let event = |t: i64| crate::RetrainEvent {
            event_id: format!("e{t}"),
            model_id: "m".into(),
            model_version: "v1".into(),
            reasons: vec![],
            drift_event_ids: vec![],
            metrics: vec![],
            train_from: 0,
            train_to: t,
            dry_run: false,
            created_at: t,
            estimated_decay_per_day: None,
            suggested_retrain_interval_ms: None,
        };
        let day2 = 2 * DAY_MS;
        let events = [event(day2 + 5_000), event(DAY_MS + 1), event(day2 + 1_000)];
        let s = PolicyState::replay(&events);
        assert_eq!(s.last_retrain_at, Some(day2 + 5_000));
        assert_eq!((s.budget_day, s.spent_today, s.emitted), (Some(2), 2, 3));
        assert_eq!(PolicyState::replay(&[]), PolicyState::default());
    }

    use super::*;

    const H: i64 = 3_600_000;

    fn status(key: &str, state: DriftState, evals: u32) -> DetectorStatus {
        DetectorStatus {
            key: key.into(),
            state,
            evaluations_in_drift: evals,
            drift_event_id: (state == DriftState::Drift).then(|| format!("id-{key}")),
            onset: Some(100),
        }
    }

    fn decision<'a>(detectors: &'a [DetectorStatus], labeled: u64, now: i64) -> Decision<'a> {
        Decision {
            model_id: "m",
            model_version: "v",
            detectors,
            labeled,
            metrics: vec![("accuracy".into(), 0.7)],
            now,
            decay: None,
        }
    }

    #[test]
    fn feature_checks_trigger_only_when_listed_and_wildcards_match() {
        let s = [
            status("accuracy_drop", DriftState::Ok, 0),
            status("wasserstein_normed:age", DriftState::Drift, 2),
        ];
        let mut st = PolicyState::default();
        // Default policy: data drift is advisory.
        assert!(decide(&PolicyConfig::default(), &mut st, decision(&s, 500, H)).is_none());
        for listed in [
            "wasserstein_normed:age",
            "*:age",
            "wasserstein_normed:*",
            "*:*",
        ] {
            let cfg = PolicyConfig {
                detectors: vec![listed.to_owned()],
                ..PolicyConfig::default()
            };
            let mut st = PolicyState::default();
            let e = decide(&cfg, &mut st, decision(&s, 500, H));
            assert!(e.is_some(), "{listed}");
        }
        for other in ["*:income", "ks:*", "*", "wasserstein_normed"] {
            let cfg = PolicyConfig {
                detectors: vec![other.to_owned()],
                ..PolicyConfig::default()
            };
            let mut st = PolicyState::default();
            assert!(
                decide(&cfg, &mut st, decision(&s, 500, H)).is_none(),
                "{other}"
            );
        }
        assert!(!key_matches("*:*", "accuracy_drop"));
    }

    #[test]
    fn fires_once_per_cooldown_and_respects_budget() {
        let cfg = PolicyConfig {
            cooldown_ms: 2 * H,
            daily_budget: 2,
            ..PolicyConfig::default()
        };
        let mut st = PolicyState::default();
        let s = [status("accuracy_drop", DriftState::Drift, 1)];
        let e = decide(&cfg, &mut st, decision(&s, 500, 10 * H)).unwrap();
        assert_eq!((e.train_from, e.train_to), (100, 10 * H));
        assert_eq!(e.drift_event_ids, vec!["id-accuracy_drop".to_owned()]);
        assert!(!e.dry_run);
        assert!(decide(&cfg, &mut st, decision(&s, 500, 11 * H)).is_none());
        assert_eq!(st.suppressed_by_cooldown, 1);
        assert!(decide(&cfg, &mut st, decision(&s, 500, 12 * H)).is_some());
        // Budget of 2 on day 0 spent; cooldown over.
        assert!(decide(&cfg, &mut st, decision(&s, 500, 15 * H)).is_none());
        assert_eq!(st.suppressed_by_budget, 1);
        // Next day: budget renewed.
        let e = decide(&cfg, &mut st, decision(&s, 500, 24 * H)).unwrap();
        assert_ne!(e.event_id, "");
        assert_eq!(st.emitted, 3);
        // Persisted and restored, the state goes on identically.
        let mut restored: PolicyState =
            serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        assert_eq!(restored, st);
        assert!(decide(&cfg, &mut restored, decision(&s, 500, 25 * H)).is_none());
    }

    #[test]
    fn any_all_min_samples_and_min_evaluations() {
        let s = [
            status("accuracy_drop", DriftState::Drift, 2),
            status("adwin", DriftState::Warning, 0),
        ];
        let any = PolicyConfig {
            detectors: vec!["accuracy_drop".into(), "adwin".into()],
            ..PolicyConfig::default()
        };
        let all = PolicyConfig {
            mode: TriggerMode::All,
            ..any.clone()
        };
        assert!(decide(&any, &mut PolicyState::default(), decision(&s, 500, 0)).is_some());
        assert!(decide(&all, &mut PolicyState::default(), decision(&s, 500, 0)).is_none());
        let both = [
            status("accuracy_drop", DriftState::Drift, 2),
            status("adwin", DriftState::Drift, 1),
        ];
        let e = decide(&all, &mut PolicyState::default(), decision(&both, 500, 0)).unwrap();
        assert_eq!(e.reasons.len(), 2);
        assert_eq!(e.drift_event_ids.len(), 2);
        // Too few labeled outcomes.
        assert!(decide(&any, &mut PolicyState::default(), decision(&s, 199, 0)).is_none());
        // Not long enough in DRIFT.
        let patient = PolicyConfig {
            min_drift_evaluations: 3,
            ..any.clone()
        };
        assert!(decide(&patient, &mut PolicyState::default(), decision(&s, 500, 0)).is_none());
        // A detector not listed does not trigger.
        let only_adwin = [status("adwin", DriftState::Drift, 5)];
        assert!(decide(
            &PolicyConfig::default(),
            &mut PolicyState::default(),
            decision(&only_adwin, 500, 0)
        )
        .is_none());
    }

    #[test]
    fn dry_run_is_flagged_and_still_consumes_cooldown() {
        let cfg = PolicyConfig {
            dry_run: true,
            ..PolicyConfig::default()
        };
        let mut st = PolicyState::default();
        let s = [status("accuracy_drop", DriftState::Drift, 1)];
        assert!(decide(&cfg, &mut st, decision(&s, 500, 0)).unwrap().dry_run);
        assert!(decide(&cfg, &mut st, decision(&s, 500, H)).is_none());
        let off = PolicyConfig {
            enabled: false,
            ..PolicyConfig::default()
        };
        assert!(decide(&off, &mut PolicyState::default(), decision(&s, 500, 0)).is_none());
    }
}
