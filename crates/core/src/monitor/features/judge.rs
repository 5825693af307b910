//! One judgement: every check of a current window against the reference.

use std::collections::BTreeSet;

use crate::summary::drift::{self, calibrate, DriftMethod, DriftResult};
use crate::summary::{
    category_bucket, CategoricalSummary, FeatureInterner, FeatureKind, FeatureSummary,
    NumericSummary, SignatureSummary,
};
use crate::TimestampMs;

use super::super::detectors::{Judgement, Level};
use super::{
    FeatureDriftConfig, FEATURE_PRESENCE, MISSING_RATE, PREDICTION, PREDICTION_SCORE,
    TYPE_MISMATCH, UNSEEN_CATEGORIES,
};

/// One drift test of a judgement: feature name, result, (reference, current) values.
pub(super) type Tested = (String, DriftResult, (u64, u64));

/// What one judgement compares.
pub(super) struct Ctx<'a> {
    pub(super) cfg: &'a FeatureDriftConfig,
    pub(super) names: &'a FeatureInterner,
    pub(super) reference: &'a SignatureSummary,
    pub(super) current: &'a SignatureSummary,
    pub(super) reference_bounds: (TimestampMs, TimestampMs),
    pub(super) window: (TimestampMs, TimestampMs),
}

/// Severity of a test: `1 − p_adj / q` for p-value tests (p_adj the BH-adjusted p-value),
/// 0.5 at the threshold and 1 at twice it for distances.
fn test_severity(r: &DriftResult, adjusted_p: f64, q: f64) -> f64 {
    let s = if r.method.is_p_value_test() {
        1.0 - adjusted_p / q
    } else {
        0.5 * r.statistic / r.threshold
    };
    if s.is_finite() {
        s.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Severity of a rate over its allowed increase: 0.5 at the threshold, 1 at twice it.
fn rate_severity(excess: f64, allowed: f64) -> f64 {
    let s = 0.5 * excess / allowed;
    if s.is_finite() {
        s.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn level(drifted: bool) -> Level {
    if drifted {
        Level::Drift
    } else {
        Level::Clean
    }
}

/// Share of `current`'s values whose category the reference never saw; `None` unless the
/// reference is exact (at most `CATEGORY_EXACT_MAX` categories: a bucketed one no longer
/// names them). A bucketed `current` gives a lower bound, the share of its values in buckets
/// no reference category falls into (close to the truth when the reference has few
/// categories), so the share is a pure function of both summaries' values either way.
fn unseen_share(reference: &CategoricalSummary, current: &CategoricalSummary) -> Option<f64> {
    let known = reference.exact_counts()?;
    if current.count() == 0 {
        return None;
    }
    let unseen: u64 = match current.exact_counts() {
        Some(rows) => {
            let known: BTreeSet<&str> = known.iter().map(|(v, _)| v.as_str()).collect();
            rows.iter()
                .filter(|(v, _)| !known.contains(v.as_str()))
                .map(|(_, n)| n)
                .sum()
        }
        None => {
            let hit: BTreeSet<usize> = known.iter().map(|(v, _)| category_bucket(v)).collect();
            current
                .bucket_counts()
                .iter()
                .enumerate()
                .filter(|(b, _)| !hit.contains(b))
                .map(|(_, n)| n)
                .sum()
        }
    };
    Some(unseen as f64 / current.count() as f64)
}

/// Values of the minority kind relative to the reference's kind, as a share of all values.
fn wrong_kind_share(f: &FeatureSummary, kind: FeatureKind) -> Option<f64> {
    let n = f.numeric().map_or(0, NumericSummary::count);
    let c = f.categorical().map_or(0, CategoricalSummary::count);
    let total = n.saturating_add(c);
    if total == 0 {
        return None;
    }
    let wrong = match kind {
        FeatureKind::Numeric => c,
        FeatureKind::Categorical => n,
        FeatureKind::Unknown => return None,
    };
    Some(wrong as f64 / total as f64)
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn judgement(
        &self,
        detector: &str,
        feature: &str,
        drifted: bool,
        statistic: &str,
        value: f64,
        threshold: f64,
        samples: (u64, u64),
        severity: f64,
    ) -> Judgement {
        Judgement {
            detector: detector.to_owned(),
            feature: Some(feature.to_owned()),
            level: level(drifted),
            statistic: statistic.to_owned(),
            value,
            threshold,
            baseline_start: self.reference_bounds.0,
            baseline_end: self.reference_bounds.1,
            baseline_samples: samples.0,
            window_start: self.window.0,
            window_end: self.window.1,
            window_samples: samples.1,
            severity,
            onset: None,
        }
    }

    /// Judgements of every drift test of this judgement, Benjamini–Hochberg adjusted: a test
    /// drifts when its adjusted p-value is at most the false-discovery rate and (distances)
    /// its statistic reaches the minimum effect. p-value tests report the adjusted p-value
    /// against that rate; distances their statistic against their threshold at that rate
    /// (a drifting distance always reaches it; reaching it is not enough when many features
    /// are judged).
    pub(super) fn test_judgements(&self, tests: &[Tested]) -> Vec<Judgement> {
        let q = self.cfg.false_discovery_rate;
        let p: Vec<f64> = tests
            .iter()
            .map(|(_, r, _)| r.p_value.unwrap_or(1.0))
            .collect();
        let adjusted = calibrate::bh_adjusted(&p);
        tests
            .iter()
            .zip(adjusted)
            .map(|((feature, r, samples), p_adj)| {
                let drifted = p_adj <= q && r.min_effect.is_none_or(|e| r.statistic >= e);
                let (statistic, value, threshold) = match r.method {
                    DriftMethod::KolmogorovSmirnov => ("ks_p_value", p_adj, q),
                    DriftMethod::ChiSquare => ("chi_square_p_value", p_adj, q),
                    m => (m.as_str(), r.statistic, r.threshold),
                };
                self.judgement(
                    r.method.as_str(),
                    feature,
                    drifted,
                    statistic,
                    value,
                    threshold,
                    *samples,
                    test_severity(r, p_adj, q),
                )
            })
            .collect()
    }

    pub(super) fn judge_features(
        &self,
        appeared: &mut BTreeSet<String>,
        tests: &mut Vec<Tested>,
        out: &mut Vec<Judgement>,
    ) {
        let cfg = self.cfg;
        let settings = cfg.drift_settings();
        let min = cfg.min_samples;
        let (ref_n, cur_n) = (self.reference.predictions(), self.current.predictions());
        let ignored = |name: &str| cfg.ignore.iter().any(|i| i == name);
        let mut in_reference = BTreeSet::new();
        for (id, r) in self.reference.features() {
            let Some(name) = self.names.name(id) else {
                continue;
            };
            in_reference.insert(name);
            if ignored(name) {
                continue;
            }
            let c = self.current.feature(id);
            let (r_count, c_count) = (r.count(), c.map_or(0, FeatureSummary::count));
            if r_count >= min && c_count >= min {
                if let Some(c) = c {
                    if let Ok(result) = drift::default_test_with(r, c, &settings) {
                        tests.push((name.to_owned(), result, (r_count, c_count)));
                    }
                }
            }
            if !cfg.data_quality {
                continue;
            }
            if ref_n >= min && cur_n >= min {
                self.quality_checks(name, r, c, (ref_n, cur_n), out);
            }
        }
        if !cfg.data_quality || cur_n < min {
            return;
        }
        // Features the reference never had: judged while present, and cleared once gone.
        for (id, c) in self.current.features() {
            let Some(name) = self.names.name(id) else {
                continue;
            };
            if in_reference.contains(name) || ignored(name) {
                continue;
            }
            let n = c.count();
            out.push(self.judgement(
                FEATURE_PRESENCE,
                name,
                n >= min,
                "values",
                n as f64,
                min as f64,
                (0, n),
                if n >= min { 1.0 } else { 0.0 },
            ));
            appeared.insert(name.to_owned());
        }
        let gone: Vec<String> = appeared
            .iter()
            .filter(|n| {
                self.names
                    .get(n)
                    .and_then(|id| self.current.feature(id))
                    .is_none()
            })
            .cloned()
            .collect();
        for name in gone {
            out.push(self.judgement(
                FEATURE_PRESENCE,
                &name,
                false,
                "values",
                0.0,
                min as f64,
                (0, 0),
                0.0,
            ));
            appeared.remove(&name);
        }
    }

    fn quality_checks(
        &self,
        name: &str,
        r: &FeatureSummary,
        c: Option<&FeatureSummary>,
        (ref_n, cur_n): (u64, u64),
        out: &mut Vec<Judgement>,
    ) {
        let cfg = self.cfg;
        let min = cfg.min_samples;
        let c_count = c.map_or(0, FeatureSummary::count);
        // Presence: the reference had values, the current window has none.
        let gone = r.count() >= min && c_count == 0;
        out.push(self.judgement(
            FEATURE_PRESENCE,
            name,
            gone,
            "values",
            c_count as f64,
            1.0,
            (r.count(), c_count),
            if gone { 1.0 } else { 0.0 },
        ));
        // Missing: predictions without a usable value (absent, null, non-finite).
        let rate = |count: u64, n: u64| 1.0 - (count.min(n) as f64 / n as f64);
        let (r_rate, c_rate) = (rate(r.count(), ref_n), rate(c_count, cur_n));
        let threshold = r_rate + cfg.max_missing_rate_increase;
        out.push(self.judgement(
            MISSING_RATE,
            name,
            c_rate > threshold,
            MISSING_RATE,
            c_rate,
            threshold.min(1.0),
            (ref_n, cur_n),
            rate_severity(c_rate - r_rate, cfg.max_missing_rate_increase),
        ));
        let Some(c) = c else {
            return;
        };
        let kind = r.kind();
        if c.count() >= min {
            if let (Some(rs), Some(cs)) = (wrong_kind_share(r, kind), wrong_kind_share(c, kind)) {
                let threshold = rs + cfg.max_type_mismatch_increase;
                out.push(self.judgement(
                    TYPE_MISMATCH,
                    name,
                    cs > threshold,
                    "wrong_kind_share",
                    cs,
                    threshold.min(1.0),
                    (r.count(), c.count()),
                    rate_severity(cs - rs, cfg.max_type_mismatch_increase),
                ));
            }
        }
        if kind == FeatureKind::Categorical {
            if let (Some(rc), Some(cc)) = (r.categorical(), c.categorical()) {
                if cc.count() >= min {
                    if let Some(share) = unseen_share(rc, cc) {
                        let t = cfg.max_unseen_category_share;
                        out.push(self.judgement(
                            UNSEEN_CATEGORIES,
                            name,
                            share > t,
                            "unseen_share",
                            share,
                            t,
                            (rc.count(), cc.count()),
                            rate_severity(share, t),
                        ));
                    }
                }
            }
        }
    }

    pub(super) fn judge_outputs(&self, tests: &mut Vec<Tested>) {
        let min = self.cfg.min_samples;
        let settings = self.cfg.drift_settings();
        let (r, c) = (self.reference, self.current);
        let (rl, cl) = (r.predicted_label(), c.predicted_label());
        let (rv, cv) = (r.predicted_value(), c.predicted_value());
        if rl.count() >= min && cl.count() >= min {
            if let Ok(result) = drift::default_categorical_test_with(rl, cl, &settings) {
                tests.push((PREDICTION.to_owned(), result, (rl.count(), cl.count())));
            }
        } else if rv.count() >= min && cv.count() >= min {
            if let Ok(result) = drift::default_numeric_test_with(rv, cv, &settings) {
                tests.push((PREDICTION.to_owned(), result, (rv.count(), cv.count())));
            }
        }
        let (rs, cs) = (r.score(), c.score());
        if rs.count() >= min && cs.count() >= min {
            if let Ok(result) = drift::default_numeric_test_with(rs, cs, &settings) {
                tests.push((
                    PREDICTION_SCORE.to_owned(),
                    result,
                    (rs.count(), cs.count()),
                ));
            }
        }
    }
}
