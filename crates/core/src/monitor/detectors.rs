//! Performance-decay detectors and the [`Judgement`] every detector hands to the state machine.
//!
//! # Windowed drop vs the baseline (`accuracy_drop`)
//! Classifiers: a one-sided two-proportion z-test of "window accuracy < baseline accuracy"
//! (pooled proportion), and an absolute floor on the drop. Regressors: RMSE against the
//! baseline's with a relative floor; the significance comes from a one-sided Welch z-test on the
//! mean absolute error, the only error whose variance the partials' sums give
//! (`Var|e| = E[e²] − (E|e|)²`). DRIFT needs both significance (`p ≤ p_drift`) and the floor;
//! WARNING needs `p ≤ p_warning` and half the floor. The floor keeps a very busy model from
//! alarming on a drop that is significant but too small to matter; the test keeps a quiet model
//! from alarming on noise. A window is judged only with enough labeled outcomes and label
//! coverage; otherwise the detector abstains (the state machine does not move).
//!
//! # Stream detectors (`adwin`, `page_hinkley`, `ddm`)
//! They watch the stream of *matured* bucket error rates (1 − accuracy), each bucket fed once
//! when it matures, so labels that arrive within the maturity delay are not missed. DDM and
//! Page-Hinkley take the bucket's labeled count as weight (`update_weighted`). ADWIN has no
//! weighted entry point and its bound assumes values in `[0, 1]`, so a bucket fed as one
//! observation (its rate) would need dozens of buckets before any cut is possible; instead a
//! bucket of `n` outcomes with `e` errors is fed as `min(n, max_updates_per_bucket)` 0/1
//! observations with the errors spread evenly (the bucket's error rate, up to rounding when
//! capped). Only increases of the error rate count: an ADWIN cut after which the mean error
//! went down, a model improving, is not drift.
//!
//! A detector fires once and restarts, but the state machine wants a verdict per evaluation, so
//! a firing is *held* for `hold_ms` of event time (matured bucket time): the verdict is DRIFT
//! while the last firing is more recent than that. An evaluation with no newly matured bucket
//! abstains: there is nothing new to judge, and repeating the last verdict would let the
//! evaluation rate, not the data, satisfy the hysteresis.
//!
//! # Extension point
//! Any other detector (data drift over feature sketches, say) produces a [`Judgement`] with its
//! own detector name and feature and submits it through
//! [`Monitor::submit`](super::Monitor::submit); it then goes through the same state machine,
//! event ids and retrain policy.

use serde::{Deserialize, Serialize};

use crate::detect::{
    Adwin, AdwinConfig, ChangeDetector, Ddm, DdmConfig, Eddm, EddmConfig, PageHinkley,
    PageHinkleyConfig, PageHinkleyMode,
};
use crate::TimestampMs;

use super::baseline::Baseline;
use super::metrics::{Aggregate, Metrics};
use super::window::{MaturedBucket, WindowView};

/// Detector names as they appear in events and configuration.
pub const ACCURACY_DROP: &str = "accuracy_drop";
pub const ADWIN: &str = "adwin";
pub const PAGE_HINKLEY: &str = "page_hinkley";
pub const DDM: &str = "ddm";
/// Name of the EDDM stream detector.
pub const EDDM: &str = "eddm";

/// A stream detector's name: one of the constants above. Stored as text and read back as the
/// constant, so a snapshot naming an unknown detector is refused rather than invented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamName(&'static str);

impl Serialize for StreamName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        [ADWIN, PAGE_HINKLEY, DDM, EDDM]
            .into_iter()
            .find(|known| *known == name)
            .map(StreamName)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown stream detector `{name}`")))
    }
}

/// An accuracy drop of this many points (or a doubling of RMSE) is severity 1.
pub const FULL_SEVERITY_DROP: f64 = 0.20;

/// One detector's verdict at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Clean,
    Warning,
    Drift,
}

/// A verdict with what an event reports about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Judgement {
    pub detector: String,
    /// `None` for model-level detectors.
    pub feature: Option<String>,
    pub level: Level,
    pub statistic: String,
    pub value: f64,
    pub threshold: f64,
    pub baseline_start: TimestampMs,
    pub baseline_end: TimestampMs,
    pub baseline_samples: u64,
    pub window_start: TimestampMs,
    pub window_end: TimestampMs,
    pub window_samples: u64,
    /// 0 (negligible) to 1 (severe).
    pub severity: f64,
    /// Estimated start of the change when the detector knows better than "the start of the
    /// first drifting window" (ADWIN's cut point).
    pub onset: Option<TimestampMs>,
}

/// Severity from a drop in accuracy points (or a relative RMSE increase scaled to the same
/// range): linear, 0 at no drop, 1 at [`FULL_SEVERITY_DROP`] and beyond.
pub fn severity(drop: f64) -> f64 {
    if drop.is_finite() {
        (drop / FULL_SEVERITY_DROP).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// `P(Z ≥ z)` for a standard normal `Z`.
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function; a Chebyshev fit with fractional error below 1.2e-7 everywhere
/// (Numerical Recipes' `erfcc`), plenty for p-values compared with thresholds like 0.01.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// One-sided two-proportion z-test of `p_current < p_baseline` with the pooled proportion.
/// Returns `(z, p_value)`; `None` when a sample is empty or the pooled variance is zero.
pub fn two_proportion_z(
    baseline_successes: u64,
    baseline_n: u64,
    current_successes: u64,
    current_n: u64,
) -> Option<(f64, f64)> {
    if baseline_n == 0 || current_n == 0 {
        return None;
    }
    let (n0, n1) = (baseline_n as f64, current_n as f64);
    let p0 = baseline_successes as f64 / n0;
    let p1 = current_successes as f64 / n1;
    let pooled = (baseline_successes as f64 + current_successes as f64) / (n0 + n1);
    let se = (pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return None;
    }
    let z = (p0 - p1) / se;
    Some((z, normal_sf(z)))
}

/// One-sided Welch z-test of "mean absolute error grew", from regression sums.
fn abs_error_z(base: &Aggregate, cur: &Aggregate) -> Option<(f64, f64)> {
    let moments = |a: &Aggregate| {
        let n = a.regression.count as f64;
        let m = a.regression.abs_error_sum / n;
        let v = (a.regression.squared_error_sum / n - m * m).max(0.0);
        (n, m, v)
    };
    if base.regression.count < 2 || cur.regression.count < 2 {
        return None;
    }
    let (n0, m0, v0) = moments(base);
    let (n1, m1, v1) = moments(cur);
    let se = (v0 / n0 + v1 / n1).sqrt();
    if se.is_nan() || se <= 0.0 {
        return None;
    }
    let z = (m1 - m0) / se;
    Some((z, normal_sf(z)))
}

/// Settings of the windowed drop test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccuracyDropConfig {
    pub enabled: bool,
    /// Window judged (and whose labeled count and metrics the retrain policy uses). Default `1h`: at tens of labels a minute it holds thousands of outcomes,
    /// so a 5-point drop is significant, while reacting within the hour.
    pub window: String,
    /// DRIFT needs a p-value at most this. Default 0.01: evaluations repeat, so the per-test
    /// false-alarm rate must be small (and the hysteresis asks for it twice in a row).
    pub p_drift: f64,
    /// WARNING needs a p-value at most this. Default 0.05.
    pub p_warning: f64,
    /// DRIFT needs accuracy to drop by at least this (absolute). Default 0.05: five points is
    /// a drop people act on; less is usually seasonality. WARNING needs half.
    pub min_drop: f64,
    /// Regressors: DRIFT needs RMSE to grow by at least this fraction. Default 0.2.
    pub min_relative_increase: f64,
    /// A window is judged only with at least this many labeled outcomes. Default 200: the
    /// normal approximation is good and a 5-point drop from 90 % can reach p ≤ 0.01.
    pub min_labeled: u64,
    /// … and at least this label coverage (matched / resolved predictions). Default 0.5: with
    /// fewer labels the labeled part may not represent the traffic.
    pub min_coverage: f64,
    /// One-sided confidence of the baseline's bound the floors are measured from. Default 0.95:
    /// 1.6 standard errors of the baseline (≈ 1.6 points for 1 000 outcomes at 90 %, 0.5 for
    /// 10 000).
    pub baseline_confidence: f64,
    /// Once in WARNING or DRIFT, a window whose drop is at least this share of the warning
    /// floor (`min_drop / 2`) keeps the WARNING level. Default 0.5.
    pub hold_ratio: f64,
}

impl Default for AccuracyDropConfig {
    fn default() -> Self {
        AccuracyDropConfig {
            enabled: true,
            window: "1h".to_owned(),
            p_drift: 0.01,
            p_warning: 0.05,
            min_drop: 0.05,
            min_relative_increase: 0.2,
            min_labeled: 200,
            min_coverage: 0.5,
            baseline_confidence: 0.95,
            hold_ratio: 0.5,
        }
    }
}

/// The z with P(Z ≥ z) = `p` (0 < p < 1), by bisection on [`normal_sf`].
pub fn normal_isf(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    let (mut lo, mut hi) = (-40.0, 40.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if normal_sf(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Judges one window against the baseline; `None` when it abstains (no ready baseline, too
/// few labels, low coverage, or a model kind the baseline does not share). `held`: the
/// detector's machine is in WARNING or DRIFT (see the module docs).
pub fn judge_accuracy_drop(
    cfg: &AccuracyDropConfig,
    baseline: &Baseline,
    window: &WindowView,
    held: bool,
) -> Option<Judgement> {
    if !baseline.is_ready() {
        return None;
    }
    let cur = &window.aggregate;
    let base = baseline.aggregate();
    let labeled = cur.labeled();
    if labeled < cfg.min_labeled {
        return None;
    }
    let coverage = Metrics::compute(cur, window.length_ms).label_coverage?;
    if coverage < cfg.min_coverage {
        return None;
    }
    let z_b = normal_isf(1.0 - cfg.baseline_confidence).max(0.0);
    let (statistic, value, threshold, drop_for_severity, significant_p, floor_ratio) =
        if cur.is_regressor() {
            if !base.is_regressor() {
                return None;
            }
            let rmse =
                |a: &Aggregate| (a.regression.squared_error_sum / a.regression.count as f64).sqrt();
            let (r0, r1) = (rmse(base), rmse(cur));
            let (_, p) = abs_error_z(base, cur)?;
            // The baseline's error level at its upper bound: RMSE scaled by the bound on the
            // mean absolute error, the one whose standard error the sums give.
            let n0 = base.regression.count as f64;
            let m0 = base.regression.abs_error_sum / n0;
            let v0 = (base.regression.squared_error_sum / n0 - m0 * m0).max(0.0);
            let widen = if m0 > 0.0 {
                1.0 + z_b * (v0 / n0).sqrt() / m0
            } else {
                1.0
            };
            let r0_bound = r0 * widen;
            let rel = if r0_bound > 0.0 {
                r1 / r0_bound - 1.0
            } else {
                f64::INFINITY
            };
            let floor_ratio = rel / cfg.min_relative_increase;
            // A doubling of RMSE maps to the severity of a full-severity accuracy drop.
            (
                "rmse",
                r1,
                r0_bound * (1.0 + cfg.min_relative_increase),
                rel * FULL_SEVERITY_DROP,
                p,
                floor_ratio,
            )
        } else {
            let (n0, n1) = (base.classified(), cur.classified());
            let (c0, c1) = (base.correct(), cur.correct());
            let (_, p) = two_proportion_z(c0, n0, c1, n1)?;
            let a0 = c0 as f64 / n0 as f64;
            let a1 = c1 as f64 / n1 as f64;
            let a0_bound = a0 - z_b * (a0 * (1.0 - a0) / n0 as f64).sqrt();
            let drop = a0_bound - a1;
            (
                "accuracy",
                a1,
                a0_bound - cfg.min_drop,
                drop,
                p,
                drop / cfg.min_drop,
            )
        };
    let level = if significant_p <= cfg.p_drift && floor_ratio >= 1.0 {
        Level::Drift
    } else if significant_p <= cfg.p_warning && floor_ratio >= 0.5
        || held && floor_ratio >= 0.5 * cfg.hold_ratio
    {
        Level::Warning
    } else {
        Level::Clean
    };
    let (baseline_start, baseline_end) = baseline.bounds();
    Some(Judgement {
        detector: ACCURACY_DROP.to_owned(),
        feature: None,
        level,
        statistic: statistic.to_owned(),
        value,
        threshold,
        baseline_start,
        baseline_end,
        baseline_samples: baseline.labeled(),
        window_start: window.start,
        window_end: window.end,
        window_samples: labeled,
        severity: severity(drop_for_severity),
        onset: None,
    })
}

/// Settings shared by the stream detectors, with the detector's own parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamDetectorConfig<C> {
    pub enabled: bool,
    /// Buckets with fewer labeled outcomes are skipped. Default 10: a bucket's error rate from
    /// a handful of outcomes is noise, and ADWIN weighs every bucket alike.
    pub min_bucket_labeled: u64,
    /// A firing stays a DRIFT verdict for this much matured event time. Default 30 min.
    pub hold_ms: i64,
    /// A firing counts as DRIFT only while the error rate since it exceeds the rate of the
    /// segment before it by at least this much. Default 0.02: two points, well above the noise
    /// of a few hundred outcomes' worth of buckets, well below any decay worth reporting; it
    /// discards firings on noise (DDM's minimum recorded on a lucky stretch, say).
    pub min_increase: f64,
    /// DDM only: report its warning zone as WARNING verdicts. Default false: the zone (2 σ) is
    /// meant to start buffering examples for a new learner; at bucket granularity it flickers
    /// on a stable stream and would produce WARNING events nobody should act on.
    pub warnings: bool,
    /// ADWIN only: 0/1 observations fed per bucket at most. Default 1000: a bucket's error rate
    /// to 0.1 %, and a bounded cost per bucket (≈ 50 ns per observation) however busy the model.
    pub max_updates_per_bucket: u64,
    /// The detector's own parameters.
    pub params: C,
}

/// ADWIN defaults: River's, fed with the 0/1 outcomes of each bucket.
pub fn default_adwin() -> StreamDetectorConfig<AdwinConfig> {
    StreamDetectorConfig {
        enabled: true,
        min_bucket_labeled: 10,
        hold_ms: 30 * 60_000,
        min_increase: 0.02,
        warnings: false,
        max_updates_per_bucket: 1000,
        params: AdwinConfig::default(),
    }
}

/// Page-Hinkley defaults for bucket error rates, River's except:
/// - mode `up`: only a rising error rate is decay;
/// - `alpha = 1` (no fading): with a bucket's count as weight the sums fade by `α^n` per
///   bucket, which holds the cumulative sum near a level of `−n·δ/(1 − α^n)` while the
///   recorded minimum keeps its deepest excursion, so on a stable stream the test creeps up to
///   the threshold within hours (seen in the scenario test);
/// - `delta = 0.01` (one point of error-rate rise tolerated): with River's 0.005 the expected
///   run length between false alarms on a stable 8 % error rate is about a thousand buckets
///   (≈ 15 h of one-minute buckets), with 0.01 it is out of reach, while a 10-point rise still
///   crosses the threshold within a few buckets of a hundred outcomes.
pub fn default_page_hinkley() -> StreamDetectorConfig<PageHinkleyConfig> {
    StreamDetectorConfig {
        enabled: true,
        min_bucket_labeled: 10,
        hold_ms: 30 * 60_000,
        min_increase: 0.02,
        warnings: false,
        max_updates_per_bucket: 1000,
        params: PageHinkleyConfig {
            mode: PageHinkleyMode::Up,
            delta: 0.01,
            alpha: 1.0,
            ..PageHinkleyConfig::default()
        },
    }
}

/// DDM defaults: River's thresholds, weighted by bucket counts, with `warm_start = 1000`
/// outcomes: the first bucket alone already exceeds River's 30, and a minimum recorded on one
/// lucky bucket (small `n`, large `s`) makes every later, steadier estimate look like drift.
pub fn default_ddm() -> StreamDetectorConfig<DdmConfig> {
    StreamDetectorConfig {
        enabled: true,
        min_bucket_labeled: 10,
        hold_ms: 30 * 60_000,
        min_increase: 0.02,
        warnings: false,
        max_updates_per_bucket: 1000,
        params: DdmConfig {
            warm_start: 1000,
            ..DdmConfig::default()
        },
    }
}

/// EDDM defaults: the paper's thresholds (River's), **off** by default. EDDM judges the
/// distances between consecutive errors; bucketed outcomes only approximate that order (a
/// bucket's errors are spread evenly over its outcomes, as for ADWIN), so it is offered for
/// slowly drifting error *patterns* and left to the operator to enable.
pub fn default_eddm() -> StreamDetectorConfig<EddmConfig> {
    StreamDetectorConfig {
        enabled: false,
        min_bucket_labeled: 10,
        hold_ms: 30 * 60_000,
        min_increase: 0.02,
        warnings: false,
        max_updates_per_bucket: 1000,
        params: EddmConfig::default(),
    }
}

impl Default for StreamDetectorConfig<EddmConfig> {
    fn default() -> Self {
        default_eddm()
    }
}

impl Default for StreamDetectorConfig<AdwinConfig> {
    fn default() -> Self {
        default_adwin()
    }
}

impl Default for StreamDetectorConfig<PageHinkleyConfig> {
    fn default() -> Self {
        default_page_hinkley()
    }
}

impl Default for StreamDetectorConfig<DdmConfig> {
    fn default() -> Self {
        default_ddm()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Engine {
    /// With the observations fed per recent bucket (newest last), to map a cut back to time.
    Adwin(Adwin, std::collections::VecDeque<u64>, u64),
    PageHinkley(PageHinkley),
    Ddm(Ddm),
    /// With the most outcomes fed per bucket.
    Eddm(Eddm, u64),
}

/// One stream detector over matured bucket error rates, with its hold and bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamWatch {
    name: StreamName,
    engine: Engine,
    threshold: f64,
    min_bucket_labeled: u64,
    hold_ms: i64,
    report_warnings: bool,
    /// End of the bucket at which it last fired, and the onset estimate then.
    last_fire: Option<(TimestampMs, Option<TimestampMs>)>,
    /// Whether the latest fed bucket left DDM in its warning zone.
    warning: bool,
    /// Buckets fed since the last verdict: (first start, last end, errors, outcomes).
    pending: Option<(TimestampMs, TimestampMs, u64, u64)>,
    /// Errors and outcomes of the segment that ended at the last firing (since the firing
    /// before it, or the start): the reference a firing is confirmed against.
    before: (u64, u64),
    /// Errors and outcomes since the last firing (the firing bucket included).
    since_fire: (u64, u64),
    min_increase: f64,
}

impl StreamWatch {
    /// ADWIN over bucket error rates.
    pub fn adwin(
        cfg: &StreamDetectorConfig<AdwinConfig>,
    ) -> Result<Self, crate::detect::ConfigError> {
        let d = Adwin::new(cfg.params.clone())?;
        let cap = cfg.max_updates_per_bucket.max(1);
        let engine = Engine::Adwin(d, std::collections::VecDeque::new(), cap);
        Ok(Self::with(ADWIN, engine, cfg.params.delta, cfg))
    }

    /// Page-Hinkley over bucket error rates, weighted by bucket counts.
    pub fn page_hinkley(
        cfg: &StreamDetectorConfig<PageHinkleyConfig>,
    ) -> Result<Self, crate::detect::ConfigError> {
        let d = PageHinkley::new(cfg.params.clone())?;
        Ok(Self::with(
            PAGE_HINKLEY,
            Engine::PageHinkley(d),
            cfg.params.threshold,
            cfg,
        ))
    }

    /// DDM over bucket error rates, weighted by bucket counts.
    pub fn ddm(cfg: &StreamDetectorConfig<DdmConfig>) -> Result<Self, crate::detect::ConfigError> {
        let d = Ddm::new(cfg.params.clone())?;
        Ok(Self::with(
            DDM,
            Engine::Ddm(d),
            cfg.params.drift_threshold,
            cfg,
        ))
    }

    /// EDDM over the bucket's outcomes, its errors spread evenly (as for ADWIN).
    pub fn eddm(
        cfg: &StreamDetectorConfig<EddmConfig>,
    ) -> Result<Self, crate::detect::ConfigError> {
        let d = Eddm::new(cfg.params.clone())?;
        let cap = cfg.max_updates_per_bucket.max(1);
        Ok(Self::with(EDDM, Engine::Eddm(d, cap), cfg.params.beta, cfg))
    }

    fn with<C>(
        name: &'static str,
        engine: Engine,
        threshold: f64,
        cfg: &StreamDetectorConfig<C>,
    ) -> Self {
        StreamWatch {
            name: StreamName(name),
            engine,
            threshold,
            min_bucket_labeled: cfg.min_bucket_labeled,
            hold_ms: cfg.hold_ms.max(0),
            report_warnings: cfg.warnings,
            last_fire: None,
            warning: false,
            pending: None,
            before: (0, 0),
            since_fire: (0, 0),
            min_increase: cfg.min_increase,
        }
    }

    /// The detector's name.
    pub fn name(&self) -> &'static str {
        self.name.0
    }

    /// Feeds one matured bucket (classification outcomes only). Returns whether it fired.
    pub fn feed(&mut self, bucket: &MaturedBucket, bucket_width_ms: i64) -> bool {
        let n = bucket.aggregate.classified();
        if n < self.min_bucket_labeled.max(1) {
            return false;
        }
        let errors = n - bucket.aggregate.correct();
        let rate = errors as f64 / n as f64;
        let (fired, onset) = match &mut self.engine {
            Engine::Adwin(d, fed, cap) => {
                let k = n.min(*cap);
                // Cumulative errors after i items: ⌊i·e/n⌋, spread evenly, exact when k = n.
                let ones = |i: u64| (u128::from(i) * u128::from(errors) / u128::from(n)) as u64;
                let mut onset = None;
                for i in 0..k {
                    let bit = ones(i + 1).saturating_sub(ones(i));
                    let est = d.estimation();
                    if d.update(bit as f64).drift && d.estimation() > est && onset.is_none() {
                        // The window left after the cut holds the observations since the
                        // change: walk back over the buckets until they add up to its width.
                        let mut left = d.width().saturating_sub(i + 1);
                        let mut back = 0i64;
                        for &c in fed.iter().rev() {
                            if left == 0 {
                                break;
                            }
                            left = left.saturating_sub(c);
                            back += 1;
                        }
                        onset = Some(
                            bucket
                                .start
                                .saturating_sub(back.saturating_mul(bucket_width_ms)),
                        );
                    }
                }
                fed.push_back(k);
                // Keep just enough per-bucket counts to cover the current window.
                let mut covered = 0u64;
                let mut needed = 0usize;
                for &c in fed.iter().rev() {
                    if covered >= d.width() {
                        break;
                    }
                    covered = covered.saturating_add(c);
                    needed += 1;
                }
                while fed.len() > needed.max(1) {
                    fed.pop_front();
                }
                (onset.is_some(), onset)
            }
            Engine::PageHinkley(d) => {
                let sig = d
                    .update_weighted(rate, n as f64)
                    .unwrap_or(crate::detect::DetectorSignal::QUIET);
                (sig.drift, None)
            }
            Engine::Ddm(d) => {
                let sig = d
                    .update_weighted(rate, n as f64)
                    .unwrap_or(crate::detect::DetectorSignal::QUIET);
                self.warning = sig.warning && self.report_warnings;
                (sig.drift, None)
            }
            Engine::Eddm(d, cap) => {
                let k = n.min(*cap);
                let ones = |i: u64| (u128::from(i) * u128::from(errors) / u128::from(n)) as u64;
                let (mut drift, mut warning) = (false, false);
                for i in 0..k {
                    let bit = ones(i + 1).saturating_sub(ones(i));
                    let sig = d.update(bit as f64);
                    drift |= sig.drift;
                    warning = sig.warning;
                }
                self.warning = warning && self.report_warnings;
                (drift, None)
            }
        };
        self.pending = Some(match self.pending {
            Some((s, _, e, m)) => (s, bucket.end, e + errors, m + n),
            None => (bucket.start, bucket.end, errors, n),
        });
        if fired {
            self.before = self.since_fire;
            self.since_fire = (0, 0);
            self.last_fire = Some((bucket.end, onset));
        }
        self.since_fire.0 += errors;
        self.since_fire.1 += n;
        fired
    }

    /// The verdict over the buckets fed since the last call; `None` when none was fed.
    pub fn judge(&mut self, baseline: &Baseline) -> Option<Judgement> {
        let (start, end, errors, n) = self.pending.take()?;
        let rate = |(e, n): (u64, u64)| (n > 0).then(|| e as f64 / n as f64);
        let held = self
            .last_fire
            .filter(|(at, _)| end <= at.saturating_add(self.hold_ms));
        // A firing is confirmed while the error rate since it exceeds the rate before it by
        // `min_increase`: a detector that fired on noise sees the same rate on both sides.
        let before = rate(self.before);
        let since = rate(self.since_fire);
        let confirmed = match (held, before, since) {
            (Some(_), Some(b), Some(s)) => s - b >= self.min_increase,
            _ => false,
        };
        let (level, value, threshold) = if confirmed {
            let b = before.unwrap_or(0.0);
            (Level::Drift, since.unwrap_or(0.0), b + self.min_increase)
        } else if self.warning {
            (Level::Warning, errors as f64 / n as f64, self.threshold)
        } else {
            (Level::Clean, errors as f64 / n as f64, self.threshold)
        };
        // Severity against the baseline when there is one, else against the pre-firing rate.
        let reference = if baseline.is_ready() && !baseline.aggregate().is_regressor() {
            let b = baseline.aggregate();
            rate((b.classified() - b.correct(), b.classified()))
        } else {
            before
        };
        let sev = match level {
            Level::Clean => 0.0,
            _ => reference.map_or(0.5, |r| severity(value - r)),
        };
        let (baseline_start, baseline_end) = baseline.bounds();
        Some(Judgement {
            detector: self.name.0.to_owned(),
            feature: None,
            level,
            statistic: "error_rate".to_owned(),
            value,
            threshold,
            baseline_start,
            baseline_end,
            baseline_samples: baseline.labeled(),
            window_start: start,
            window_end: end,
            window_samples: n,
            severity: sev,
            onset: held.filter(|_| confirmed).and_then(|(_, onset)| onset),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::join::partial::empty_partial;
    use crate::ConfusionCell;

    #[test]
    fn z_test_matches_hand_computed_p_value() {
        // Baseline 920/1000, window 440/500: pooled p = 1360/1500,
        // se = √(p(1−p)(1/1000 + 1/500)) = 0.0159330, z = 0.04 / se = 2.510482,
        // one-sided p = 1 − Φ(2.510482) = 0.0060283 (scipy.stats.norm.sf).
        let (z, p) = two_proportion_z(920, 1000, 440, 500).unwrap();
        assert!((z - 2.510482).abs() < 1e-5, "{z}");
        assert!((p - 0.0060283).abs() < 1e-6, "{p}");
        // No drop: p ≥ 0.5.
        let (_, p) = two_proportion_z(900, 1000, 460, 500).unwrap();
        assert!(p > 0.5);
        assert!(two_proportion_z(0, 0, 1, 1).is_none());
        assert!(two_proportion_z(10, 10, 5, 5).is_none(), "zero variance");
    }

    #[test]
    fn normal_tail_known_points() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_sf(1.959964) - 0.025).abs() < 1e-7);
        assert!((normal_sf(-2.326348) - 0.99).abs() < 1e-7);
    }

    fn window(right: u64, wrong: u64, predictions: u64) -> WindowView {
        let mut p = empty_partial("m", "v", 0, 3_600_000, 0);
        p.counters.predictions = predictions;
        p.counters.matched = right + wrong;
        p.confusion = vec![
            ConfusionCell {
                predicted: "a".into(),
                actual: "a".into(),
                count: right,
            },
            ConfusionCell {
                predicted: "b".into(),
                actual: "a".into(),
                count: wrong,
            },
        ];
        WindowView {
            name: "1h".into(),
            start: 0,
            end: 3_600_000,
            length_ms: 3_600_000,
            aggregate: Aggregate::from_partial(&p),
        }
    }

    fn baseline(right: u64, wrong: u64) -> Baseline {
        let w = window(right, wrong, right + wrong);
        let mut p = empty_partial("m", "v", -7_200_000, 3_600_000, 0);
        p.confusion = vec![
            ConfusionCell {
                predicted: "a".into(),
                actual: "a".into(),
                count: right,
            },
            ConfusionCell {
                predicted: "b".into(),
                actual: "a".into(),
                count: wrong,
            },
        ];
        assert_eq!(w.aggregate.classified(), right + wrong);
        Baseline::external(&p)
    }

    #[test]
    fn accuracy_drop_levels_need_significance_and_floor() {
        let cfg = AccuracyDropConfig::default();
        let b = baseline(920, 80);
        // The baseline's 95 % lower bound: 0.92 − 1.645 · √(0.92 · 0.08 / 1000) = 0.90589.
        let bound = 0.92 - normal_isf(0.05) * (0.92f64 * 0.08 / 1000.0).sqrt();
        assert!((bound - 0.905_888).abs() < 1e-5, "{bound}");
        // 0.92 → 0.80 on 500: significant and 10.6 points below the bound.
        let j = judge_accuracy_drop(&cfg, &b, &window(400, 100, 500), false).unwrap();
        assert_eq!(j.level, Level::Drift);
        assert!((j.value - 0.8).abs() < 1e-12);
        assert!((j.threshold - (bound - 0.05)).abs() < 1e-12);
        assert!(
            (j.severity - (bound - 0.8) / 0.2).abs() < 1e-9,
            "{}",
            j.severity
        );
        assert_eq!((j.baseline_samples, j.window_samples), (1000, 500));
        // 0.92 → 0.87 on 20000: very significant, 3.6 points below the bound: past half the
        // floor, short of all of it.
        let j = judge_accuracy_drop(&cfg, &b, &window(17_400, 2_600, 20_000), false).unwrap();
        assert_eq!(j.level, Level::Warning);
        // 0.92 → 0.89: significant, but 1.6 points below the bound, which an unlucky
        // 1 000-outcome baseline explains: clean; once WARNING is held, it keeps it.
        let w = window(17_800, 2_200, 20_000);
        assert_eq!(
            judge_accuracy_drop(&cfg, &b, &w, false).unwrap().level,
            Level::Clean
        );
        assert_eq!(
            judge_accuracy_drop(&cfg, &b, &w, true).unwrap().level,
            Level::Warning
        );
        // 0.92 → 0.91: clean, held or not.
        let w = window(4_550, 450, 5_000);
        assert_eq!(
            judge_accuracy_drop(&cfg, &b, &w, false).unwrap().level,
            Level::Clean
        );
        assert_eq!(
            judge_accuracy_drop(&cfg, &b, &w, true).unwrap().level,
            Level::Clean
        );
        // Big drop on a tiny window: not enough labels, abstain.
        assert!(judge_accuracy_drop(&cfg, &b, &window(50, 50, 100), false).is_none());
        // Low coverage: abstain.
        assert!(judge_accuracy_drop(&cfg, &b, &window(400, 100, 1_500), false).is_none());
        // No baseline yet: abstain.
        let learning = Baseline::learned(Default::default());
        assert!(judge_accuracy_drop(&cfg, &learning, &window(400, 100, 500), false).is_none());
    }

    #[test]
    fn regression_drop_uses_rmse_floor() {
        let cfg = AccuracyDropConfig::default();
        let mut bp = empty_partial("m", "v", 0, 1_000, 0);
        // |e| = 1 on 500 outcomes, e² = 1 … plus some spread.
        bp.regression.count = 1000;
        bp.regression.abs_error_sum = 1000.0;
        bp.regression.squared_error_sum = 1500.0;
        let b = Baseline::external(&bp);
        let mut cp = empty_partial("m", "v", 0, 3_600_000, 0);
        cp.counters.predictions = 500;
        cp.counters.matched = 500;
        cp.regression.count = 500;
        cp.regression.abs_error_sum = 1000.0;
        cp.regression.squared_error_sum = 3000.0;
        let w = WindowView {
            name: "1h".into(),
            start: 0,
            end: 3_600_000,
            length_ms: 3_600_000,
            aggregate: Aggregate::from_partial(&cp),
        };
        let j = judge_accuracy_drop(&cfg, &b, &w, false).unwrap();
        assert_eq!(j.statistic, "rmse");
        assert_eq!(j.level, Level::Drift);
        assert!((j.value - 6.0f64.sqrt()).abs() < 1e-12);
    }

    fn matured(minute: i64, right: u64, wrong: u64) -> MaturedBucket {
        let w = window(right, wrong, right + wrong);
        MaturedBucket {
            start: minute * 60_000,
            end: (minute + 1) * 60_000,
            aggregate: w.aggregate,
        }
    }

    #[test]
    fn stream_detectors_fire_on_rising_error_and_hold() {
        let b = Baseline::learned(Default::default());
        for mut w in [
            StreamWatch::adwin(&default_adwin()).unwrap(),
            StreamWatch::page_hinkley(&default_page_hinkley()).unwrap(),
            StreamWatch::ddm(&default_ddm()).unwrap(),
        ] {
            assert!(w.judge(&b).is_none(), "nothing fed");
            let mut fired_at = None;
            for m in 0..200 {
                // 8 % error, alternating 7/9 per bucket of 100, then 30 % from minute 100.
                let wrong = if m < 100 { 7 + 2 * (m % 2) as u64 } else { 30 };
                if w.feed(&matured(m, 100 - wrong, wrong), 60_000) && fired_at.is_none() {
                    fired_at = Some(m);
                }
                if m == 99 {
                    assert_eq!(w.judge(&b).unwrap().level, Level::Clean, "{}", w.name());
                }
                if fired_at == Some(m) {
                    let j = w.judge(&b).unwrap();
                    assert_eq!(j.level, Level::Drift, "{}", w.name());
                    assert!(j.severity > 0.0);
                    if w.name() == ADWIN {
                        // The cut maps back to at most the change at minute 100; ADWIN cuts only
                        // at its histogram's bucket boundaries, so the estimate is early, but
                        // well after the start of the stream.
                        let onset = j.onset.unwrap();
                        assert!(
                            (60 * 60_000..=101 * 60_000).contains(&onset),
                            "onset {onset}"
                        );
                    }
                }
            }
            let at = fired_at.unwrap_or_else(|| panic!("{} never fired", w.name()));
            assert!((100..110).contains(&at), "{} fired at {at}", w.name());
        }
    }

    #[test]
    fn eddm_fires_after_the_change_and_not_before() {
        let mut w = StreamWatch::eddm(&StreamDetectorConfig {
            enabled: true,
            ..default_eddm()
        })
        .unwrap();
        let mut fired_at = None;
        for m in 0..200 {
            let wrong = if m < 100 { 7 + 2 * (m % 2) as u64 } else { 30 };
            if w.feed(&matured(m, 100 - wrong, wrong), 60_000) && fired_at.is_none() {
                fired_at = Some(m);
            }
        }
        // EDDM watches the distances between errors: slower on an abrupt jump than DDM (it is
        // meant for gradual change), but it must not fire on the stable stretch.
        let at = fired_at.expect("eddm never fired");
        assert!((100..160).contains(&at), "eddm fired at {at}");
    }

    #[test]
    fn improvements_are_not_drift() {
        let mut w = StreamWatch::adwin(&default_adwin()).unwrap();
        let mut p = StreamWatch::page_hinkley(&default_page_hinkley()).unwrap();
        for m in 0..200 {
            let wrong = if m < 100 { 30 } else { 5 };
            assert!(
                !w.feed(&matured(m, 100 - wrong, wrong), 60_000),
                "adwin at {m}"
            );
            assert!(
                !p.feed(&matured(m, 100 - wrong, wrong), 60_000),
                "ph at {m}"
            );
        }
    }
}
