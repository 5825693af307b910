//! Unit tests of the accuracy estimate and the calibration check, on seeded synthetic
//! streams folded through the join's partial aggregation as the service folds them.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::join::partial::PartialAggregator;
use crate::join::{Actual, Interner, JoinEvent, Match, Predicted, RequestKey};
use crate::monitor::detectors::EstimatedDropConfig;
use crate::monitor::Metrics;

/// One prediction of a synthetic window: its score and whether it is right.
struct Draw {
    score: f64,
    right: bool,
}

/// `n` predictions with scores uniform in `[lo, hi)`, each right with probability
/// `score + bias` (bias 0: calibrated).
fn draws(rng: &mut SmallRng, n: usize, lo: f64, hi: f64, bias: f64) -> Vec<Draw> {
    (0..n)
        .map(|_| {
            let score = rng.gen_range(lo..hi);
            let right = rng.gen_bool((score + bias).clamp(0.0, 1.0));
            Draw { score, right }
        })
        .collect()
}

/// The window's metrics once every prediction is taken in and the first `labeled` of them
/// have their label: folded into one task's partials and summed as the monitor sums them.
fn window_metrics(draws: &[Draw], labeled: usize) -> Metrics {
    let mut i = Interner::new();
    let m = i.intern_model("fraud", "v1").unwrap();
    let yes = i.intern_class("yes").unwrap();
    let no = i.intern_class("no").unwrap();
    let mut agg = PartialAggregator::new(0, 60_000).unwrap();
    for (k, d) in draws.iter().enumerate() {
        let key = RequestKey::from_parts(0, k as u64);
        let t = (k % 60_000) as i64;
        agg.fold(&JoinEvent::Received {
            key,
            model: m,
            prediction_time: t,
            score: Some(d.score as f32),
            class: Some(yes),
        });
        if k < labeled {
            agg.fold(&JoinEvent::Matched(Match {
                key,
                model: m,
                prediction_time: t,
                label_time: t + 1,
                label_delay_ms: 1,
                predicted: Predicted::Class(yes),
                actual: Actual::Class(if d.right { yes } else { no }),
                score: Some(d.score as f32),
            }));
        }
    }
    let mut a = Aggregate::default();
    for p in agg.flush(&i, 60_000) {
        a.add(&p);
    }
    Metrics::compute(&a, 60_000)
}

fn accuracy(draws: &[Draw]) -> f64 {
    draws.iter().filter(|d| d.right).count() as f64 / draws.len() as f64
}

#[test]
fn on_calibrated_scores_the_estimate_is_within_two_points_in_95_percent_of_windows() {
    let mut rng = SmallRng::seed_from_u64(20);
    let windows = 200;
    let mut within = 0;
    let mut within_blended = 0;
    for _ in 0..windows {
        let n = rng.gen_range(3_000..5_000);
        let d = draws(&mut rng, n, 0.5, 1.0, 0.0);
        // A quarter labeled so far; the rest waits (≥ 2 250 predictions estimated).
        let labeled = n / 4;
        let m = window_metrics(&d, labeled);
        assert_eq!(m.unlabeled_scored, (n - labeled) as u64);
        // Against the accuracy the waiting predictions turn out to have once labeled.
        let est = m.estimated_accuracy.unwrap();
        if (est - accuracy(&d[labeled..])).abs() <= 0.02 {
            within += 1;
        }
        // The blend against the whole window's realized accuracy.
        if (m.blended_accuracy.unwrap() - accuracy(&d)).abs() <= 0.02 {
            within_blended += 1;
        }
        // Every label in: realized replaced estimated.
        let all = window_metrics(&d, n);
        assert!(all.estimated_accuracy.is_none());
        assert!((all.blended_accuracy.unwrap() - all.accuracy.unwrap()).abs() < 1e-9);
    }
    assert!(within * 100 >= windows * 95, "{within} of {windows}");
    assert!(
        within_blended * 100 >= windows * 95,
        "{within_blended} of {windows}"
    );
}

#[test]
fn a_covariate_shift_that_lowers_scores_shows_in_the_estimate_before_any_label() {
    let mut rng = SmallRng::seed_from_u64(7);
    // Before the shift: confident and right (realized accuracy, every label in).
    let before = draws(&mut rng, 4_000, 0.8, 1.0, 0.0);
    let baseline = window_metrics(&before, before.len()).accuracy.unwrap();
    // After: inputs moved where the model is unsure; no label has arrived yet.
    let after = draws(&mut rng, 4_000, 0.5, 0.8, 0.0);
    let m = window_metrics(&after, 0);
    assert_eq!((m.matched, m.accuracy), (0, None));
    let est = m.estimated_accuracy.unwrap();
    assert!(baseline - est > 0.2, "baseline {baseline}, estimate {est}");
    assert!((est - accuracy(&after)).abs() <= 0.02, "{est}");
    // The alert rule fires on it, and not on a window like the baseline.
    let drop = EstimatedDropConfig {
        max_drop: 0.05,
        min_predictions: 1_000,
        ..EstimatedDropConfig::default()
    };
    assert!(drop.fires(baseline, &m));
    let same = window_metrics(&draws(&mut rng, 4_000, 0.8, 1.0, 0.0), 0);
    assert!(!drop.fires(baseline, &same));
}

#[test]
fn calibration_check_passes_calibrated_scores_and_flags_overconfident_ones() {
    let mut rng = SmallRng::seed_from_u64(3);
    let mut false_alarms = 0;
    for _ in 0..100 {
        let m = window_metrics(&draws(&mut rng, 2_000, 0.5, 1.0, 0.0), 2_000);
        if m.scores_calibrated != Some(true) {
            false_alarms += 1;
        }
    }
    assert!(false_alarms <= 1, "{false_alarms}");
    // Right 10 points less often than the scores say.
    let m = window_metrics(&draws(&mut rng, 2_000, 0.5, 1.0, -0.1), 2_000);
    assert_eq!(m.scores_calibrated, Some(false));
    assert!(m.mean_score.unwrap() - m.accuracy.unwrap() > 0.05);
    // Too few outcomes: no verdict.
    let m = window_metrics(&draws(&mut rng, 50, 0.5, 1.0, -0.3), 50);
    assert_eq!(m.scores_calibrated, None);
}

#[test]
fn calibration_check_by_hand() {
    // 1 000 outcomes, mean score 0.8: sd = √(1000·0.16) ≈ 12.6, so 3.29 sd ≈ 41.6 right.
    assert_eq!(calibrated(1_000, 800, 800.0), Some(true));
    // 2 points off: within the tolerance.
    assert_eq!(calibrated(1_000, 780, 800.0), Some(true));
    // 4 points off (z ≈ 3.2): not significant at 99.9 %.
    assert_eq!(calibrated(1_000, 760, 800.0), Some(true));
    // 5 points off (z ≈ 4.0): miscalibrated.
    assert_eq!(calibrated(1_000, 750, 800.0), Some(false));
    assert_eq!(calibrated(99, 0, 99.0), None);
    assert_eq!(calibrated(1_000, 0, f64::NAN), None);
}

#[test]
fn partials_of_a_join_without_received_scores_give_no_estimate() {
    let mut a = Aggregate {
        scored: 10,
        scored_score_sum: 8.0,
        scored_correct: 8,
        ..Aggregate::default()
    };
    assert_eq!(estimated_accuracy(&a), None);
    assert_eq!(blended_accuracy(&a), None);
    a.received_scored = 14;
    a.received_score_sum = 10.0;
    assert!((estimated_accuracy(&a).unwrap() - 0.5).abs() < 1e-12);
    assert!((blended_accuracy(&a).unwrap() - 10.0 / 14.0).abs() < 1e-12);
}

/// A binary classifier predicting both classes, calibrated: `n` predictions, each of class
/// `yes` with probability `p_yes`, its score uniform in [0.5, 1), right with that probability.
/// The first `labeled` get their label. Returns the window's metrics and the F1 per class the
/// unlabeled predictions really have.
fn binary_window(rng: &mut SmallRng, n: usize, labeled: usize, p_yes: f64) -> (Metrics, [f64; 2]) {
    let mut i = Interner::new();
    let m = i.intern_model("churn", "v1").unwrap();
    let classes = [
        i.intern_class("no").unwrap(),
        i.intern_class("yes").unwrap(),
    ];
    let mut agg = PartialAggregator::new(0, 60_000).unwrap();
    // Per class (no, yes): true positives, false positives, false negatives of the unlabeled.
    let mut counts = [[0u64; 3]; 2];
    for k in 0..n {
        let key = RequestKey::from_parts(0, k as u64);
        let t = (k % 60_000) as i64;
        let predicted = usize::from(rng.gen_bool(p_yes));
        let score = rng.gen_range(0.5..1.0);
        let actual = if rng.gen_bool(score) {
            predicted
        } else {
            1 - predicted
        };
        agg.fold(&JoinEvent::Received {
            key,
            model: m,
            prediction_time: t,
            score: Some(score as f32),
            class: Some(classes[predicted]),
        });
        if k < labeled {
            agg.fold(&JoinEvent::Matched(Match {
                key,
                model: m,
                prediction_time: t,
                label_time: t + 1,
                label_delay_ms: 1,
                predicted: Predicted::Class(classes[predicted]),
                actual: Actual::Class(classes[actual]),
                score: Some(score as f32),
            }));
        } else if predicted == actual {
            counts[predicted][0] += 1;
        } else {
            counts[predicted][1] += 1;
            counts[actual][2] += 1;
        }
    }
    let mut a = Aggregate::default();
    for p in agg.flush(&i, 60_000) {
        a.add(&p);
    }
    let f1 = |[tp, fp, fn_]: [u64; 3]| 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64;
    (Metrics::compute(&a, 60_000), [f1(counts[0]), f1(counts[1])])
}

#[test]
fn on_a_calibrated_binary_classifier_the_estimated_f1_is_within_two_points_in_95_percent_of_windows(
) {
    let mut rng = SmallRng::seed_from_u64(21);
    let windows = 200;
    let mut within = [0; 2];
    let mut worst: f64 = 0.0;
    for _ in 0..windows {
        let n = rng.gen_range(3_000..5_000);
        let labeled = rng.gen_range(0..n / 2);
        let p_yes = rng.gen_range(0.2..0.8);
        let (m, real) = binary_window(&mut rng, n, labeled, p_yes);
        let est: Vec<f64> = m.estimated_f1.iter().map(|(_, f)| *f).collect();
        assert_eq!(
            m.estimated_f1
                .iter()
                .map(|(c, _)| c.as_str())
                .collect::<Vec<_>>(),
            ["no", "yes"]
        );
        for c in 0..2 {
            let gap = (est[c] - real[c]).abs();
            worst = worst.max(gap);
            within[c] += usize::from(gap <= 0.02);
        }
    }
    for w in within {
        assert!(
            w * 100 >= windows * 95,
            "{within:?} of {windows}, worst gap {worst}"
        );
    }
}

#[test]
fn estimated_f1_follows_its_formula_and_needs_a_binary_model() {
    use crate::ClassScores;
    let scores = |class: &str, received: u64, sum: f64| ClassScores {
        class: class.into(),
        received_scored: received,
        received_score_sum: sum,
        scored: 0,
        scored_score_sum: 0.0,
    };
    let mut a = Aggregate::default();
    assert!(estimated_f1(&a).is_empty());
    a.class_scores.insert("yes".into(), scores("yes", 10, 8.0));
    a.class_scores.insert("no".into(), scores("no", 20, 18.0));
    // yes: TP 8, FP 2, FN 2 → 16 / 20; no: TP 18, FP 2, FN 2 → 36 / 40.
    let f = estimated_f1(&a);
    assert_eq!(f[0].0, "no");
    assert!((f[0].1 - 0.9).abs() < 1e-12, "{f:?}");
    assert!((f[1].1 - 0.8).abs() < 1e-12, "{f:?}");
    // A third class (here only among labeled outcomes): not binary, no estimate.
    a.confusion
        .entry("maybe".into())
        .or_default()
        .insert("no".into(), 1);
    assert!(estimated_f1(&a).is_empty());
}
