//! Page-Hinkley test (Page, Biometrika 1954), with a forgetting factor.
//!
//! A CUSUM on the deviation of each observation from the running mean. Two cumulative sums are
//! kept, one biased down by the tolerated drift `delta` (it grows when the mean rises) and one
//! biased up (it falls when the mean drops), each faded by `alpha` per observation:
//!
//! ```text
//! m⁺ ← α·m⁺ + (x − x̄) − δ        test_up   = m⁺ − min m⁺
//! m⁻ ← α·m⁻ + (x − x̄) + δ        test_down = max m⁻ − m⁻
//! ```
//!
//! A change is declared when the test of the watched direction ([`PageHinkleyMode`]) exceeds
//! `threshold`, after `min_instances` observations. As in River, the running maximum of `m⁻`
//! starts at −1, not −∞. Page-Hinkley never warns.
//!
//! # Weighted updates
//!
//! [`PageHinkley::update_weighted`]`(x, w)` stands for `w` observations of value `x` (e.g. a
//! window's error rate weighted by its count). The mean is updated with weight `w` exactly; the
//! sums fade by `α^w` and grow by `w · (x − x̄ ∓ δ)` with `x̄` the mean after the batch, which is
//! what `w` unit updates give when the batch barely moves the mean; extremes and the test are
//! evaluated once per batch. `min_instances` counts weight. With `w = 1` it is exactly
//! [`ChangeDetector::update`].

use serde::{Deserialize, Serialize};

use super::stats::Mean;
use super::{check, check_weight, ChangeDetector, ConfigError, DetectError, DetectorSignal};

/// Which direction of change Page-Hinkley reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PageHinkleyMode {
    /// Increases of the mean only.
    Up,
    /// Decreases of the mean only.
    Down,
    /// Both directions.
    #[default]
    Both,
}

/// Page-Hinkley configuration. Defaults are River 0.26.1's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PageHinkleyConfig {
    /// Observations (sum of weights) before any detection. Default 30: the running mean is too
    /// unsettled before that for deviations from it to mean anything.
    pub min_instances: u32,
    /// Magnitude of change tolerated per observation, ≥ 0. Default 0.005: a small slack so
    /// that noise around a stable mean does not accumulate.
    pub delta: f64,
    /// Detection threshold (the paper's λ), > 0. Default 50: larger means fewer false alarms and
    /// later detections.
    pub threshold: f64,
    /// Forgetting factor applied to the cumulative sums, in (0, 1]. Default 0.9999: very slow
    /// fading, so old deviations do not keep the test high forever.
    pub alpha: f64,
    /// Direction(s) of change to report. Default both.
    pub mode: PageHinkleyMode,
}

impl Default for PageHinkleyConfig {
    fn default() -> Self {
        Self {
            min_instances: 30,
            delta: 0.005,
            threshold: 50.0,
            alpha: 1.0 - 0.0001,
            mode: PageHinkleyMode::Both,
        }
    }
}

impl PageHinkleyConfig {
    /// Requires `delta >= 0`, `threshold > 0` and `0 < alpha <= 1`, all finite.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const D: &str = "page_hinkley";
        check(
            self.delta.is_finite() && self.delta >= 0.0,
            D,
            "delta",
            self.delta,
            "must be finite and >= 0",
        )?;
        check(
            self.threshold.is_finite() && self.threshold > 0.0,
            D,
            "threshold",
            self.threshold,
            "must be finite and > 0",
        )?;
        check(
            self.alpha > 0.0 && self.alpha <= 1.0,
            D,
            "alpha",
            self.alpha,
            "must be in (0, 1]",
        )
    }
}

/// The Page-Hinkley detector. Feeds on any real values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageHinkley {
    config: PageHinkleyConfig,
    mean: Mean,
    sum_increase: f64,
    sum_decrease: f64,
    min_increase: f64,
    max_decrease: f64,
    drift: bool,
}

impl PageHinkley {
    /// Builds a detector; fails on an invalid config.
    pub fn new(config: PageHinkleyConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut d = Self {
            config,
            mean: Mean::default(),
            sum_increase: 0.0,
            sum_decrease: 0.0,
            min_increase: 0.0,
            max_decrease: 0.0,
            drift: false,
        };
        d.reset();
        Ok(d)
    }

    /// The configuration.
    pub fn config(&self) -> &PageHinkleyConfig {
        &self.config
    }

    /// Running mean since the last reset.
    pub fn mean(&self) -> f64 {
        self.mean.mean
    }

    /// Current test statistics `(up, down)`; compare with the threshold.
    pub fn statistics(&self) -> (f64, f64) {
        (
            self.sum_increase - self.min_increase,
            self.max_decrease - self.sum_decrease,
        )
    }

    /// Feeds `w` observations of value `x` at once (see the module docs).
    pub fn update_weighted(&mut self, x: f64, w: f64) -> Result<DetectorSignal, DetectError> {
        check_weight(w)?;
        if w == 1.0 {
            return Ok(self.update(x));
        }
        if !x.is_finite() {
            return Ok(DetectorSignal::QUIET);
        }
        if self.drift {
            self.reset();
        }
        self.mean.update(x, w);
        let dev = x - self.mean.mean;
        let fade = self.config.alpha.powf(w);
        self.sum_increase = fade * self.sum_increase + w * (dev - self.config.delta);
        self.sum_decrease = fade * self.sum_decrease + w * (dev + self.config.delta);
        Ok(self.test())
    }

    /// Updates the extremes and runs the test of the configured direction.
    fn test(&mut self) -> DetectorSignal {
        self.min_increase = self.min_increase.min(self.sum_increase);
        self.max_decrease = self.max_decrease.max(self.sum_decrease);
        if self.mean.n >= f64::from(self.config.min_instances) {
            let (up, down) = self.statistics();
            let threshold = self.config.threshold;
            self.drift = match self.config.mode {
                PageHinkleyMode::Up => up > threshold,
                PageHinkleyMode::Down => down > threshold,
                PageHinkleyMode::Both => up > threshold || down > threshold,
            };
        }
        DetectorSignal {
            drift: self.drift,
            warning: false,
        }
    }
}

impl ChangeDetector for PageHinkley {
    fn update(&mut self, x: f64) -> DetectorSignal {
        if !x.is_finite() {
            return DetectorSignal::QUIET;
        }
        if self.drift {
            self.reset();
        }
        self.mean.update(x, 1.0);
        let dev = x - self.mean.mean;
        let alpha = self.config.alpha;
        self.sum_increase = alpha * self.sum_increase + dev - self.config.delta;
        self.sum_decrease = alpha * self.sum_decrease + dev + self.config.delta;
        self.test()
    }

    fn reset(&mut self) {
        self.mean = Mean::default();
        self.sum_increase = 0.0;
        self.sum_decrease = 0.0;
        self.min_increase = f64::INFINITY;
        self.max_decrease = -1.0;
        self.drift = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    fn ph(mode: PageHinkleyMode) -> PageHinkley {
        PageHinkley::new(PageHinkleyConfig {
            mode,
            ..PageHinkleyConfig::default()
        })
        .unwrap()
    }

    fn first_drift(d: &mut PageHinkley, xs: impl IntoIterator<Item = f64>) -> Option<usize> {
        xs.into_iter().position(|x| d.update(x).drift)
    }

    #[test]
    fn modes_see_only_their_direction() {
        let up = || (0..2000).map(|i| if i < 1000 { 0.0 } else { 1.0 });
        let down = || (0..2000).map(|i| if i < 1000 { 1.0 } else { 0.0 });
        assert!(first_drift(&mut ph(PageHinkleyMode::Up), up()).is_some());
        assert!(first_drift(&mut ph(PageHinkleyMode::Up), down()).is_none());
        assert!(first_drift(&mut ph(PageHinkleyMode::Down), down()).is_some());
        assert!(first_drift(&mut ph(PageHinkleyMode::Down), up()).is_none());
        let both = first_drift(&mut ph(PageHinkleyMode::Both), up()).unwrap();
        assert_eq!(Some(both), first_drift(&mut ph(PageHinkleyMode::Up), up()));
        assert!(both >= 1000);
    }

    #[test]
    fn constant_stream_never_drifts() {
        let mut d = ph(PageHinkleyMode::Both);
        assert!(first_drift(&mut d, (0..10_000).map(|_| 3.5)).is_none());
        assert_eq!(d.mean(), 3.5);
    }

    #[test]
    fn min_instances_gate() {
        let mut d = PageHinkley::new(PageHinkleyConfig {
            min_instances: 500,
            threshold: 1.0,
            ..PageHinkleyConfig::default()
        })
        .unwrap();
        let at = first_drift(&mut d, (0..1000).map(|i| if i < 10 { 0.0 } else { 5.0 })).unwrap();
        assert_eq!(at, 499);
    }

    #[test]
    fn weighted_one_is_unit_and_weighted_batches_approximate_units() {
        let xs: Vec<f64> = (0..3000)
            .map(|i| f64::from(u8::from(i % 5 == 0 || (i >= 1500 && i % 3 == 0))))
            .collect();
        let mut a = ph(PageHinkleyMode::Both);
        let mut b = ph(PageHinkleyMode::Both);
        for &x in &xs {
            assert_eq!(a.update(x), b.update_weighted(x, 1.0).unwrap());
        }

        // Batches of 10 given as (error rate, 10) against the same stream item by item: the
        // batch path must detect the same change, within a few batches.
        let mut unit = ph(PageHinkleyMode::Up);
        let unit_at = first_drift(&mut unit, xs.iter().copied()).unwrap();
        let mut batched = ph(PageHinkleyMode::Up);
        let batch_at = xs
            .chunks(10)
            .position(|c| {
                let rate = c.iter().sum::<f64>() / 10.0;
                batched.update_weighted(rate, 10.0).unwrap().drift
            })
            .unwrap();
        assert!(
            (batch_at * 10).abs_diff(unit_at) <= 50,
            "unit {unit_at}, batch {batch_at}"
        );
        assert!(batched.update_weighted(1.0, -2.0).is_err());
    }

    #[test]
    fn invalid_configs_are_rejected() {
        for (cfg, field) in [
            (
                PageHinkleyConfig {
                    delta: -0.1,
                    ..PageHinkleyConfig::default()
                },
                "delta",
            ),
            (
                PageHinkleyConfig {
                    threshold: 0.0,
                    ..PageHinkleyConfig::default()
                },
                "threshold",
            ),
            (
                PageHinkleyConfig {
                    alpha: 1.5,
                    ..PageHinkleyConfig::default()
                },
                "alpha",
            ),
        ] {
            assert_eq!(PageHinkley::new(cfg).unwrap_err().field, field);
        }
        let err = serde_json::from_str::<PageHinkleyConfig>(r#"{"mode":"sideways"}"#);
        assert!(err.is_err());
    }
}
