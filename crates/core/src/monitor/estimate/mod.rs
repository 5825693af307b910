//! Accuracy before labels arrive: confidence-based performance estimation (CBPE, as in
//! NannyML) from the scores a classifier sends with its predictions.
//!
//! If a model's scores are *calibrated* — of the predictions made with score `s`, a share `s`
//! is right — then a prediction's score is the probability that it is right, and the expected
//! accuracy of any set of predictions is their mean score. The join adds, per bucket of
//! prediction time, the scores of every classifier prediction taken in
//! (`received_score_sum` over `received_scored`) and of every scored labeled outcome
//! (`scored_score_sum` over `scored`, of which `scored_correct` were right). So for a window:
//!
//! ```text
//! unlabeled            = received_scored − scored
//! estimated_accuracy   = (received_score_sum − scored_score_sum) / unlabeled
//! blended_accuracy     = (scored_correct + received_score_sum − scored_score_sum) / received_scored
//! ```
//!
//! `estimated_accuracy` covers only the predictions still without a label: as labels come,
//! their predictions leave it and enter the realized `accuracy`, so realized replaces
//! estimated prediction by prediction. `blended_accuracy` is the whole window's accuracy with
//! the unlabeled part estimated. A prediction whose label carries no class counts as
//! unlabeled (its correctness is unknown). All sums are additive, so windows and merges need
//! no new machinery.
//!
//! # F1 of a binary classifier
//! The join also splits those sums by predicted class (`class_scores`). For a binary model
//! (at most two classes among its predicted and true classes in the window), a still-unlabeled
//! prediction of class `c` with score `s` is a true positive for `c` with probability `s` and a
//! false positive with `1 − s`; one of the other class with score `s` is a false negative for
//! `c` with probability `1 − s`. With `n_k`, `S_k` the unlabeled count and score mass of
//! predicted class `k` (received minus scored, as above):
//!
//! ```text
//! E[TP_c] = S_c    E[FP_c] = n_c − S_c    E[FN_c] = n_o − S_o    (o the other class)
//! estimated_f1[c] = 2·E[TP_c] / (2·E[TP_c] + E[FP_c] + E[FN_c])
//! ```
//!
//! the ratio of expectations, as NannyML's CBPE takes it. Models with more than two classes get
//! no estimated F1 (their false negatives would need the scores of every class).
//!
//! # Calibration check
//! The estimate is only as good as the calibration, which labeled windows can check. Under
//! calibration the number of right predictions among `n` scored outcomes has mean
//! `Σ s = scored_score_sum` and variance `Σ s(1 − s) ≤ n·m(1 − m)` (`m` the mean score;
//! Jensen), so `z = (scored_correct − Σ s) / √(n·m(1 − m))` is at most a standard normal's
//! size. The scores count as miscalibrated when `|z| > 3.29` (two-sided 99.9 %: about one
//! false alarm in a thousand windows, and the bound on the variance makes it rarer) *and* the
//! gap `|accuracy − m|` exceeds [`CALIBRATION_TOLERANCE`] (2 points): a huge window finds a
//! gap of a tenth of a point significant, but such a gap does not spoil the estimate. Fewer
//! than [`MIN_CALIBRATION_OUTCOMES`] scored outcomes: no verdict.

use super::metrics::Aggregate;

/// Scored labeled outcomes below which the calibration check gives no verdict.
pub const MIN_CALIBRATION_OUTCOMES: u64 = 100;

/// Accuracy gap (absolute) below which scores count as calibrated, however significant.
pub const CALIBRATION_TOLERANCE: f64 = 0.02;

/// Two-sided 99.9 % standard normal quantile.
const CALIBRATION_Z: f64 = 3.29;

/// Scored predictions of `a` without a (classified) label.
pub fn unlabeled_scored(a: &Aggregate) -> u64 {
    // Saturating: partials of a join that predates the score sums carry scored outcomes but
    // no received scores.
    a.received_scored.saturating_sub(a.scored)
}

/// Mean score of the scored predictions still without a label; `None` when there is none.
pub fn estimated_accuracy(a: &Aggregate) -> Option<f64> {
    let n = unlabeled_scored(a);
    (n > 0).then(|| ((a.received_score_sum - a.scored_score_sum) / n as f64).clamp(0.0, 1.0))
}

/// Estimated F1 of each class of a binary classifier over its scored predictions still
/// without a label (see the module docs), sorted by class; empty for a model with more than
/// two classes, or when no unlabeled scored prediction is left.
pub fn estimated_f1(a: &Aggregate) -> Vec<(String, f64)> {
    let mut classes: Vec<&str> = a.class_scores.keys().map(String::as_str).collect();
    for (p, row) in &a.confusion {
        classes.push(p);
        classes.extend(row.keys().map(String::as_str));
    }
    classes.sort_unstable();
    classes.dedup();
    if classes.len() > 2 {
        return Vec::new();
    }
    // Unlabeled count and score mass per predicted class.
    let unlabeled = |class: &str| {
        a.class_scores.get(class).map_or((0.0, 0.0), |c| {
            let n = c.received_scored.saturating_sub(c.scored) as f64;
            let s = (c.received_score_sum - c.scored_score_sum).clamp(0.0, n);
            (n, s)
        })
    };
    let total: f64 = classes.iter().map(|c| unlabeled(c).0).sum();
    if total == 0.0 {
        return Vec::new();
    }
    classes
        .iter()
        .map(|&c| {
            let (n_c, s_c) = unlabeled(c);
            let (n_o, s_o) = classes
                .iter()
                .find(|&&o| o != c)
                .map_or((0.0, 0.0), |o| unlabeled(o));
            let tp = s_c;
            let denominator = 2.0 * tp + (n_c - s_c) + (n_o - s_o);
            let f1 = if denominator > 0.0 {
                2.0 * tp / denominator
            } else {
                0.0
            };
            (c.to_owned(), f1)
        })
        .collect()
}

/// Accuracy of all scored predictions: realized where labeled, estimated where not; `None`
/// without scored predictions taken in.
pub fn blended_accuracy(a: &Aggregate) -> Option<f64> {
    // More scored outcomes than scored predictions taken in: partials of a join that
    // predates the received sums; the blend would be wrong.
    if a.received_scored == 0 || a.received_scored < a.scored {
        return None;
    }
    let unlabeled_mass = if unlabeled_scored(a) > 0 {
        (a.received_score_sum - a.scored_score_sum).max(0.0)
    } else {
        0.0
    };
    let expected_right = a.scored_correct as f64 + unlabeled_mass;
    Some((expected_right / a.received_scored as f64).clamp(0.0, 1.0))
}

/// The calibration check of the module docs on the scored labeled outcomes of `a`: `None`
/// with fewer than [`MIN_CALIBRATION_OUTCOMES`], else whether the scores look calibrated.
pub fn scores_calibrated(a: &Aggregate) -> Option<bool> {
    calibrated(a.scored, a.scored_correct, a.scored_score_sum)
}

/// The check on `n` outcomes, `right` of them right, whose scores sum to `score_sum`.
pub fn calibrated(n: u64, right: u64, score_sum: f64) -> Option<bool> {
    if n < MIN_CALIBRATION_OUTCOMES || !score_sum.is_finite() {
        return None;
    }
    let nf = n as f64;
    let mean = (score_sum / nf).clamp(0.0, 1.0);
    let gap = right as f64 - score_sum;
    if (gap / nf).abs() <= CALIBRATION_TOLERANCE {
        return Some(true);
    }
    let sd = (nf * mean * (1.0 - mean)).sqrt();
    // Scores all 0 or all 1 leave no variance: any gap past the tolerance is a miss.
    Some(sd > 0.0 && (gap / sd).abs() <= CALIBRATION_Z)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
