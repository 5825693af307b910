//! Unit tests of partial aggregation, beside it.

use super::*;
use crate::join::RequestKey;

fn outcome(
    model: ModelVersionId,
    t: i64,
    p: Predicted,
    a: Actual,
    score: Option<f32>,
) -> JoinEvent {
    JoinEvent::Matched(Match {
        key: RequestKey::from_parts(1, 2),
        model,
        prediction_time: t,
        label_time: t + 250,
        label_delay_ms: 250,
        predicted: p,
        actual: a,
        score,
    })
}

#[test]
fn changes_are_dated_by_when_they_happened_and_never_before_the_announced_watermark() {
    let mut i = Interner::new();
    let m = i.intern_model("fraud", "v1").unwrap();
    let yes = i.intern_class("yes").unwrap();
    let mut agg = PartialAggregator::new(0, 1_000).unwrap();
    let yes_yes = |t| outcome(m, t, Predicted::Class(yes), Actual::Class(yes), None);
    // Predicted at 100, labeled at 350: epoch 0. Predicted at 900, labeled at 1 150: same
    // bucket, epoch 1 000.
    agg.fold(&yes_yes(100));
    agg.fold(&yes_yes(900));
    let out = agg.flush(&i, 1_200);
    let epochs: Vec<_> = out
        .iter()
        .map(|p| (p.bucket_start, p.epoch_start))
        .collect();
    assert_eq!(epochs, [(0, Some(0)), (0, Some(1_000))]);
    // After announcing 1 200, an expiry of the prediction of 100 is dated 1 200.
    agg.fold(&JoinEvent::ExpiredUnlabeled {
        key: RequestKey::from_parts(0, 1),
        model: m,
        prediction_time: 100,
        predicted: Predicted::Class(yes),
        score: None,
    });
    agg.signature_mut(m, 2_500);
    let out = agg.flush(&i, 1_300);
    let epochs: Vec<_> = out
        .iter()
        .map(|p| (p.bucket_start, p.epoch_start))
        .collect();
    assert_eq!(epochs, [(0, Some(1_000)), (2_000, Some(2_000))]);
    let restored = PartialAggregator::new(0, 1_000)
        .unwrap()
        .announced_at(5_000);
    assert_eq!(restored.epoch_of(100), 5_000);
}

#[test]
fn folds_classification_regression_and_counters_by_bucket() {
    let mut i = Interner::new();
    let m = i.intern_model("fraud", "v1").unwrap();
    let yes = i.intern_class("yes").unwrap();
    let no = i.intern_class("no").unwrap();
    let mut agg = PartialAggregator::new(3, 1_000).unwrap();
    agg.fold(&outcome(
        m,
        100,
        Predicted::Class(yes),
        Actual::Class(yes),
        Some(0.8),
    ));
    agg.fold(&outcome(
        m,
        700,
        Predicted::Class(yes),
        Actual::Class(no),
        Some(0.8),
    ));
    agg.fold(&outcome(
        m,
        1_500,
        Predicted::Value(3.0),
        Actual::Value(2.0),
        None,
    ));
    agg.fold(&JoinEvent::Orphan {
        key: RequestKey::from_parts(0, 0),
        model: ModelVersionId::UNKNOWN,
        label_time: 1_999,
        actual: Actual::None,
    });
    let out = agg.flush(&i, i64::MIN);
    assert_eq!(out.len(), 3);
    let unknown = &out[0];
    assert_eq!(
        (unknown.model_id.as_str(), unknown.bucket_start),
        ("unknown", 1_000)
    );
    assert_eq!(unknown.counters.orphan_labels, 1);
    let first = &out[1];
    assert_eq!(
        (first.model_id.as_str(), first.model_version.as_str()),
        ("fraud", "v1")
    );
    assert_eq!(
        (
            first.bucket_start,
            first.bucket_width_ms,
            first.source_partition
        ),
        (0, 1_000, 3)
    );
    assert_eq!(first.counters.matched, 2);
    assert_eq!(first.counters.predictions, 2);
    assert_eq!(first.scored, 2);
    let expected_ll = -(0.8f32 as f64).ln() - (1.0 - 0.8f32 as f64).ln();
    assert!((first.log_loss_sum - expected_ll).abs() < 1e-12);
    let s = 0.8f32 as f64;
    assert!((first.brier_sum - ((s - 1.0).powi(2) + s * s)).abs() < 1e-12);
    assert_eq!(first.label_delay_sum_ms, 500);
    let cells: Vec<_> = first
        .confusion
        .iter()
        .map(|c| (c.predicted.as_str(), c.actual.as_str(), c.count))
        .collect();
    assert_eq!(cells, vec![("yes", "no", 1), ("yes", "yes", 1)]);
    let second = &out[2];
    assert_eq!(second.bucket_start, 1_000);
    assert_eq!(second.regression.count, 1);
    assert_eq!(second.regression.abs_error_sum, 1.0);
    assert_eq!(second.regression.abs_pct_error_sum, 0.5);
    // Sequence numbers increase across flushes.
    let seqs: Vec<u64> = out.iter().map(|p| p.sequence).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    agg.fold(&outcome(m, 100, Predicted::None, Actual::None, None));
    assert_eq!(agg.flush(&i, i64::MIN)[0].sequence, 3);
    assert!(agg.flush(&i, i64::MIN).is_empty());
}

#[test]
fn received_predictions_go_to_their_prediction_time_bucket_without_outcomes() {
    let mut i = Interner::new();
    let m = i.intern_model("fraud", "v1").unwrap();
    let mut agg = PartialAggregator::new(0, 1_000).unwrap();
    for t in [100, 900, 1_100] {
        agg.fold(&JoinEvent::Received {
            key: RequestKey::from_parts(0, t as u64),
            model: m,
            prediction_time: t,
            score: None,
            class: None,
        });
    }
    // Labeled at 950: the same epoch as the predictions of bucket 0.
    agg.fold(&outcome(m, 700, Predicted::None, Actual::None, None));
    let out = agg.flush(&i, i64::MIN);
    let got: Vec<_> = out
        .iter()
        .map(|p| (p.bucket_start, p.counters.received_predictions))
        .collect();
    assert_eq!(got, vec![(0, 2), (1_000, 1)]);
    assert_eq!(out[0].counters.predictions, 1, "only the resolved one");
    assert!(out[0].counters.has_outcomes());
    // Taken in, none resolved: no outcome, so it must not move the monitor's windows.
    assert!(!out[1].counters.has_outcomes());
}

#[test]
fn a_later_task_numbers_its_partials_after_an_earlier_one() {
    let mut i = Interner::new();
    let m = i.intern_model("fraud", "v1").unwrap();
    let mut first = PartialAggregator::new(0, DEFAULT_BUCKET_WIDTH_MS).unwrap();
    first.fold(&outcome(m, 100, Predicted::None, Actual::None, None));
    let old = first.flush(&i, i64::MIN)[0].sequence;
    // The same partition's next task, started later, never reuses a sequence number.
    let mut second = PartialAggregator::new(0, DEFAULT_BUCKET_WIDTH_MS)
        .unwrap()
        .starting_sequence_at(old + 1_000);
    second.fold(&outcome(m, 100, Predicted::None, Actual::None, None));
    assert!(second.flush(&i, i64::MIN)[0].sequence > old);
}

#[test]
fn extreme_scores_are_clamped() {
    let i = Interner::new();
    let mut agg = PartialAggregator::new(0, DEFAULT_BUCKET_WIDTH_MS).unwrap();
    let c = ClassId(0);
    agg.fold(&outcome(
        ModelVersionId(1),
        0,
        Predicted::Class(c),
        Actual::Class(ClassId(1)),
        Some(1.0),
    ));
    let p = &agg.flush(&i, i64::MIN)[0];
    assert!(p.log_loss_sum.is_finite());
    // About -ln(1e-15) ≈ 34.5 (1 − (1 − 1e-15) is not exact in f64).
    assert!(
        p.log_loss_sum > 34.0 && p.log_loss_sum < 35.0,
        "{}",
        p.log_loss_sum
    );
    assert_eq!(p.model_id, "#1");
}

#[test]
fn negative_times_bucket_downwards_and_bad_width_is_refused() {
    let agg = PartialAggregator::new(0, 1_000).unwrap();
    assert_eq!(agg.bucket_start(-1), -1_000);
    assert_eq!(agg.bucket_start(1_000), 1_000);
    assert!(PartialAggregator::new(0, 0).is_err());
}

fn prediction(t: i64, age: f64, country: &str) -> Prediction {
    Prediction {
        request_id: "r".into(),
        model_id: "fraud".into(),
        model_version: "v1".into(),
        timestamp: t,
        features: vec![
            ("age".into(), crate::FeatureValue::Number(age)),
            (
                "country".into(),
                crate::FeatureValue::Category(country.into()),
            ),
        ],
        predicted_label: Some("yes".into()),
        predicted_value: None,
        scores: None,
        tags: vec![],
    }
}

fn decode(bytes: &[u8]) -> (SignatureSummary, FeatureInterner) {
    let mut names = FeatureInterner::new();
    let s = SignatureSummary::from_bytes(bytes, &mut names).unwrap();
    (s, names)
}

#[test]
fn signatures_attach_to_their_bucket_and_reset_at_flush() {
    let mut i = Interner::new();
    let m = i.intern_model("fraud", "v1").unwrap();
    let yes = i.intern_class("yes").unwrap();
    let mut agg = PartialAggregator::new(2, 1_000).unwrap();
    // Bucket 0: an outcome and two predictions; bucket 1: a prediction only.
    agg.fold(&outcome(
        m,
        100,
        Predicted::Class(yes),
        Actual::Class(yes),
        None,
    ));
    agg.record_prediction(m, &prediction(100, 30.0, "FR"))
        .unwrap();
    agg.record_prediction(m, &prediction(200, 50.0, "DE"))
        .unwrap();
    // Through the id API, as the join stage does.
    let age = agg.features_mut().intern("age").unwrap();
    let sig = agg.signature_mut(m, 1_500);
    sig.update_number(age, 70.0);
    sig.update_output(None, Some(2.0), None);
    assert_eq!(agg.pending(), 2);
    let out = agg.flush(&i, i64::MIN);
    assert_eq!(out.len(), 2);
    let (first, second) = (&out[0], &out[1]);
    assert_eq!((first.bucket_start, first.counters.matched), (0, 1));
    let (s, names) = decode(first.signature.as_deref().unwrap());
    assert_eq!(s.predictions(), 2);
    let ages = s.feature_by_name(&names, "age").unwrap().numeric().unwrap();
    assert_eq!(ages.mean(), Some(40.0));
    assert_eq!(s.predicted_label().estimate("yes"), 2);
    // A bucket with a signature but no event yet: zero counters.
    assert_eq!(second.bucket_start, 1_000);
    assert_eq!(second.counters, JoinCounters::default());
    assert_eq!(second.sequence, first.sequence + 1);
    let (s, names) = decode(second.signature.as_deref().unwrap());
    assert_eq!(s.predictions(), 1);
    assert!(s.feature_by_name(&names, "country").is_none());
    assert_eq!(s.predicted_value().mean(), Some(2.0));
    assert_eq!(agg.pending(), 0);
    assert!(agg.flush(&i, i64::MIN).is_empty(), "signatures are reset");
    assert_eq!(agg.signature_errors(), 0);
    // Ids stay stable across flushes (the interner lives as long as the task).
    assert_eq!(agg.features().get("age"), Some(age));
}

#[test]
fn merging_partials_merges_their_signatures() {
    let i = {
        let mut i = Interner::new();
        i.intern_model("fraud", "v1").unwrap();
        i
    };
    let m = ModelVersionId(1);
    let mut a = PartialAggregator::new(0, 1_000).unwrap();
    let mut b = PartialAggregator::new(1, 1_000).unwrap();
    a.record_prediction(m, &prediction(10, 10.0, "FR")).unwrap();
    // Another task interned the names in another order: ids differ, names do not.
    b.features_mut().intern("country").unwrap();
    b.record_prediction(m, &prediction(20, 20.0, "FR")).unwrap();
    b.record_prediction(m, &prediction(30, 60.0, "DE")).unwrap();
    let pa = a.flush(&i, i64::MIN).remove(0);
    let pb = b.flush(&i, i64::MIN).remove(0);
    let merged = merge_partials(&pa, &pb).unwrap();
    let (s, names) = decode(merged.signature.as_deref().unwrap());
    assert_eq!(s.predictions(), 3);
    let age = s.feature_by_name(&names, "age").unwrap().numeric().unwrap();
    assert_eq!(
        (age.count(), age.min(), age.max()),
        (3, Some(10.0), Some(60.0))
    );
    assert_eq!(age.mean(), Some(30.0));
    let country = s.feature_by_name(&names, "country").unwrap();
    assert_eq!(country.categorical().unwrap().estimate("FR"), 2);
    // None is the identity, bytes untouched.
    let bare = empty_partial("fraud", "v1", 0, 1_000, 0);
    assert_eq!(merge_partials(&pa, &bare).unwrap().signature, pa.signature);
    assert_eq!(merge_partials(&bare, &pa).unwrap().signature, pa.signature);
    // Garbage is an error naming the key, not a panic.
    let bad = ModelPartial {
        signature: Some(b"nope".to_vec()),
        ..bare.clone()
    };
    assert!(matches!(
        merge_partials(&pa, &bad),
        Err(PartialMergeError::Signature { .. })
    ));
}

#[test]
fn merge_refuses_different_keys_and_marks_mixed_partitions() {
    let a = empty_partial("m", "v", 0, 60_000, 1);
    let b = empty_partial("m", "v", 60_000, 60_000, 1);
    assert!(matches!(
        merge_partials(&a, &b),
        Err(PartialMergeError::DifferentKeys { .. })
    ));
    let c = empty_partial("m", "v", 0, 60_000, 2);
    assert_eq!(
        merge_partials(&a, &c).unwrap().source_partition,
        MIXED_PARTITION
    );
    assert_eq!(merge_partials(&a, &a).unwrap().source_partition, 1);
}

#[test]
fn a_take_finished_later_gives_what_a_flush_gives_now() {
    let mut i = Interner::new();
    let m = i.intern_model("fraud", "v1").unwrap();
    let yes = i.intern_class("yes").unwrap();
    let fill = |agg: &mut PartialAggregator, t: i64| {
        agg.fold(&outcome(
            m,
            t,
            Predicted::Class(yes),
            Actual::Class(yes),
            Some(0.7),
        ));
        for k in 0..300 {
            let age = (k % 97) as f64;
            agg.record_prediction(
                m,
                &prediction(t + k, age, if k % 3 == 0 { "FR" } else { "DE" }),
            )
            .unwrap();
        }
    };
    let mut flushed = PartialAggregator::new(2, 1_000).unwrap();
    let mut taken = flushed.clone();
    fill(&mut flushed, 100);
    fill(&mut taken, 100);
    let now = flushed.flush(&i, 900);
    let unfinished = taken.take(&i, 900);
    assert_eq!(unfinished.len(), now.len());
    // The aggregator goes on (new features included) before the taken partials are finished:
    // they do not see it.
    fill(&mut taken, 1_100);
    let age = taken.features_mut().intern("height").unwrap();
    taken.signature_mut(m, 1_200).update_number(age, 1.8);
    let (later, errors) = unfinished.finish();
    assert_eq!(errors, 0);
    assert_eq!(later, now);
    assert!(now.iter().all(|p| p.signature.is_some()));
    // And the next flush of each numbers on from the same sequence.
    fill(&mut flushed, 1_100);
    flushed.features_mut().intern("height").unwrap();
    flushed.signature_mut(m, 1_200).update_number(age, 1.8);
    assert_eq!(taken.flush(&i, 1_900), flushed.flush(&i, 1_900));
}
