//! Running statistics shared by the detectors.
//!
//! The update formulas are the textbook incremental ones (West 1979 for the weighted mean, Finch
//! 2009 for the exponentially weighted mean), written so every operation happens in the same
//! order as in River: a different order rounds differently and can move a detection by one
//! observation.

use serde::{Deserialize, Serialize};
/// Weighted running mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Mean {
    /// Sum of weights (the count when every weight is 1).
    pub n: f64,
    pub mean: f64,
}

impl Mean {
    #[inline]
    pub fn update(&mut self, x: f64, w: f64) {
        self.n += w;
        self.mean += (w / self.n) * (x - self.mean);
    }
}

/// Running mean and sample variance (Welford, divisor `n - 1`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Var {
    pub mean: Mean,
    /// Sum of squared deviations from the mean.
    m2: f64,
}

impl Var {
    #[inline]
    pub fn update(&mut self, x: f64) {
        let before = self.mean.mean;
        self.mean.update(x, 1.0);
        self.m2 += (x - before) * (x - self.mean.mean);
    }

    /// Sample variance; 0 until two values were seen.
    #[inline]
    pub fn sample_variance(&self) -> f64 {
        if self.mean.n > 1.0 {
            self.m2 / (self.mean.n - 1.0)
        } else {
            0.0
        }
    }
}

/// Exponentially weighted mean; the first value seeds it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct EwMean {
    alpha: f64,
    one_minus_alpha: f64,
    mean: f64,
    seeded: bool,
}

impl EwMean {
    pub fn new(alpha: f64) -> Self {
        Self {
            alpha,
            one_minus_alpha: 1.0 - alpha,
            mean: 0.0,
            seeded: false,
        }
    }

    #[inline]
    pub fn update(&mut self, x: f64) {
        self.mean = if self.seeded {
            self.alpha * x + self.one_minus_alpha * self.mean
        } else {
            x
        };
        self.seeded = true;
    }

    #[inline]
    pub fn get(&self) -> f64 {
        self.mean
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn weighted_mean_equals_repeated_unit_updates() {
        let mut a = Mean::default();
        let mut b = Mean::default();
        a.update(0.25, 4.0);
        a.update(1.0, 4.0);
        for _ in 0..4 {
            b.update(0.25, 1.0);
        }
        for _ in 0..4 {
            b.update(1.0, 1.0);
        }
        assert_eq!(a.n, 8.0);
        assert!((a.mean - 0.625).abs() < 1e-15);
        assert!((a.mean - b.mean).abs() < 1e-15);
    }

    #[test]
    fn sample_variance_matches_two_pass() {
        let xs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        let mut v = Var::default();
        assert_eq!(v.sample_variance(), 0.0);
        for x in xs {
            v.update(x);
        }
        let mean = xs.iter().sum::<f64>() / 8.0;
        let two_pass = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 7.0;
        assert!((v.sample_variance() - two_pass).abs() < 1e-12);
    }

    #[test]
    fn ewmean_is_seeded_by_first_value() {
        let mut e = EwMean::new(0.5);
        for x in [1.0, 3.0, 5.0, 4.0, 6.0, 8.0, 7.0, 9.0, 11.0] {
            e.update(x);
        }
        // 1, 2, 3.5, 3.75, 4.875, 6.4375, 6.71875, 7.859375, 9.4296875
        assert_eq!(e.get(), 9.4296875);
        let mut z = EwMean::new(0.05);
        z.update(0.0);
        z.update(1.0);
        assert_eq!(z.get(), 0.05);
    }
}
