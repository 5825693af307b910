//! HDDM_W: drift detection with McDiarmid's bound on exponentially weighted moving averages
//! (Frías-Blanco et al., IEEE TKDE 2014, "W-test").
//!
//! Like HDDM_A, but every average is an EWMA with weight `lambda` on the newest observation, so
//! old data fades and the detector reacts to recent changes. For an EWMA over bounded data the
//! role of `1/n` in Hoeffding's bound is played by the *independent bound condition*
//! `ibc = Σ wᵢ²`, updated as `ibc ← λ² + (1 − λ)² · ibc`; McDiarmid's inequality gives
//! `ε = √(ibc · ln(1/confidence) / 2)`.
//!
//! For increases the detector keeps a cut point where the overall EWMA plus its bound was lowest.
//! At the cut it snapshots the overall statistic (`s1`) and starts a fresh EWMA (`s2`) of what
//! follows; a change is declared when `s2 − s1 > ε(ibc₁ + ibc₂)`. The two-sided test mirrors this
//! for decreases. Input: 1 = error, 0 = correct.

use serde::{Deserialize, Serialize};

use super::stats::EwMean;
use super::{binary_input, check, ChangeDetector, ConfigError, DetectorSignal};

/// HDDM_W configuration. Defaults are River 0.26.1's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HddmWConfig {
    /// Confidence level of the drift test, in (0, 1). Default 0.001, the paper's.
    pub drift_confidence: f64,
    /// Confidence level of the warning test, in [drift_confidence, 1). Default 0.005, the
    /// paper's: looser than the drift test, so warnings come first.
    pub warning_confidence: f64,
    /// Weight of the newest observation in every EWMA, in (0, 1]. Default 0.05, the paper's:
    /// an effective memory of about 1/λ = 20 observations at the front of the window. River
    /// calls it `lambda_val`, which is accepted as an alias.
    #[serde(alias = "lambda_val")]
    pub lambda: f64,
    /// Also detect decreases of the mean. Default false: with errors as input only a rising
    /// error rate is bad news.
    pub two_sided_test: bool,
}

impl Default for HddmWConfig {
    fn default() -> Self {
        Self {
            drift_confidence: 0.001,
            warning_confidence: 0.005,
            lambda: 0.05,
            two_sided_test: false,
        }
    }
}

impl HddmWConfig {
    /// Requires `0 < drift_confidence <= warning_confidence < 1` and `0 < lambda <= 1`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const D: &str = "hddm_w";
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
        )?;
        check(
            self.lambda > 0.0 && self.lambda <= 1.0,
            D,
            "lambda",
            self.lambda,
            "must be in (0, 1]",
        )
    }
}

/// An EWMA with its independent bound condition.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Sample {
    ewma: EwMean,
    ibc: f64,
    seen: bool,
}

impl Sample {
    fn new(lambda: f64) -> Self {
        Self {
            ewma: EwMean::new(lambda),
            ibc: 1.0,
            seen: false,
        }
    }

    #[inline]
    fn update(&mut self, x: f64, lambda_sq: f64, rest_sq: f64) {
        self.ewma.update(x);
        self.seen = true;
        self.ibc = lambda_sq + rest_sq * self.ibc;
    }
}

/// The HDDM_W detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HddmW {
    config: HddmWConfig,
    lambda_sq: f64,
    /// `(1 − λ)²`.
    rest_sq: f64,
    /// `ln(1/confidence)` of the drift and warning tests (logarithms hoisted out of updates).
    ln_inv_drift: f64,
    ln_inv_warning: f64,
    total: Sample,
    s1_incr: Sample,
    s2_incr: Sample,
    s1_decr: Sample,
    s2_decr: Sample,
    incr_cut: f64,
    decr_cut: f64,
    drift: bool,
    warning: bool,
}

impl HddmW {
    /// Builds a detector; fails on an invalid config.
    pub fn new(config: HddmWConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let fresh = Sample::new(config.lambda);
        let rest = 1.0 - config.lambda;
        Ok(Self {
            lambda_sq: config.lambda * config.lambda,
            rest_sq: rest * rest,
            ln_inv_drift: (1.0 / config.drift_confidence).ln(),
            ln_inv_warning: (1.0 / config.warning_confidence).ln(),
            config,
            total: fresh,
            s1_incr: fresh,
            s2_incr: fresh,
            s1_decr: fresh,
            s2_decr: fresh,
            incr_cut: f64::INFINITY,
            decr_cut: f64::NEG_INFINITY,
            drift: false,
            warning: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HddmWConfig {
        &self.config
    }

    fn bound(ibc: f64, ln_inv_confidence: f64) -> f64 {
        (ibc * ln_inv_confidence / 2.0).sqrt()
    }

    /// Whether `later`'s EWMA exceeds `earlier`'s by McDiarmid's bound.
    fn rose(earlier: &Sample, later: &Sample, ln_inv_confidence: f64) -> bool {
        earlier.seen
            && later.seen
            && later.ewma.get() - earlier.ewma.get()
                > Self::bound(earlier.ibc + later.ibc, ln_inv_confidence)
    }
}

impl ChangeDetector for HddmW {
    fn update(&mut self, x: f64) -> DetectorSignal {
        let Some(x) = binary_input(x) else {
            return DetectorSignal::QUIET;
        };
        if self.drift {
            self.reset();
        }
        let (lsq, rsq) = (self.lambda_sq, self.rest_sq);
        let (drift_c, warning_c) = (self.ln_inv_drift, self.ln_inv_warning);
        self.total.update(x, lsq, rsq);
        let eps = Self::bound(self.total.ibc, drift_c);

        // Increase: new cut where the bounded EWMA reaches a low, else extend the new sample.
        if self.total.ewma.get() + eps < self.incr_cut {
            self.incr_cut = self.total.ewma.get() + eps;
            self.s1_incr = self.total;
            self.s2_incr = Sample::new(self.config.lambda);
        } else {
            self.s2_incr.update(x, lsq, rsq);
        }
        if Self::rose(&self.s1_incr, &self.s2_incr, drift_c) {
            self.drift = true;
            self.warning = false;
        } else {
            self.drift = false;
            self.warning = Self::rose(&self.s1_incr, &self.s2_incr, warning_c);
        }

        // Decrease: kept up to date even when one-sided, as in River.
        if self.total.ewma.get() - eps > self.decr_cut {
            self.decr_cut = self.total.ewma.get() - eps;
            self.s1_decr = self.total;
            self.s2_decr = Sample::new(self.config.lambda);
        } else {
            self.s2_decr.update(x, lsq, rsq);
        }
        if self.config.two_sided_test {
            if Self::rose(&self.s2_decr, &self.s1_decr, drift_c) {
                self.drift = true;
            } else if Self::rose(&self.s2_decr, &self.s1_decr, warning_c) {
                self.warning = true;
            }
        }
        DetectorSignal {
            drift: self.drift,
            warning: self.warning,
        }
    }

    fn reset(&mut self) {
        let fresh = Sample::new(self.config.lambda);
        self.total = fresh;
        self.s1_incr = fresh;
        self.s2_incr = fresh;
        self.s1_decr = fresh;
        self.s2_decr = fresh;
        self.incr_cut = f64::INFINITY;
        self.decr_cut = f64::NEG_INFINITY;
        self.drift = false;
        self.warning = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    fn hddm(two_sided: bool) -> HddmW {
        HddmW::new(HddmWConfig {
            two_sided_test: two_sided,
            ..HddmWConfig::default()
        })
        .unwrap()
    }

    fn feed(d: &mut HddmW, one_in: u32, count: u32) -> Vec<DetectorSignal> {
        (0..count)
            .map(|i| d.update(f64::from(u8::from(i % one_in == 0))))
            .collect()
    }

    #[test]
    fn ibc_converges_to_the_ewma_sum_of_squared_weights() {
        let mut s = Sample::new(0.05);
        for _ in 0..10_000 {
            s.update(0.0, 0.05 * 0.05, 0.95 * 0.95);
        }
        // Σ λ²(1−λ)^2k = λ² / (1 − (1−λ)²) = λ / (2 − λ).
        assert!((s.ibc - 0.05 / 1.95).abs() < 1e-12, "{}", s.ibc);
    }

    #[test]
    fn stable_rate_never_drifts() {
        let mut d = hddm(true);
        assert!(feed(&mut d, 4, 5000).iter().all(|s| !s.drift));
    }

    #[test]
    fn rise_is_detected_and_fall_only_when_two_sided() {
        let mut d = hddm(false);
        feed(&mut d, 10, 1000);
        assert!(feed(&mut d, 2, 300).iter().any(|s| s.drift));

        let mut one = hddm(false);
        let mut two = hddm(true);
        feed(&mut one, 2, 1000);
        feed(&mut two, 2, 1000);
        assert!(feed(&mut one, 10, 500).iter().all(|s| !s.drift));
        assert!(feed(&mut two, 10, 500).iter().any(|s| s.drift));
    }

    #[test]
    fn lambda_alias_parses_and_is_validated() {
        let c: HddmWConfig = serde_json::from_str(r#"{"lambda_val":0.1}"#).unwrap();
        assert_eq!(c.lambda, 0.1);
        let err = HddmW::new(HddmWConfig {
            lambda: 1.5,
            ..HddmWConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.field, "lambda");
    }
}
