//! HDDM_A: drift detection with Hoeffding's bound on moving averages (Frías-Blanco et al.,
//! IEEE TKDE 2014, "A-test").
//!
//! The detector keeps the running mean `Z` of all observations since the last reset and, for an
//! increase, a *cut point* `X`: a snapshot of that mean taken where `mean + ε(n)` was lowest
//! (`ε(n) = √(ln(1/δ_drift) / 2n)`, Hoeffding). Everything after the cut is the candidate new
//! concept. A change is declared when `Z − X ≥ ε'` with
//! `ε' = √(m/2 · ln(2/confidence))`, `m = (n_Z − n_X) / (n_X · n_Z)` — Hoeffding's bound for the
//! difference of the two averages. The confidence is `drift_confidence` for a drift and
//! `warning_confidence` for a warning. The two-sided test mirrors this for decreases with a
//! snapshot where `mean − ε(n)` was highest.
//!
//! Input: 1 = error, 0 = correct (any value in `[0, 1]` is a valid bounded observation).

use serde::{Deserialize, Serialize};

use super::stats::Mean;
use super::{binary_input, check, ChangeDetector, ConfigError, DetectorSignal};

/// HDDM_A configuration. Defaults are River 0.26.1's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HddmAConfig {
    /// Confidence level of the drift test, in (0, 1). Default 0.001, the paper's: the
    /// probability of a false drift per test is bounded by it.
    pub drift_confidence: f64,
    /// Confidence level of the warning test, in [drift_confidence, 1). Default 0.005, the
    /// paper's: looser than the drift test, so warnings come first.
    pub warning_confidence: f64,
    /// Also detect decreases of the mean. Default false: with errors as input only a rising
    /// error rate is bad news.
    pub two_sided_test: bool,
}

impl Default for HddmAConfig {
    fn default() -> Self {
        Self {
            drift_confidence: 0.001,
            warning_confidence: 0.005,
            two_sided_test: false,
        }
    }
}

impl HddmAConfig {
    /// Requires `0 < drift_confidence <= warning_confidence < 1`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const D: &str = "hddm_a";
        check(
            self.drift_confidence > 0.0 && self.drift_confidence < 1.0,
            D,
            "drift_confidence",
            self.drift_confidence,
            "must be in (0, 1)",
        )?;
        check(
            self.warning_confidence >= self.drift_confidence && self.warning_confidence < 1.0,
            D,
            "warning_confidence",
            self.warning_confidence,
            "must be in [drift_confidence, 1)",
        )
    }
}

/// The HDDM_A detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HddmA {
    config: HddmAConfig,
    /// `ln(1/drift_confidence)`, used by every cut-point bound.
    ln_inv_drift: f64,
    /// `ln(2/confidence)` of the drift and warning tests (logarithms hoisted out of updates).
    ln_two_drift: f64,
    ln_two_warning: f64,
    /// Mean of everything since the last reset.
    z: Mean,
    /// Snapshot of `z` at the cut point for increases.
    x_min: Mean,
    /// Snapshot of `z` at the cut point for decreases.
    x_max: Mean,
    drift: bool,
    warning: bool,
}

impl HddmA {
    /// Builds a detector; fails on an invalid config.
    pub fn new(config: HddmAConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            ln_inv_drift: (1.0 / config.drift_confidence).ln(),
            ln_two_drift: (2.0 / config.drift_confidence).ln(),
            ln_two_warning: (2.0 / config.warning_confidence).ln(),
            config,
            z: Mean::default(),
            x_min: Mean::default(),
            x_max: Mean::default(),
            drift: false,
            warning: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HddmAConfig {
        &self.config
    }

    /// Hoeffding bound of a mean of `n` observations in [0, 1].
    fn bound(&self, n: f64) -> f64 {
        (1.0 / (2.0 * n) * self.ln_inv_drift).sqrt()
    }

    /// Whether `later` exceeds `earlier` by Hoeffding's bound for a difference of averages,
    /// `earlier` being a prefix (snapshot) of `self.z`.
    fn exceeds(&self, earlier: &Mean, diff: f64, ln_two_over_confidence: f64) -> bool {
        if earlier.n == self.z.n {
            return false;
        }
        let m = (self.z.n - earlier.n) / earlier.n * (1.0 / self.z.n);
        let eps = (m / 2.0 * ln_two_over_confidence).sqrt();
        diff >= eps
    }

    fn mean_increased(&self, ln_two_over_confidence: f64) -> bool {
        self.exceeds(
            &self.x_min,
            self.z.mean - self.x_min.mean,
            ln_two_over_confidence,
        )
    }

    fn mean_decreased(&self, ln_two_over_confidence: f64) -> bool {
        self.exceeds(
            &self.x_max,
            self.x_max.mean - self.z.mean,
            ln_two_over_confidence,
        )
    }
}

impl ChangeDetector for HddmA {
    fn update(&mut self, x: f64) -> DetectorSignal {
        let Some(x) = binary_input(x) else {
            return DetectorSignal::QUIET;
        };
        if self.drift {
            self.reset();
        }
        self.z.update(x, 1.0);
        if self.x_min.n == 0.0 {
            self.x_min = self.z;
        }
        if self.x_max.n == 0.0 {
            self.x_max = self.z;
        }

        // Move the cut points where the bounded mean reaches a new low (high).
        let eps_z = self.bound(self.z.n);
        if self.x_min.mean + self.bound(self.x_min.n) >= self.z.mean + eps_z {
            self.x_min = self.z;
        }
        if self.x_max.mean - self.bound(self.x_max.n) <= self.z.mean - eps_z {
            self.x_max = self.z;
        }

        let (drift_c, warning_c) = (self.ln_two_drift, self.ln_two_warning);
        if self.mean_increased(drift_c) {
            self.drift = true;
            self.warning = false;
        } else {
            self.drift = false;
            self.warning = self.mean_increased(warning_c);
        }
        if self.config.two_sided_test {
            if self.mean_decreased(drift_c) {
                self.drift = true;
            } else if self.mean_decreased(warning_c) {
                self.warning = true;
            }
        }
        DetectorSignal {
            drift: self.drift,
            warning: self.warning,
        }
    }

    fn reset(&mut self) {
        self.z = Mean::default();
        self.x_min = Mean::default();
        self.x_max = Mean::default();
        self.drift = false;
        self.warning = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    fn hddm(two_sided: bool) -> HddmA {
        HddmA::new(HddmAConfig {
            two_sided_test: two_sided,
            ..HddmAConfig::default()
        })
        .unwrap()
    }

    fn feed(d: &mut HddmA, one_in: u32, count: u32) -> Vec<DetectorSignal> {
        (0..count)
            .map(|i| d.update(f64::from(u8::from(i % one_in == 0))))
            .collect()
    }

    #[test]
    fn stable_rate_never_drifts() {
        let mut d = hddm(true);
        assert!(feed(&mut d, 5, 5000).iter().all(|s| !s.drift));
    }

    #[test]
    fn rise_is_detected_after_a_warning() {
        let mut d = hddm(false);
        feed(&mut d, 10, 1000);
        let s = feed(&mut d, 2, 500);
        let warn = s.iter().position(|s| s.warning).expect("no warning");
        let drift = s.iter().position(|s| s.drift).expect("no drift");
        assert!(warn < drift);
    }

    #[test]
    fn fall_needs_the_two_sided_test() {
        let mut one = hddm(false);
        let mut two = hddm(true);
        feed(&mut one, 2, 1000);
        feed(&mut two, 2, 1000);
        assert!(feed(&mut one, 10, 1000).iter().all(|s| !s.drift));
        assert!(feed(&mut two, 10, 1000).iter().any(|s| s.drift));
    }

    #[test]
    fn confidences_are_validated() {
        let err = HddmA::new(HddmAConfig {
            drift_confidence: 0.0,
            ..HddmAConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "drift_confidence");
        let err = HddmA::new(HddmAConfig {
            warning_confidence: 0.0001,
            ..HddmAConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "warning_confidence");
    }
}
