//! EDDM: the Early Drift Detection Method (Baena-García et al., 2006).
//!
//! Instead of the error rate, EDDM watches the *distance* (in observations) between consecutive
//! errors. While a learner improves, errors grow further apart; a gradual drift brings them
//! closer long before the error rate itself moves much, which is why EDDM reacts earlier than
//! DDM to slow changes. With `p'` and `s'` the mean and sample standard deviation of the
//! distances, it tracks the maximum of `p' + 2s'` and, at each error, computes
//! `level = (p' + 2s') / max`:
//!
//! - drift when `level < beta`,
//! - warning when `beta <= level < alpha`, cleared when `level >= alpha`.
//!
//! The level is only computed at an error, after more than `warm_start` observations, when
//! `p' + 2s'` did not set a new maximum, and once more than `warm_start` errors were seen.
//! Between errors both flags keep their last value (a drift flag is cleared by the restart on the
//! next observation, as in River). Input: 1 = error; anything else counts as correct.

use serde::{Deserialize, Serialize};

use super::stats::Var;
use super::{binary_input, check, ChangeDetector, ConfigError, DetectorSignal};

/// EDDM configuration. Defaults are River 0.26.1's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EddmConfig {
    /// Observations before any signal, and errors before a level is judged. Default 30: the
    /// paper waits for 30 errors so the distance statistics are meaningful.
    pub warm_start: u32,
    /// Warning when the level falls below this. Default 0.95, the paper's value.
    pub alpha: f64,
    /// Drift when the level falls below this; at most `alpha`. Default 0.9, the paper's value.
    pub beta: f64,
}

impl Default for EddmConfig {
    fn default() -> Self {
        Self {
            warm_start: 30,
            alpha: 0.95,
            beta: 0.9,
        }
    }
}

impl EddmConfig {
    /// Requires `0 < beta <= alpha <= 1`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const D: &str = "eddm";
        check(
            self.alpha > 0.0 && self.alpha <= 1.0,
            D,
            "alpha",
            self.alpha,
            "must be in (0, 1]",
        )?;
        check(
            self.beta > 0.0 && self.beta <= self.alpha,
            D,
            "beta",
            self.beta,
            "must be in (0, alpha]",
        )
    }
}

/// The EDDM detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Eddm {
    config: EddmConfig,
    /// Distances between consecutive errors.
    distances: Var,
    /// Observations since the last reset.
    n: u64,
    /// Index (1-based) of the last error; 0 before the first.
    last_error: u64,
    n_errors: u64,
    /// Largest `p' + 2s'` so far; starts below any possible value.
    p2s_max: f64,
    drift: bool,
    warning: bool,
}

impl Eddm {
    /// Builds a detector; fails on an invalid config.
    pub fn new(config: EddmConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            distances: Var::default(),
            n: 0,
            last_error: 0,
            n_errors: 0,
            p2s_max: -1.0,
            drift: false,
            warning: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EddmConfig {
        &self.config
    }

    /// Errors seen since the last reset.
    pub fn n_errors(&self) -> u64 {
        self.n_errors
    }
}

impl ChangeDetector for Eddm {
    fn update(&mut self, x: f64) -> DetectorSignal {
        let Some(x) = binary_input(x) else {
            return DetectorSignal::QUIET;
        };
        if self.drift {
            self.reset();
        }
        self.n += 1;
        if x == 1.0 {
            self.n_errors += 1;
            self.distances.update((self.n - self.last_error) as f64);
            let warm = u64::from(self.config.warm_start);
            if self.n > warm {
                let p = self.distances.mean.mean;
                // `powf(0.5)`, not `sqrt`: River takes `** 0.5`, and the two may differ in the
                // last bit, which is enough to move a detection.
                let s = self.distances.sample_variance().powf(0.5);
                let p2s = p + 2.0 * s;
                if p2s > self.p2s_max {
                    self.p2s_max = p2s;
                } else if self.n_errors > warm {
                    let level = p2s / self.p2s_max;
                    if level < self.config.beta {
                        self.drift = true;
                    } else {
                        self.warning = level < self.config.alpha;
                    }
                }
            }
            self.last_error = self.n;
        }
        DetectorSignal {
            drift: self.drift,
            warning: self.warning,
        }
    }

    fn reset(&mut self) {
        self.distances = Var::default();
        self.n = 0;
        self.last_error = 0;
        self.n_errors = 0;
        self.p2s_max = -1.0;
        self.drift = false;
        self.warning = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    fn eddm() -> Eddm {
        Eddm::new(EddmConfig::default()).unwrap()
    }

    /// Errors every `gap` observations.
    fn periodic(d: &mut Eddm, gap: u32, count: u32) -> Vec<DetectorSignal> {
        (0..count)
            .map(|i| d.update(f64::from(u8::from(i % gap == gap - 1))))
            .collect()
    }

    #[test]
    fn regular_errors_never_drift() {
        let mut d = eddm();
        let s = periodic(&mut d, 10, 5000);
        assert!(s.iter().all(|s| !s.drift && !s.warning));
        assert_eq!(d.n_errors(), 500);
    }

    #[test]
    fn errors_moving_closer_drift() {
        let mut d = eddm();
        periodic(&mut d, 20, 2000);
        let s = periodic(&mut d, 2, 400);
        let first = s.iter().position(|s| s.drift).expect("no drift");
        // Only errors can trigger a signal.
        assert_eq!(first % 2, 1);
        // The drift restarted the detector: errors are counted afresh.
        assert!(d.n_errors() < 200, "{}", d.n_errors());
    }

    #[test]
    fn beta_above_alpha_is_rejected() {
        let err = Eddm::new(EddmConfig {
            alpha: 0.8,
            beta: 0.9,
            ..EddmConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "beta");
    }
}
