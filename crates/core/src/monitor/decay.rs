//! How fast a model version's accuracy decays, and how often it pays to retrain it.
//!
//! # The fit
//! Every matured bucket of a version (labels in, see [`window`](super::window)) adds its
//! classification outcomes to an hourly *point*: x = the hour's midpoint in days since the
//! version went live (its first matured bucket), y = the hour's accuracy, weight = its
//! outcomes. Closed points go into two weighted least-squares fits, kept as sums so they are
//! updated in O(1) and merge by addition ([`FitSums`] is a commutative monoid):
//!
//! - *linear*: a(x) = a₀ − r·x;
//! - *exponential* (log-linear): ln a(x) = ln a₀ − k·x, i.e. a(x) = a₀·e^(−k·x). The hour's
//!   accuracy is taken as (correct + ½)/(outcomes + 1) here, so an hour of misses has a
//!   logarithm.
//!
//! The shape is the one with the larger coefficient of determination R² (each in its own
//! space). Weighting a point by its outcomes makes the linear fit the least-squares fit of the
//! individual 0/1 outcomes, so a busy hour counts for more than a quiet one. An estimate needs
//! [`MIN_POINTS`] hours with outcomes.
//!
//! The published decay is the rate at go-live, in accuracy per day: r (linear) or a₀·k
//! (exponential). Negative or zero: the model is not decaying, and no interval is suggested.
//!
//! # The suggested interval
//! A model retrained every T hours loses, per cycle, L(T) accuracy-hours against its level at
//! go-live, and costs C (the policy's `retrain_cost`) per retrain; an accuracy-hour costs c_a
//! (`accuracy_hour_cost`). The interval minimizes the cost per hour (C + c_a·L(T)) / T:
//!
//! - linear, r_h = r / 24 per hour: L(T) = r_h·T²/2, so T* = √(2C / (c_a·r_h));
//! - exponential, k_h = k / 24: L(T) = a₀·(T − (1 − e^(−k_h·T))/k_h); the optimum solves
//!   c_a·a₀·((1 − e^(−k_h·T))/k_h − T·e^(−k_h·T)) = C (found by bisection; the left side grows
//!   from 0 to c_a·a₀/k_h, so when C is at least that, the loss saturates before a retrain
//!   pays and no interval is suggested). For small k_h·T this is the linear case with
//!   r_h = a₀·k_h.
//!
//! `docs/STATISTICS.md` states the same with an example.

use serde::{Deserialize, Serialize};

use crate::TimestampMs;

/// Width of one point of the fit.
pub const POINT_MS: i64 = 3_600_000;
/// Hours with outcomes an estimate needs.
pub const MIN_POINTS: u64 = 6;
const DAY_MS: f64 = 86_400_000.0;
/// The longest interval suggested: ten years.
const MAX_INTERVAL_HOURS: f64 = 10.0 * 365.0 * 24.0;

/// Weighted least-squares sums of one fit. Merging adds them: fits of disjoint point sets
/// merge into the fit of their union.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FitSums {
    pub points: u64,
    pub w: f64,
    pub wx: f64,
    pub wy: f64,
    pub wxx: f64,
    pub wxy: f64,
    pub wyy: f64,
}

/// A straight line fitted by [`FitSums::line`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub intercept: f64,
    pub slope: f64,
    /// Coefficient of determination (0 when y does not vary).
    pub r_squared: f64,
}

impl FitSums {
    /// Adds the point (x, y) with weight w.
    pub fn add(&mut self, x: f64, y: f64, w: f64) {
        self.points += 1;
        self.w += w;
        self.wx += w * x;
        self.wy += w * y;
        self.wxx += w * x * x;
        self.wxy += w * x * y;
        self.wyy += w * y * y;
    }

    /// The sums of both point sets.
    pub fn merged(&self, o: &FitSums) -> FitSums {
        FitSums {
            points: self.points + o.points,
            w: self.w + o.w,
            wx: self.wx + o.wx,
            wy: self.wy + o.wy,
            wxx: self.wxx + o.wxx,
            wxy: self.wxy + o.wxy,
            wyy: self.wyy + o.wyy,
        }
    }

    /// The weighted least-squares line; `None` without two distinct x.
    pub fn line(&self) -> Option<Line> {
        if self.w <= 0.0 {
            return None;
        }
        let sxx = self.wxx - self.wx * self.wx / self.w;
        let sxy = self.wxy - self.wx * self.wy / self.w;
        let syy = self.wyy - self.wy * self.wy / self.w;
        if sxx <= 1e-12 * self.wxx.max(1e-300) || !sxx.is_finite() {
            return None;
        }
        let slope = sxy / sxx;
        let intercept = (self.wy - slope * self.wx) / self.w;
        let r_squared = if syy > 0.0 {
            (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (slope.is_finite() && intercept.is_finite()).then_some(Line {
            intercept,
            slope,
            r_squared,
        })
    }
}

/// Which curve fits the decay better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayShape {
    Linear,
    Exponential,
}

/// The fitted decay of a version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecayEstimate {
    pub shape: DecayShape,
    /// Fitted accuracy at go-live (a₀).
    pub initial: f64,
    /// Accuracy lost per day at go-live: r, or a₀·k.
    pub per_day: f64,
    /// Exponential: k per day; linear: `per_day`.
    pub rate_per_day: f64,
    /// R² of the chosen fit.
    pub r_squared: f64,
    /// Hourly points fitted.
    pub points: u64,
}

impl DecayEstimate {
    /// The retrain interval minimizing retrain cost plus accuracy-loss cost per hour (see the
    /// module docs), in ms; `None` when the model does not decay, the costs are not positive,
    /// or the loss saturates before a retrain pays.
    pub fn suggested_interval_ms(&self, retrain_cost: f64, accuracy_hour_cost: f64) -> Option<i64> {
        if !(self.per_day > 0.0 && accuracy_hour_cost > 0.0 && retrain_cost >= 0.0) {
            return None;
        }
        let hours = match self.shape {
            DecayShape::Linear => {
                let r_h = self.per_day / 24.0;
                (2.0 * retrain_cost / (accuracy_hour_cost * r_h)).sqrt()
            }
            DecayShape::Exponential => {
                let (a0, k_h) = (self.initial, self.rate_per_day / 24.0);
                if !(a0 > 0.0 && k_h > 0.0) {
                    return None;
                }
                let target = retrain_cost / (accuracy_hour_cost * a0);
                if target >= 1.0 / k_h {
                    return None;
                }
                // g(T) = (1 − e^(−kT))/k − T·e^(−kT) grows from 0 towards 1/k.
                let g = |t: f64| (1.0 - (-k_h * t).exp()) / k_h - t * (-k_h * t).exp();
                let mut hi = 1.0;
                while g(hi) < target && hi < MAX_INTERVAL_HOURS {
                    hi *= 2.0;
                }
                let mut lo = 0.0;
                for _ in 0..100 {
                    let mid = 0.5 * (lo + hi);
                    if g(mid) < target {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                0.5 * (lo + hi)
            }
        };
        (hours.is_finite() && hours <= MAX_INTERVAL_HOURS).then_some((hours * 3_600_000.0) as i64)
    }
}

/// Accuracy against time since a version went live, fed with matured buckets. See the module
/// docs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecayFit {
    /// Start of the version's first matured bucket.
    live_since: Option<TimestampMs>,
    /// The hour being collected: (hour index since go-live, correct, outcomes).
    open: Option<(i64, u64, u64)>,
    linear: FitSums,
    log: FitSums,
}

impl DecayFit {
    /// A fit with no data.
    pub fn new() -> Self {
        Self::default()
    }

    /// When the version went live (its first matured bucket), once known.
    pub fn live_since(&self) -> Option<TimestampMs> {
        self.live_since
    }

    /// Adds a matured bucket starting at `start` with `correct` of `outcomes` classification
    /// outcomes. Buckets come in time order; an older one is counted in its own point.
    pub fn offer(&mut self, start: TimestampMs, correct: u64, outcomes: u64) {
        let live = *self.live_since.get_or_insert(start);
        let hour = start.saturating_sub(live).div_euclid(POINT_MS);
        match self.open {
            Some((h, c, n)) if h == hour => self.open = Some((h, c + correct, n + outcomes)),
            Some((h, _, _)) if h > hour => self.add_point(hour, correct, outcomes),
            open => {
                if let Some((h, c, n)) = open {
                    self.add_point(h, c, n);
                }
                self.open = Some((hour, correct, outcomes));
            }
        }
    }

    fn add_point(&mut self, hour: i64, correct: u64, outcomes: u64) {
        if outcomes == 0 {
            return;
        }
        let x = (hour as f64 + 0.5) * POINT_MS as f64 / DAY_MS;
        let n = outcomes as f64;
        let c = correct.min(outcomes) as f64;
        self.linear.add(x, c / n, n);
        self.log.add(x, ((c + 0.5) / (n + 1.0)).ln(), n);
    }

    /// The sums of the linear and the log-linear fit (closed hours only).
    pub fn sums(&self) -> (FitSums, FitSums) {
        (self.linear, self.log)
    }

    /// The decay estimated from the hours closed so far, once there are [`MIN_POINTS`].
    pub fn estimate(&self) -> Option<DecayEstimate> {
        estimate_from(&self.linear, &self.log)
    }
}

/// The estimate of a linear and a log-linear fit of the same points.
pub fn estimate_from(linear: &FitSums, log: &FitSums) -> Option<DecayEstimate> {
    if linear.points < MIN_POINTS {
        return None;
    }
    let lin = linear.line()?;
    let lin_estimate = DecayEstimate {
        shape: DecayShape::Linear,
        initial: lin.intercept,
        per_day: -lin.slope,
        rate_per_day: -lin.slope,
        r_squared: lin.r_squared,
        points: linear.points,
    };
    match log.line() {
        Some(l) if l.r_squared > lin.r_squared && l.slope < 0.0 => {
            let initial = l.intercept.exp();
            Some(DecayEstimate {
                shape: DecayShape::Exponential,
                initial,
                per_day: initial * -l.slope,
                rate_per_day: -l.slope,
                r_squared: l.r_squared,
                points: log.points,
            })
        }
        _ => Some(lin_estimate),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;
    const DAY: i64 = 86_400_000;

    /// A deterministic stream of one-minute buckets with `per_minute` outcomes each whose
    /// accuracy follows `acc(days)`, the correct count rounded with a carried remainder.
    fn fit_of(days: i64, per_minute: u64, acc: impl Fn(f64) -> f64) -> DecayFit {
        let mut fit = DecayFit::new();
        let mut carry = 0.0;
        for m in 0..days * 1440 {
            let t = (m * MIN) as f64 / DAY as f64;
            let exact = acc(t) * per_minute as f64 + carry;
            let correct = exact.floor();
            carry = exact - correct;
            fit.offer(1_700_000_000_000 + m * MIN, correct as u64, per_minute);
        }
        fit
    }

    #[test]
    fn linear_decay_is_recognized_and_its_rate_estimated() {
        let fit = fit_of(10, 50, |d| 0.93 - 0.02 * d);
        let e = fit.estimate().unwrap();
        assert_eq!(e.shape, DecayShape::Linear);
        assert!((e.per_day - 0.02).abs() < 0.02 * 0.05, "{e:?}");
        assert!((e.initial - 0.93).abs() < 0.01, "{e:?}");
    }

    #[test]
    fn exponential_decay_is_recognized_and_its_rate_estimated() {
        let k = 0.12;
        let fit = fit_of(10, 50, |d| 0.95 * (-k * d).exp());
        let e = fit.estimate().unwrap();
        assert_eq!(e.shape, DecayShape::Exponential);
        assert!((e.rate_per_day - k).abs() < k * 0.05, "{e:?}");
        assert!((e.per_day - 0.95 * k).abs() < 0.95 * k * 0.05, "{e:?}");
    }

    #[test]
    fn too_few_hours_give_no_estimate_and_a_stable_model_no_interval() {
        assert!(fit_of(0, 50, |_| 0.9).estimate().is_none());
        let mut short = DecayFit::new();
        for m in 0..(MIN_POINTS as i64) * 60 {
            short.offer(m * MIN, 45, 50);
        }
        // The last hour is still open: one point short.
        assert!(short.estimate().is_none());
        let stable = fit_of(3, 50, |_| 0.9).estimate().unwrap();
        assert!(stable.per_day.abs() < 1e-3, "{stable:?}");
        let improving = fit_of(3, 50, |d| 0.8 + 0.01 * d).estimate().unwrap();
        assert_eq!(improving.suggested_interval_ms(1.0, 1.0), None);
    }

    #[test]
    fn linear_interval_is_the_square_root_rule() {
        let e = DecayEstimate {
            shape: DecayShape::Linear,
            initial: 0.9,
            per_day: 0.024,
            rate_per_day: 0.024,
            r_squared: 1.0,
            points: 10,
        };
        // r_h = 0.001 per hour, C = 2, c_a = 1: T* = sqrt(4 / 0.001) = 63.2 h.
        let t = e.suggested_interval_ms(2.0, 1.0).unwrap() as f64 / 3_600_000.0;
        assert!((t - 4000f64.sqrt()).abs() < 1e-6, "{t}");
        assert_eq!(e.suggested_interval_ms(2.0, 0.0), None);
        assert_eq!(e.suggested_interval_ms(0.0, 1.0), Some(0));
    }

    #[test]
    fn exponential_interval_minimizes_the_cost_rate_and_saturates() {
        let e = DecayEstimate {
            shape: DecayShape::Exponential,
            initial: 0.9,
            per_day: 0.9 * 0.24,
            rate_per_day: 0.24,
            r_squared: 1.0,
            points: 10,
        };
        let (c, ca) = (0.5, 1.0);
        let t = e.suggested_interval_ms(c, ca).unwrap() as f64 / 3_600_000.0;
        let k = 0.01;
        let rate = |t: f64| (c + ca * 0.9 * (t - (1.0 - (-k * t).exp()) / k)) / t;
        assert!(rate(t) <= rate(t * 0.9) && rate(t) <= rate(t * 1.1), "{t}");
        // Slow decay: close to the linear rule with r_h = a0·k_h.
        let slow = DecayEstimate {
            per_day: 0.9 * 0.0024,
            rate_per_day: 0.0024,
            ..e
        };
        let lin = DecayEstimate {
            shape: DecayShape::Linear,
            ..slow
        };
        let (ts, tl) = (
            slow.suggested_interval_ms(0.01, 1.0).unwrap() as f64,
            lin.suggested_interval_ms(0.01, 1.0).unwrap() as f64,
        );
        assert!((ts / tl - 1.0).abs() < 0.05, "{ts} vs {tl}");
        // A retrain dearer than the whole saturated loss never pays.
        assert_eq!(e.suggested_interval_ms(0.9 / 0.01, 1.0), None);
    }

    proptest! {
        #[test]
        fn sums_merge_into_the_fit_of_the_union(
            points in prop::collection::vec((0.0f64..30.0, 0.0f64..1.0, 1.0f64..500.0), 2..60),
            cut in 0usize..60,
        ) {
            let cut = cut % (points.len() + 1);
            let (mut whole, mut a, mut b) = (FitSums::default(), FitSums::default(), FitSums::default());
            for (i, &(x, y, w)) in points.iter().enumerate() {
                whole.add(x, y, w);
                if i < cut { a.add(x, y, w) } else { b.add(x, y, w) }
            }
            let merged = a.merged(&b);
            prop_assert_eq!(merged.points, whole.points);
            for (m, w) in [(merged.w, whole.w), (merged.wxy, whole.wxy), (merged.wyy, whole.wyy)] {
                prop_assert!((m - w).abs() <= 1e-9 * w.abs().max(1.0));
            }
            prop_assert_eq!(a.merged(&b), b.merged(&a));
            prop_assert_eq!(a.merged(&FitSums::default()), a);
            if let (Some(l1), Some(l2)) = (merged.line(), whole.line()) {
                prop_assert!((l1.slope - l2.slope).abs() <= 1e-6 * l2.slope.abs().max(1.0));
            }
        }
    }
}
