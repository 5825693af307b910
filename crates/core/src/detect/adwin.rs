//! ADWIN: adaptive windowing (Bifet & Gavaldà, SDM 2007), the ADWIN2 variant.
//!
//! ADWIN keeps the longest recent window in which the mean looks stable. It flags a change when
//! some split of the window into an older part `W0` (`n0` items) and a newer part `W1` (`n1`
//! items) has means further apart than
//!
//! ```text
//! δ' = ln(2·ln W / δ)          m = 1/(n0 − mwl + 1) + 1/(n1 − mwl + 1)
//! ε  = √(2·m·(σ²_W)·δ') + (2/3)·δ'·m
//! ```
//!
//! where `W` is the window length, `σ²_W` its variance and `mwl` the minimum sub-window length.
//! On a cut the oldest bucket is dropped and the check repeats until no split qualifies.
//!
//! # Memory: an exponential histogram
//!
//! The window is not stored item by item. Row `r` of the histogram holds up to
//! `max_buckets + 1` buckets of `2^r` items each (their sum and their sum of squared deviations),
//! oldest first. A new item enters row 0; when a row overflows, its two oldest buckets merge into
//! one bucket of the next row. Memory and the cost of a check are `O(max_buckets · log W)`.
//! Rows live in one flat array with a fixed stride so a check walks contiguous memory.
//!
//! # Cost
//!
//! Splits are only checked every `clock` items and once the window is longer than
//! `grace_period`; only splits at bucket boundaries are tried, from the oldest, and the last
//! bucket is never a split point (River stops before it; MOA's bound includes it).

use serde::{Deserialize, Serialize};

use super::{check, ChangeDetector, ConfigError, DetectorSignal};

/// ADWIN configuration. Defaults are River 0.26.1's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdwinConfig {
    /// Confidence of the cut test, in (0, 1). Default 0.002: a false alarm on a stable stream is
    /// bounded by δ per check; smaller means fewer false alarms but later detections.
    pub delta: f64,
    /// Splits are checked every `clock` observations. Default 32: a check costs
    /// `O(max_buckets · log W)`, so checking every 32nd item makes updates cheap at the price of
    /// up to 31 items of extra delay.
    pub clock: u32,
    /// Buckets of each size kept before two merge. Default 5: the paper's `M`; the window's
    /// resolution is about `1/M` of each bucket size, memory is `M · log W` buckets.
    pub max_buckets: u32,
    /// Neither sub-window may be shorter than this. Default 5: splits with a tiny side have a
    /// huge variance and mostly produce false alarms.
    pub min_window_length: u32,
    /// No check until the window holds more than this many items. Default 10: the variance of a
    /// handful of items is meaningless.
    pub grace_period: u32,
}

impl Default for AdwinConfig {
    fn default() -> Self {
        Self {
            delta: 0.002,
            clock: 32,
            max_buckets: 5,
            min_window_length: 5,
            grace_period: 10,
        }
    }
}

impl AdwinConfig {
    /// Rejects values the cut test cannot work with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const D: &str = "adwin";
        check(
            self.delta > 0.0 && self.delta < 1.0,
            D,
            "delta",
            self.delta,
            "must be in (0, 1)",
        )?;
        check(
            self.clock >= 1,
            D,
            "clock",
            self.clock,
            "must be at least 1",
        )?;
        check(
            self.max_buckets >= 1,
            D,
            "max_buckets",
            self.max_buckets,
            "must be at least 1",
        )?;
        check(
            self.min_window_length >= 1,
            D,
            "min_window_length",
            self.min_window_length,
            "must be at least 1",
        )
    }
}

/// The ADWIN detector. Feeds on any real values; never warns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Adwin {
    config: AdwinConfig,
    /// Buckets per row plus one: a row may hold one extra bucket just before it is compressed.
    stride: usize,
    min_len: f64,
    grace: f64,
    /// Sums of the buckets, row `r` at `[r * stride, r * stride + len[r])`, oldest first.
    totals: Vec<f64>,
    /// Sums of squared deviations from each bucket's own mean, laid out like `totals`.
    variances: Vec<f64>,
    /// Buckets in use per row; the last row is empty only when the whole window is.
    lens: Vec<usize>,
    /// Items in the window.
    width: f64,
    /// Sum of the window.
    total: f64,
    /// Sum of squared deviations from the window's mean.
    variance: f64,
    /// Updates left before the next check: checks happen on every `clock`-th update since
    /// the last reset (a countdown rather than a modulo, which would cost a division).
    until_check: u32,
    n_detections: u64,
    drift: bool,
}

impl Adwin {
    /// Builds a detector; fails on an invalid config.
    pub fn new(config: AdwinConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let stride = config.max_buckets as usize + 1;
        let mut adwin = Self {
            stride,
            min_len: f64::from(config.min_window_length),
            grace: f64::from(config.grace_period),
            config,
            // Room for 2^24 items' worth of rows before the first reallocation.
            totals: Vec::with_capacity(stride * 24),
            variances: Vec::with_capacity(stride * 24),
            lens: Vec::with_capacity(24),
            width: 0.0,
            total: 0.0,
            variance: 0.0,
            until_check: 0,
            n_detections: 0,
            drift: false,
        };
        adwin.clear();
        Ok(adwin)
    }

    /// The configuration.
    pub fn config(&self) -> &AdwinConfig {
        &self.config
    }

    /// Items in the current window.
    pub fn width(&self) -> u64 {
        // The width is an exact integer (a sum of powers of two) held as f64 for the cut test.
        self.width as u64
    }

    /// Sum of the items in the window.
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Sum of squared deviations from the window's mean (not divided by the width).
    pub fn variance(&self) -> f64 {
        self.variance
    }

    /// Mean of the window; 0 when empty.
    pub fn estimation(&self) -> f64 {
        if self.width > 0.0 {
            self.total / self.width
        } else {
            0.0
        }
    }

    /// Changes detected since the detector was built or last [reset](ChangeDetector::reset)
    /// (the automatic restart after a drift keeps the count).
    pub fn n_detections(&self) -> u64 {
        self.n_detections
    }

    fn clear(&mut self) {
        self.totals.clear();
        self.variances.clear();
        self.lens.clear();
        self.push_row();
        self.width = 0.0;
        self.total = 0.0;
        self.variance = 0.0;
        self.until_check = self.config.clock;
        self.drift = false;
    }

    fn push_row(&mut self) {
        self.totals.resize(self.totals.len() + self.stride, 0.0);
        self.variances
            .resize(self.variances.len() + self.stride, 0.0);
        self.lens.push(0);
    }

    /// Appends a bucket to row `row` (which has room: rows are compressed as soon as they fill).
    #[inline]
    fn push_bucket(&mut self, row: usize, total: f64, variance: f64) {
        let slot = row * self.stride + self.lens[row];
        self.totals[slot] = total;
        self.variances[slot] = variance;
        self.lens[row] += 1;
    }

    /// Drops the `k` oldest buckets of row `row`.
    #[inline]
    fn drop_oldest(&mut self, row: usize, k: usize) {
        let start = row * self.stride;
        let end = start + self.lens[row];
        self.totals.copy_within(start + k..end, start);
        self.variances.copy_within(start + k..end, start);
        self.lens[row] -= k;
    }

    fn insert(&mut self, x: f64) {
        self.push_bucket(0, x, 0.0);
        // Incremental variance (Welford): the new item's squared distance to the old mean,
        // scaled by (W - 1) / W.
        self.width += 1.0;
        if self.width > 1.0 {
            let d = x - self.total / (self.width - 1.0);
            self.variance += (self.width - 1.0) * d * d / self.width;
        }
        self.total += x;
        self.compress();
    }

    /// Merges the two oldest buckets of every full row into the next row, cascading.
    fn compress(&mut self) {
        let mut row = 0;
        while self.lens[row] == self.stride {
            let base = row * self.stride;
            let size = (1u64 << row) as f64;
            let (t0, t1) = (self.totals[base], self.totals[base + 1]);
            let (v0, v1) = (self.variances[base], self.variances[base + 1]);
            // Merging two equal-size groups adds size/2 · (mean difference)² to their variances.
            let (mu0, mu1) = (t0 / size, t1 / size);
            let merged_variance = v0 + v1 + size * 0.5 * (mu0 - mu1) * (mu0 - mu1);
            if row + 1 == self.lens.len() {
                self.push_row();
            }
            self.push_bucket(row + 1, t0 + t1, merged_variance);
            self.drop_oldest(row, 2);
            row += 1;
        }
    }

    /// Drops the oldest bucket, keeping width, total and variance consistent.
    fn drop_oldest_bucket(&mut self) {
        let last = self.lens.len() - 1;
        let base = last * self.stride;
        let size = (1u64 << last) as f64;
        let (u, v) = (self.totals[base], self.variances[base]);
        let mu = u / size;
        self.width -= size;
        self.total -= u;
        let mu_rest = self.total / self.width;
        self.variance -=
            v + size * self.width * (mu - mu_rest) * (mu - mu_rest) / (size + self.width);
        self.drop_oldest(last, 1);
        // Keep the last row non-empty (rows in between may be empty when max_buckets is 1).
        while self.lens.len() > 1 && self.lens.last() == Some(&0) {
            self.lens.pop();
            let keep = self.lens.len() * self.stride;
            self.totals.truncate(keep);
            self.variances.truncate(keep);
        }
    }

    /// Whether some split of the current window passes the cut test.
    fn find_cut(&self) -> bool {
        let delta_prime = (2.0 * self.width.ln() / self.config.delta).ln();
        let variance_in_window = self.variance / self.width;
        let (mut n0, mut n1) = (0.0, self.width);
        let (mut u0, mut u1) = (0.0, self.total);
        for row in (0..self.lens.len()).rev() {
            let size = (1u64 << row) as f64;
            let base = row * self.stride;
            let len = self.lens[row];
            for (k, &t) in self.totals[base..base + len].iter().enumerate() {
                n0 += size;
                n1 -= size;
                u0 += t;
                u1 -= t;
                if row == 0 && k + 1 == len {
                    // W1 would be empty.
                    return false;
                }
                if n1 >= self.min_len && n0 >= self.min_len {
                    let m = 1.0 / (n0 - self.min_len + 1.0) + 1.0 / (n1 - self.min_len + 1.0);
                    let epsilon = (2.0 * m * variance_in_window * delta_prime).sqrt()
                        + 2.0 / 3.0 * delta_prime * m;
                    if (u0 / n0 - u1 / n1).abs() > epsilon {
                        return true;
                    }
                }
            }
        }
        false
    }
}

impl ChangeDetector for Adwin {
    fn update(&mut self, x: f64) -> DetectorSignal {
        if !x.is_finite() {
            return DetectorSignal::QUIET;
        }
        if self.drift {
            self.clear();
        }
        self.insert(x);
        // `until_check` starts at `clock` >= 1 and is reloaded at 0: it cannot underflow.
        self.until_check -= 1;
        let due = self.until_check == 0;
        if due {
            self.until_check = self.config.clock;
        }
        if due && self.width > self.grace {
            // Shrink from the old end until the remaining window looks stable.
            while self.find_cut() {
                self.drift = true;
                self.drop_oldest_bucket();
            }
        }
        if self.drift {
            self.n_detections += 1;
        }
        DetectorSignal {
            drift: self.drift,
            warning: false,
        }
    }

    fn reset(&mut self) {
        self.clear();
        self.n_detections = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    fn adwin(config: AdwinConfig) -> Adwin {
        Adwin::new(config).unwrap()
    }

    /// Sum of squared deviations, two-pass.
    fn ssd(xs: &[f64]) -> f64 {
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        xs.iter().map(|x| (x - mean) * (x - mean)).sum()
    }

    #[test]
    fn statistics_survive_bucket_merges() {
        let mut a = adwin(AdwinConfig {
            clock: u32::MAX,
            ..AdwinConfig::default()
        });
        let xs: Vec<f64> = (0..200).map(|i| f64::from(i % 7)).collect();
        for &x in &xs {
            assert!(!a.update(x).drift);
        }
        assert_eq!(a.width(), 200);
        assert!((a.total() - xs.iter().sum::<f64>()).abs() < 1e-9);
        assert!((a.variance() - ssd(&xs)).abs() / ssd(&xs) < 1e-9);
        // 200 items in rows of at most 5 buckets each: far fewer buckets than items.
        let buckets: usize = a.lens.iter().sum();
        assert!(
            buckets <= 5 * a.lens.len() && a.lens.len() <= 7,
            "{:?}",
            a.lens
        );
        // Every row's buckets account for the whole width.
        let counted: u64 = a
            .lens
            .iter()
            .enumerate()
            .map(|(r, &n)| (n as u64) << r)
            .sum();
        assert_eq!(counted, 200);
    }

    #[test]
    fn dropping_the_oldest_bucket_keeps_statistics_exact() {
        let mut a = adwin(AdwinConfig {
            clock: u32::MAX,
            ..AdwinConfig::default()
        });
        let xs: Vec<f64> = (0..64).map(|i| f64::from((i * 37) % 11)).collect();
        for &x in &xs {
            a.update(x);
        }
        let last = a.lens.len() - 1;
        let dropped = 1usize << last;
        a.drop_oldest_bucket();
        let rest = &xs[dropped..];
        assert_eq!(a.width() as usize, rest.len());
        assert!((a.total() - rest.iter().sum::<f64>()).abs() < 1e-9);
        assert!((a.variance() - ssd(rest)).abs() < 1e-6);
    }

    #[test]
    fn constant_stream_never_drifts() {
        let mut a = adwin(AdwinConfig::default());
        for _ in 0..5000 {
            assert!(!a.update(1.0).drift);
        }
        assert_eq!(a.n_detections(), 0);
        assert_eq!(a.width(), 5000);
        assert_eq!(a.estimation(), 1.0);
    }

    #[test]
    fn large_shift_is_detected_and_window_shrinks() {
        let mut a = adwin(AdwinConfig {
            clock: 1,
            ..AdwinConfig::default()
        });
        for _ in 0..500 {
            a.update(0.0);
        }
        let mut at = None;
        for i in 0..500 {
            if a.update(100.0).drift {
                at = Some(i);
                break;
            }
        }
        let at = at.expect("shift not detected");
        assert!(at < 20, "detected late: {at}");
        // The old regime was cut away, so the window is short and its mean moved toward 100.
        assert!(a.width() < 500, "width {}", a.width());
        assert!(a.estimation() > 0.0);
        assert_eq!(a.n_detections(), 1);
        // The next update starts from a fresh window, as River does.
        a.update(50.0);
        assert_eq!(a.width(), 1);
        assert_eq!(a.estimation(), 50.0);
    }

    #[test]
    fn grace_period_and_clock_delay_checks() {
        let mut a = adwin(AdwinConfig {
            grace_period: 100,
            clock: 1,
            ..AdwinConfig::default()
        });
        for i in 0..100 {
            let x = if i < 50 { 0.0 } else { 1000.0 };
            assert!(!a.update(x).drift, "checked inside the grace period at {i}");
        }
        let mut b = adwin(AdwinConfig::default());
        for _ in 0..64 {
            b.update(0.0);
        }
        // With clock 32 the shift can only be flagged on a multiple of 32.
        let first = (65..=256).find(|_| b.update(1000.0).drift).unwrap();
        assert_eq!(first % 32, 0, "flagged at update {first}");
    }

    #[test]
    fn invalid_configs_are_rejected() {
        for (cfg, field) in [
            (
                AdwinConfig {
                    delta: 0.0,
                    ..AdwinConfig::default()
                },
                "delta",
            ),
            (
                AdwinConfig {
                    delta: f64::NAN,
                    ..AdwinConfig::default()
                },
                "delta",
            ),
            (
                AdwinConfig {
                    clock: 0,
                    ..AdwinConfig::default()
                },
                "clock",
            ),
            (
                AdwinConfig {
                    max_buckets: 0,
                    ..AdwinConfig::default()
                },
                "max_buckets",
            ),
            (
                AdwinConfig {
                    min_window_length: 0,
                    ..AdwinConfig::default()
                },
                "min_window_length",
            ),
        ] {
            assert_eq!(Adwin::new(cfg).unwrap_err().field, field);
        }
    }

    #[test]
    fn non_finite_input_is_ignored() {
        let mut a = adwin(AdwinConfig::default());
        a.update(1.0);
        assert_eq!(a.update(f64::NAN), DetectorSignal::QUIET);
        assert_eq!(a.update(f64::INFINITY), DetectorSignal::QUIET);
        assert_eq!(a.width(), 1);
        assert_eq!(a.total(), 1.0);
    }
}
