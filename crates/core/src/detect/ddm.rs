//! DDM: the Drift Detection Method (Gama, Medas, Castillo & Rodrigues, SBIA 2004).
//!
//! DDM watches a learner's error rate. While the concept is stable, the error rate `p` of a
//! learner that keeps learning does not grow; its standard deviation is the binomial
//! `s = √(p(1 − p)/n)`. DDM remembers the point where `p + s` was lowest (`p_min`, `s_min`) and
//! signals
//!
//! - a warning while `p + s > p_min + warning_threshold · s_min`,
//! - a drift when `p + s > p_min + drift_threshold · s_min`,
//!
//! after more than `warm_start` observations. Input: 1 = error, 0 = correct.
//!
//! # Weighted updates
//!
//! [`Ddm::update_weighted`] feeds a *batch*: `x` is the batch's error rate and `n` its number of
//! predictions (e.g. one window of joined predictions). The error rate is updated exactly as if
//! the `n` observations had arrived one by one (the mean only depends on the sum), `s` uses the
//! total count, but the minimum and the thresholds are checked once, after the whole batch: a
//! drift is reported at the batch, not at the observation inside it where unit updates would
//! have reported it. With `n = 1` it is exactly [`ChangeDetector::update`].

use serde::{Deserialize, Serialize};

use super::stats::Mean;
use super::{
    binary_input, check, check_weight, ChangeDetector, ConfigError, DetectError, DetectorSignal,
};

/// DDM configuration. Defaults are River 0.26.1's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DdmConfig {
    /// Observations before any warning or drift. Default 30: below that, `p` and the binomial
    /// standard deviation are too noisy for the normal approximation the thresholds rely on.
    pub warm_start: u32,
    /// Warning when `p + s` exceeds the minimum by this many `s_min`. Default 2.0: about a 95 %
    /// one-sided confidence level.
    pub warning_threshold: f64,
    /// Drift when `p + s` exceeds the minimum by this many `s_min`. Default 3.0: about a 99 %
    /// confidence level.
    pub drift_threshold: f64,
}

impl Default for DdmConfig {
    fn default() -> Self {
        Self {
            warm_start: 30,
            warning_threshold: 2.0,
            drift_threshold: 3.0,
        }
    }
}

impl DdmConfig {
    /// Rejects thresholds that are not positive or that put drift before warning.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const D: &str = "ddm";
        check(
            self.warning_threshold.is_finite() && self.warning_threshold > 0.0,
            D,
            "warning_threshold",
            self.warning_threshold,
            "must be finite and > 0",
        )?;
        check(
            self.drift_threshold.is_finite() && self.drift_threshold >= self.warning_threshold,
            D,
            "drift_threshold",
            self.drift_threshold,
            "must be finite and >= warning_threshold",
        )
    }
}

/// The DDM detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ddm {
    config: DdmConfig,
    /// Error rate and count.
    p: Mean,
    /// `p` and `s` where `p + s` was lowest; `ps_min` is their sum.
    p_min: f64,
    s_min: f64,
    ps_min: f64,
    drift: bool,
    warning: bool,
}

impl Ddm {
    /// Builds a detector; fails on an invalid config.
    pub fn new(config: DdmConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            p: Mean::default(),
            p_min: 0.0,
            s_min: 0.0,
            ps_min: f64::INFINITY,
            drift: false,
            warning: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DdmConfig {
        &self.config
    }

    /// Error rate since the last reset.
    pub fn error_rate(&self) -> f64 {
        self.p.mean
    }

    /// Observations (sum of weights) since the last reset.
    pub fn n_seen(&self) -> f64 {
        self.p.n
    }

    /// Feeds a batch of `n` observations whose error rate is `x` (see the module docs).
    pub fn update_weighted(&mut self, x: f64, n: f64) -> Result<DetectorSignal, DetectError> {
        check_weight(n)?;
        Ok(match binary_input(x) {
            Some(x) => self.step(x, n),
            None => DetectorSignal::QUIET,
        })
    }

    fn step(&mut self, x: f64, w: f64) -> DetectorSignal {
        if self.drift {
            self.reset();
        }
        self.p.update(x, w);
        let p = self.p.mean;
        let n = self.p.n;
        let s = (p * (1.0 - p) / n).sqrt();

        if n > f64::from(self.config.warm_start) {
            // `<=`: on a tie the later point wins, so the reference moves forward in time.
            if p + s <= self.ps_min {
                self.p_min = p;
                self.s_min = s;
                self.ps_min = p + s;
            }
            self.warning = p + s > self.p_min + self.config.warning_threshold * self.s_min;
            if p + s > self.p_min + self.config.drift_threshold * self.s_min {
                self.drift = true;
                self.warning = false;
            }
        }
        DetectorSignal {
            drift: self.drift,
            warning: self.warning,
        }
    }
}

impl ChangeDetector for Ddm {
    fn update(&mut self, x: f64) -> DetectorSignal {
        match binary_input(x) {
            Some(x) => self.step(x, 1.0),
            None => DetectorSignal::QUIET,
        }
    }

    fn reset(&mut self) {
        self.p = Mean::default();
        self.p_min = 0.0;
        self.s_min = 0.0;
        self.ps_min = f64::INFINITY;
        self.drift = false;
        self.warning = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    fn ddm() -> Ddm {
        Ddm::new(DdmConfig::default()).unwrap()
    }

    #[test]
    fn all_correct_or_all_wrong_never_drifts() {
        for x in [0.0, 1.0] {
            let mut d = ddm();
            for _ in 0..1000 {
                assert_eq!(d.update(x), DetectorSignal::QUIET);
            }
        }
    }

    #[test]
    fn error_rate_jump_warns_then_drifts_then_restarts() {
        let mut d = ddm();
        // 10 % errors, evenly spread, then every prediction wrong.
        for i in 0..1000 {
            assert!(!d.update(f64::from(u8::from(i % 10 == 0))).drift);
        }
        let signals: Vec<_> = (0..200).map(|_| d.update(1.0)).collect();
        let first_warning = signals.iter().position(|s| s.warning).unwrap();
        let first_drift = signals.iter().position(|s| s.drift).unwrap();
        assert!(first_warning < first_drift, "{first_warning} {first_drift}");
        assert!(!signals[first_drift].warning, "drift clears the warning");
        assert_eq!(signals.iter().filter(|s| s.drift).count(), 1);
        // The drift restarted the detector.
        assert_eq!(d.n_seen(), (199 - first_drift) as f64);
    }

    #[test]
    fn warm_start_suppresses_early_signals() {
        let mut d = Ddm::new(DdmConfig {
            warm_start: 100,
            ..DdmConfig::default()
        })
        .unwrap();
        for i in 0..100 {
            let x = if i < 50 { 0.0 } else { 1.0 };
            assert_eq!(d.update(x), DetectorSignal::QUIET, "at {i}");
        }
    }

    #[test]
    fn weighted_update_of_one_is_a_unit_update() {
        let mut a = ddm();
        let mut b = ddm();
        for i in 0..2000u32 {
            let x = f64::from(u8::from(i % 9 == 0 || (i > 1200 && i % 2 == 0)));
            assert_eq!(a.update(x), b.update_weighted(x, 1.0).unwrap(), "at {i}");
        }
    }

    #[test]
    fn weighted_batches_track_the_error_rate_and_detect() {
        let mut d = ddm();
        for _ in 0..20 {
            assert!(!d.update_weighted(0.1, 50.0).unwrap().drift);
        }
        assert_eq!(d.n_seen(), 1000.0);
        assert!((d.error_rate() - 0.1).abs() < 1e-12);
        let fired = (0..20).any(|_| d.update_weighted(0.6, 50.0).unwrap().drift);
        assert!(fired);
        assert!(d.update_weighted(0.5, 0.0).is_err());
        assert!(d.update_weighted(0.5, f64::NAN).is_err());
    }

    #[test]
    fn invalid_thresholds_are_rejected() {
        let err = Ddm::new(DdmConfig {
            warning_threshold: 3.0,
            drift_threshold: 2.0,
            ..DdmConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "drift_threshold");
        let err = Ddm::new(DdmConfig {
            warning_threshold: -1.0,
            ..DdmConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "warning_threshold");
    }
}
