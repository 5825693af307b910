//! The drift state machine of one (model, version, detector, feature), and idempotent event ids.
//!
//! ```text
//!            k × warning-or-drift            k × drift
//!   OK ─────────────────────────▶ WARNING ───────────▶ DRIFT
//!   │ ▲                              │                 │  ▲
//!   │ └──────── m × clean ───────────┘                 │  │ k × drift
//!   │            k × drift                   m × clean │  │
//!   └────────────────────────────────────────▶ DRIFT   ▼  │
//!   OK ◀────────── m × clean ────────────────────── RECOVERED
//! ```
//!
//! Hysteresis: a state is entered only after `k` consecutive verdicts calling for it (default
//! 2) and DRIFT / RECOVERED are left only after `m` consecutive clean verdicts (default 3), so
//! a verdict flickering around a threshold does not produce a stream of events. Verdicts that
//! abstain (`None`) neither advance nor break a streak. A warning verdict in DRIFT is not clean:
//! the model stays in DRIFT.
//!
//! An event is produced only on a transition; its id is the hex of the 128-bit xxh3 of
//! (model, version, detector, feature, window end, new state), each length-prefixed so no two
//! tuples share an encoding. The same transition replayed on another worker or after a restart
//! has the same id, so downstream consumers can de-duplicate.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::{DriftEvent, DriftState, TimestampMs};

use super::detectors::{Judgement, Level};

/// Hysteresis settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hysteresis {
    /// Consecutive drifting (or warning) verdicts to enter DRIFT (or WARNING). Default 2: one
    /// unlucky window is not enough.
    pub enter: u32,
    /// Consecutive clean verdicts to leave WARNING, DRIFT or RECOVERED. Default 3: leaving is
    /// made harder than entering so a model hovering at the threshold does not flap.
    pub exit: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis { enter: 2, exit: 3 }
    }
}

/// Stable id of a transition (see the module docs).
pub fn event_id(
    model_id: &str,
    model_version: &str,
    detector: &str,
    feature: Option<&str>,
    window_end: TimestampMs,
    state: DriftState,
) -> String {
    let mut buf = Vec::with_capacity(64 + model_id.len() + model_version.len() + detector.len());
    for part in [
        model_id.as_bytes(),
        model_version.as_bytes(),
        detector.as_bytes(),
    ] {
        buf.extend_from_slice(&(part.len() as u64).to_le_bytes());
        buf.extend_from_slice(part);
    }
    match feature {
        Some(f) => {
            buf.push(1);
            buf.extend_from_slice(&(f.len() as u64).to_le_bytes());
            buf.extend_from_slice(f.as_bytes());
        }
        None => buf.push(0),
    }
    buf.extend_from_slice(&window_end.to_le_bytes());
    buf.extend_from_slice(state.as_str().as_bytes());
    format!("{:032x}", xxh3_128(&buf))
}

/// State of one machine. Plain data, serializable, so it can be persisted and restored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftMachine {
    pub state: DriftState,
    /// Consecutive drifting verdicts.
    pub drift_streak: u32,
    /// Consecutive warning-or-drifting verdicts.
    pub warn_streak: u32,
    /// Consecutive clean verdicts.
    pub clean_streak: u32,
    /// Verdicts judged while in DRIFT (including the one that entered it).
    pub evaluations_in_drift: u32,
    /// Start of the window of the first drifting verdict since the machine was last OK, or a
    /// detector's own onset estimate when it gave one.
    pub onset: Option<TimestampMs>,
    /// Id of the event that entered the current DRIFT.
    pub drift_event_id: Option<String>,
    /// Labeled outcomes of the latest verdict.
    pub last_window_samples: u64,
}

impl Default for DriftMachine {
    fn default() -> Self {
        DriftMachine {
            state: DriftState::Ok,
            drift_streak: 0,
            warn_streak: 0,
            clean_streak: 0,
            evaluations_in_drift: 0,
            onset: None,
            drift_event_id: None,
            last_window_samples: 0,
        }
    }
}

impl DriftMachine {
    /// Applies one verdict; returns the event when the state changed.
    pub fn step(
        &mut self,
        model_id: &str,
        model_version: &str,
        j: &Judgement,
        h: Hysteresis,
        now: TimestampMs,
    ) -> Option<DriftEvent> {
        let enter = h.enter.max(1);
        let exit = h.exit.max(1);
        self.last_window_samples = j.window_samples;
        match j.level {
            Level::Drift => {
                self.drift_streak += 1;
                self.warn_streak += 1;
                self.clean_streak = 0;
                if self.onset.is_none() || j.onset.is_some() && self.state != DriftState::Drift {
                    self.onset = Some(j.onset.unwrap_or(j.window_start));
                }
            }
            Level::Warning => {
                self.drift_streak = 0;
                self.warn_streak += 1;
                self.clean_streak = 0;
            }
            Level::Clean => {
                self.drift_streak = 0;
                self.warn_streak = 0;
                self.clean_streak += 1;
            }
        }
        if self.state == DriftState::Drift {
            self.evaluations_in_drift += 1;
        }
        let next = match (self.state, j.level) {
            (DriftState::Ok | DriftState::Warning | DriftState::Recovered, Level::Drift)
                if self.drift_streak >= enter =>
            {
                DriftState::Drift
            }
            (DriftState::Ok, Level::Drift | Level::Warning) if self.warn_streak >= enter => {
                DriftState::Warning
            }
            (DriftState::Warning, Level::Clean) if self.clean_streak >= exit => DriftState::Ok,
            (DriftState::Drift, Level::Clean) if self.clean_streak >= exit => DriftState::Recovered,
            (DriftState::Recovered, Level::Clean) if self.clean_streak >= exit => DriftState::Ok,
            (s, _) => s,
        };
        if next == self.state {
            return None;
        }
        let previous = self.state;
        self.state = next;
        // Each new state needs its own full streak to be left.
        self.clean_streak = 0;
        let id = event_id(
            model_id,
            model_version,
            &j.detector,
            j.feature.as_deref(),
            j.window_end,
            next,
        );
        match next {
            DriftState::Drift => {
                self.evaluations_in_drift = 1;
                self.drift_event_id = Some(id.clone());
            }
            DriftState::Ok => {
                self.onset = None;
                self.drift_event_id = None;
                self.evaluations_in_drift = 0;
            }
            DriftState::Recovered => {
                self.evaluations_in_drift = 0;
                self.drift_event_id = None;
            }
            DriftState::Warning => {}
        }
        Some(DriftEvent {
            event_id: id,
            model_id: model_id.to_owned(),
            model_version: model_version.to_owned(),
            detector: j.detector.clone(),
            feature: j.feature.clone(),
            previous_state: previous,
            state: next,
            statistic: j.statistic.clone(),
            value: j.value,
            threshold: j.threshold,
            baseline_start: j.baseline_start,
            baseline_end: j.baseline_end,
            window_start: j.window_start,
            window_end: j.window_end,
            baseline_samples: j.baseline_samples,
            window_samples: j.window_samples,
            severity: j.severity,
            detected_at: now,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn j(level: Level, end: i64) -> Judgement {
        Judgement {
            detector: "accuracy_drop".into(),
            feature: None,
            level,
            statistic: "accuracy".into(),
            value: 0.7,
            threshold: 0.87,
            baseline_start: 0,
            baseline_end: 10,
            baseline_samples: 1000,
            window_start: end - 100,
            window_end: end,
            window_samples: 500,
            severity: 0.5,
            onset: None,
        }
    }

    fn run(m: &mut DriftMachine, levels: &[Level]) -> Vec<(DriftState, DriftState)> {
        let mut out = Vec::new();
        for (i, &l) in levels.iter().enumerate() {
            let t = 1_000 * (i as i64 + 1);
            if let Some(e) = m.step("m", "v", &j(l, t), Hysteresis::default(), t) {
                assert_eq!(e.detected_at, t);
                out.push((e.previous_state, e.state));
            }
        }
        out
    }

    use DriftState::*;
    use Level::{Clean as C, Drift as D, Warning as W};

    #[test]
    fn full_cycle_with_hysteresis() {
        let mut m = DriftMachine::default();
        let t = run(&mut m, &[D, C, D, D, D, C, C, D, C, C, C, C, C, C]);
        assert_eq!(t, vec![(Ok, Drift), (Drift, Recovered), (Recovered, Ok)]);
        assert_eq!(m.state, Ok);
        assert!(m.onset.is_none());
    }

    #[test]
    fn single_spikes_do_not_enter() {
        let mut m = DriftMachine::default();
        assert!(run(&mut m, &[D, C, W, C, D, C, W, C]).is_empty());
        // A drift right after a warning is two in a row: WARNING.
        assert_eq!(run(&mut m, &[D, W]), vec![(Ok, Warning)]);
    }

    #[test]
    fn warning_then_drift_then_relapse() {
        let mut m = DriftMachine::default();
        let t = run(&mut m, &[W, W, D, D, C, C, C, D, D]);
        assert_eq!(
            t,
            vec![
                (Ok, Warning),
                (Warning, Drift),
                (Drift, Recovered),
                (Recovered, Drift)
            ]
        );
        // Onset: window start of the first drifting verdict (third verdict, end 3000).
        assert_eq!(m.onset, Some(2_900));
        assert!(m.drift_event_id.is_some());
    }

    #[test]
    fn warning_in_drift_is_not_clean_and_counts_evaluations() {
        let mut m = DriftMachine::default();
        run(&mut m, &[D, D, W, C, C, W, C, C]);
        assert_eq!(m.state, Drift);
        assert_eq!(m.evaluations_in_drift, 7);
    }

    #[test]
    fn ids_are_stable_and_distinguish_inputs() {
        let a = event_id("m", "v", "adwin", None, 60_000, Drift);
        assert_eq!(a, event_id("m", "v", "adwin", None, 60_000, Drift));
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        let others = [
            event_id("m", "v", "adwin", None, 60_000, Warning),
            event_id("m", "v", "adwin", Some(""), 60_000, Drift),
            event_id("m", "v", "adwin", None, 120_000, Drift),
            event_id("m", "v2", "adwin", None, 60_000, Drift),
            event_id("mv", "", "adwin", None, 60_000, Drift),
            event_id("m", "v", "ddm", None, 60_000, Drift),
        ];
        for o in others {
            assert_ne!(a, o);
        }
        // Two machines fed the same verdicts produce the same events.
        let mut x = DriftMachine::default();
        let mut y = DriftMachine::default();
        for t in [1, 2] {
            let ex = x.step("m", "v", &j(D, t), Hysteresis::default(), 5);
            let ey = y.step("m", "v", &j(D, t), Hysteresis::default(), 5);
            assert_eq!(ex, ey);
        }
        assert_eq!(x.drift_event_id, y.drift_event_id);
        let restored: DriftMachine =
            serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
        assert_eq!(restored, x);
    }
}

#[cfg(test)]
mod documented_ids {
    use super::*;

    /// The examples of `schemas/README.md` carry real ids: 32 hex digits of an xxh3-128 hash.
    #[test]
    fn the_documented_drift_event_id_is_the_one_computed() {
        let id = event_id(
            "fraud-detector",
            "2026.11.3",
            "psi",
            Some("age"),
            1_795_000_900_000,
            DriftState::Drift,
        );
        let mut key = Vec::new();
        for part in ["fraud-detector", "2026.11.3", "retrain"] {
            key.extend_from_slice(&(part.len() as u64).to_le_bytes());
            key.extend_from_slice(part.as_bytes());
        }
        key.extend_from_slice(&1_795_000_900_000i64.to_le_bytes());
        key.extend_from_slice(id.as_bytes());
        let retrain = format!("{:032x}", xxh3_128(&key));
        let doc = include_str!("../../../../schemas/README.md");
        assert!(doc.contains(&format!("\"event_id\": \"{id}\"")), "{id}");
        assert!(
            doc.contains(&format!("\"event_id\": \"{retrain}\"")),
            "{retrain}"
        );
    }
}
