//! Stream detectors over matured bucket error rates (`adwin`, `page_hinkley`, `ddm`, `eddm`;
//! see the module docs of [`detectors`](super)).

use serde::{Deserialize, Serialize};

use crate::detect::{
    Adwin, AdwinConfig, ChangeDetector, Ddm, DdmConfig, Eddm, EddmConfig, PageHinkley,
    PageHinkleyConfig, PageHinkleyMode,
};
use crate::TimestampMs;

use super::super::baseline::Baseline;
use super::super::window::MaturedBucket;
use super::{severity, Judgement, Level, ADWIN, DDM, EDDM, PAGE_HINKLEY};

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

/// Settings shared by the stream detectors, with the detector's own parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamDetectorConfig<C> {
    pub enabled: bool,
    /// Buckets with fewer labeled outcomes are skipped. Default 10: a bucket's error rate from
    /// a handful of outcomes is noise, and ADWIN weighs every bucket alike.
    pub min_bucket_labeled: u64,
    /// `hold` (formerly `hold_ms`): a firing stays a DRIFT verdict for this much matured event
    /// time. Default `30m`.
    #[serde(
        rename = "hold",
        alias = "hold_ms",
        with = "crate::monitor::duration::hold"
    )]
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
    /// to 0.1 %, and a bounded cost per bucket however busy the model (ADWIN's cost per
    /// observation: BENCHMARKS.md, core micro-benchmarks).
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
