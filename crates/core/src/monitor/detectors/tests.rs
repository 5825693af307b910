//! Unit tests of the detectors.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::join::partial::empty_partial;
use crate::monitor::baseline::Baseline;
use crate::monitor::metrics::Aggregate;
use crate::monitor::window::{MaturedBucket, WindowView};
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

/// A window of `unlabeled` scored predictions without a label, of mean score `mean`.
fn unlabeled_window(unlabeled: u64, mean: f64) -> WindowView {
    let mut w = window(0, 0, unlabeled);
    w.aggregate.received_scored = unlabeled;
    w.aggregate.received_score_sum = unlabeled as f64 * mean;
    w
}

#[test]
fn estimated_drop_levels_follow_the_floor_and_it_abstains_without_enough_or_good_scores() {
    let cfg = EstimatedDropConfig {
        enabled: true,
        ..EstimatedDropConfig::default()
    };
    let b = baseline(920, 80);
    // 0.92 → estimated 0.85: past the 5-point floor.
    let j = judge_estimated_drop(&cfg, &b, &unlabeled_window(500, 0.85)).unwrap();
    assert_eq!(
        (j.detector.as_str(), j.level),
        (ESTIMATED_DROP, Level::Drift)
    );
    assert_eq!(j.statistic, "estimated_accuracy");
    assert!((j.value - 0.85).abs() < 1e-12);
    assert!((j.threshold - 0.87).abs() < 1e-12);
    assert_eq!((j.baseline_samples, j.window_samples), (1000, 500));
    assert!((j.severity - 0.07 / FULL_SEVERITY_DROP).abs() < 1e-9);
    // Three points: past half the floor.
    let j = judge_estimated_drop(&cfg, &b, &unlabeled_window(500, 0.89)).unwrap();
    assert_eq!(j.level, Level::Warning);
    // One point: clean.
    let j = judge_estimated_drop(&cfg, &b, &unlabeled_window(500, 0.91)).unwrap();
    assert_eq!(j.level, Level::Clean);
    // Too few unlabeled scored predictions, or none: abstains.
    assert!(judge_estimated_drop(&cfg, &b, &unlabeled_window(199, 0.5)).is_none());
    assert!(judge_estimated_drop(&cfg, &b, &window(400, 100, 500)).is_none());
    // A baseline whose scores said 0.99 where 92 % were right: miscalibrated, abstains.
    let mut p = empty_partial("m", "v", -7_200_000, 3_600_000, 0);
    p.confusion = vec![
        ConfusionCell {
            predicted: "a".into(),
            actual: "a".into(),
            count: 920,
        },
        ConfusionCell {
            predicted: "b".into(),
            actual: "a".into(),
            count: 80,
        },
    ];
    p.scored = 1000;
    p.scored_correct = 920;
    p.scored_score_sum = 990.0;
    let overconfident = Baseline::external(&p);
    assert!(judge_estimated_drop(&cfg, &overconfident, &unlabeled_window(500, 0.5)).is_none());
    // The same baseline with calibrated scores judges.
    p.scored_score_sum = 915.0;
    let calibrated = Baseline::external(&p);
    let j = judge_estimated_drop(&cfg, &calibrated, &unlabeled_window(500, 0.5)).unwrap();
    assert_eq!(j.level, Level::Drift);
}
