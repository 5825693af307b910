//! Unit tests of the join buffer, beside it.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::join::{Actual, ClassId, Input, Predicted};
use crate::JoinCounters;

const T: i64 = 1_000; // label timeout
const O: i64 = 2_000; // orphan timeout
const BASE: i64 = 1_700_000_000_000;

fn key(n: u64) -> RequestKey {
    RequestKey::from_request_id(n.to_le_bytes())
}

fn pred(n: u64, t: i64) -> PredictionIn {
    PredictionIn {
        key: key(n),
        model: ModelVersionId(1),
        time: BASE + t,
        predicted: Predicted::Class(ClassId(3)),
        score: Some(0.75),
    }
}

fn label(n: u64, t: i64) -> LabelIn {
    LabelIn {
        key: key(n),
        model_hint: None,
        time: BASE + t,
        actual: Actual::Class(ClassId(4)),
    }
}

fn buf() -> JoinBuffer {
    JoinBuffer::new(T, O, 100)
}

fn collect(events: &[JoinEvent]) -> JoinCounters {
    let mut c = JoinCounters::default();
    for e in events {
        e.count_into(&mut c);
    }
    c
}

#[test]
fn slot_round_trips_payloads() {
    let p = pred(1, 0);
    let s = Slot::prediction(7, &p);
    assert_eq!(s.predicted(), (Predicted::Class(ClassId(3)), Some(0.75)));
    let p = PredictionIn {
        predicted: Predicted::Value(-2.5),
        ..p
    };
    assert_eq!(
        Slot::prediction(7, &p).predicted(),
        (Predicted::Value(-2.5), None)
    );
    let p = PredictionIn {
        predicted: Predicted::None,
        score: None,
        ..p
    };
    assert_eq!(Slot::prediction(7, &p).predicted(), (Predicted::None, None));
    let s = Slot::label(1, ModelVersionId(2), Actual::Value(4.25));
    assert_eq!(s.actual(), Actual::Value(4.25));
    assert_eq!(
        Slot::label(1, ModelVersionId(2), Actual::Class(ClassId(9))).actual(),
        Actual::Class(ClassId(9))
    );
}

#[test]
fn prediction_then_label_matches_with_payloads() {
    let mut b = buf();
    let mut ev = Vec::new();
    b.on_prediction(&pred(1, 0), &mut |e| ev.push(e));
    assert!(ev.is_empty());
    b.on_label(&label(1, 400), &mut |e| ev.push(e));
    let JoinEvent::Matched(o) = &ev[0] else {
        panic!("expected match, got {ev:?}")
    };
    assert_eq!(o.prediction_time, BASE);
    assert_eq!(o.label_time, BASE + 400);
    assert_eq!(o.label_delay_ms, 400);
    assert_eq!(o.predicted, Predicted::Class(ClassId(3)));
    assert_eq!(o.actual, Actual::Class(ClassId(4)));
    assert_eq!(o.score, Some(0.75));
    assert_eq!(b.stats().tombstones, 1);
}

#[test]
fn label_then_prediction_matches() {
    let mut b = buf();
    let mut ev = Vec::new();
    b.on_label(&label(1, 400), &mut |e| ev.push(e));
    assert_eq!(b.stats().pending_labels, 1);
    b.on_prediction(&pred(1, 0), &mut |e| ev.push(e));
    assert!(matches!(&ev[..], [JoinEvent::Matched(o)] if o.label_delay_ms == 400));
}

#[test]
fn label_exactly_at_timeout_matches_one_ms_more_does_not() {
    for (label_first, delay, matches) in [
        (false, T, true),
        (false, T + 1, false),
        (true, T, true),
        (true, T + 1, false),
    ] {
        let mut b = buf();
        let mut ev = Vec::new();
        if label_first {
            b.on_label(&label(1, delay), &mut |e| ev.push(e));
            b.on_prediction(&pred(1, 0), &mut |e| ev.push(e));
        } else {
            b.on_prediction(&pred(1, 0), &mut |e| ev.push(e));
            b.on_label(&label(1, delay), &mut |e| ev.push(e));
        }
        let c = collect(&ev);
        assert_eq!(
            c.matched,
            u64::from(matches),
            "{label_first} {delay}: {ev:?}"
        );
        assert_eq!(c.expired_unlabeled, u64::from(!matches));
        assert_eq!(c.late_labels, u64::from(!matches));
    }
}

#[test]
fn watermark_expiry_is_strict_and_check_on_access_agrees_with_sweep() {
    // Watermark == deadline: still pending, the label matches.
    let mut b = JoinBuffer::new(T, O, i64::MAX);
    let mut ev = Vec::new();
    b.on_prediction(&pred(1, 0), &mut |e| ev.push(e));
    b.advance_watermark(BASE + T, &mut |e| ev.push(e));
    b.on_label(&label(1, T), &mut |e| ev.push(e));
    assert_eq!(collect(&ev).matched, 1);

    // One ms past the deadline with no sweep run (huge interval): check-on-access expires
    // the prediction first, and the label is late.
    let mut lazy = JoinBuffer::new(T, O, i64::MAX);
    let mut eager = JoinBuffer::new(T, O, 1);
    for b in [&mut lazy, &mut eager] {
        let mut ev = Vec::new();
        b.on_prediction(&pred(1, 0), &mut |e| ev.push(e));
        b.advance_watermark(BASE + T + 1, &mut |e| ev.push(e));
        b.on_label(&label(1, T), &mut |e| ev.push(e));
        let c = collect(&ev);
        assert_eq!(
            (c.expired_unlabeled, c.late_labels, c.matched),
            (1, 1, 0),
            "{ev:?}"
        );
    }
}

#[test]
fn duplicates_and_late_and_orphans() {
    let mut b = buf();
    let mut ev = Vec::new();
    // Duplicate prediction while pending, duplicate label after match.
    b.on_prediction(&pred(1, 0), &mut |e| ev.push(e));
    b.on_prediction(&pred(1, 10), &mut |e| ev.push(e));
    b.on_label(&label(1, 20), &mut |e| ev.push(e));
    b.on_label(&label(1, 30), &mut |e| ev.push(e));
    b.on_prediction(&pred(1, 40), &mut |e| ev.push(e));
    // Duplicate label while the first one is pending.
    b.on_label(&label(2, 0), &mut |e| ev.push(e));
    b.on_label(&label(2, 5), &mut |e| ev.push(e));
    let c = collect(&ev);
    assert_eq!(c.matched, 1);
    assert_eq!(c.duplicate_predictions, 2);
    assert_eq!(c.duplicate_labels, 2);

    // Prediction 3 expires by the watermark, then its label is late.
    b.on_prediction(&pred(3, 100), &mut |e| ev.push(e));
    b.advance_watermark(BASE + 100 + T + 1, &mut |e| ev.push(e));
    b.on_label(&label(3, 150), &mut |e| ev.push(e));
    // Label 2 (pending since t=0) becomes an orphan once the watermark passes 0 + O.
    b.advance_watermark(BASE + O + 1, &mut |e| ev.push(e));
    let c = collect(&ev);
    assert_eq!(c.expired_unlabeled, 1);
    assert_eq!(c.late_labels, 1);
    assert_eq!(c.orphan_labels, 1);
    // A prediction for the orphaned request can never match.
    b.on_prediction(&pred(2, O + 10), &mut |e| ev.push(e));
    assert_eq!(collect(&ev).expired_unlabeled, 2);
    assert_eq!(c.predictions + 1, collect(&ev).predictions);
}

#[test]
fn tombstones_are_dropped_after_retention() {
    let mut b = JoinBuffer::new(T, O, 1);
    let mut ev = Vec::new();
    b.on_prediction(&pred(1, 0), &mut |e| ev.push(e));
    b.on_label(&label(1, 10), &mut |e| ev.push(e));
    b.advance_watermark(BASE + T + O, &mut |e| ev.push(e));
    assert_eq!(b.len(), 1, "kept until the watermark passes base + T + O");
    b.advance_watermark(BASE + T + O + 1, &mut |e| ev.push(e));
    assert!(b.is_empty());
    // The same key later is a new request.
    b.on_prediction(&pred(1, T + O + 10), &mut |e| ev.push(e));
    assert_eq!(b.stats().pending_predictions, 1);
}

#[test]
fn out_of_range_time_is_rejected() {
    let mut b = buf();
    let mut ev = Vec::new();
    b.on_prediction(&pred(1, 0), &mut |e| ev.push(e));
    let far = PredictionIn {
        time: BASE + (1i64 << 33),
        ..pred(2, 0)
    };
    b.on_prediction(&far, &mut |e| ev.push(e));
    assert!(
        matches!(
            &ev[..],
            [JoinEvent::Rejected {
                error: JoinError::TimeOutOfRange { .. },
                input: Input::Predictions,
                ..
            }]
        ),
        "{ev:?}"
    );
    assert_eq!(b.len(), 1);
    let c = collect(&ev);
    assert_eq!((c.predictions, c.dead_lettered), (1, 1));
}

#[test]
fn epoch_follows_the_watermark_and_times_survive_rebase() {
    let day = 86_400_000;
    let mut b = JoinBuffer::new(day, day, day / 8);
    let mut ev = Vec::new();
    let start = b.epoch();
    // Walk 60 days forward (beyond the u32 range) with one pending prediction per day.
    for d in 0..60u64 {
        let t = d as i64 * day;
        b.on_prediction(&pred(d, t), &mut |e| ev.push(e));
        b.advance_watermark(BASE + t, &mut |e| ev.push(e));
    }
    assert!(
        ev.iter().all(|e| !matches!(e, JoinEvent::Rejected { .. })),
        "{ev:?}"
    );
    assert!(b.epoch() > start);
    // The latest prediction still matches with its exact time after the rebases.
    b.on_label(&label(59, 59 * day + 5), &mut |e| ev.push(e));
    let last = ev.last().cloned();
    assert!(
        matches!(last, Some(JoinEvent::Matched(o)) if o.prediction_time == BASE + 59 * day && o.label_delay_ms == 5),
        "{last:?}"
    );
}

#[test]
fn an_old_record_into_an_empty_buffer_does_not_move_the_range() {
    let day = 86_400_000;
    let mut b = JoinBuffer::new(day, day, day / 8);
    let mut ev = Vec::new();
    b.advance_watermark(BASE, &mut |e| ev.push(e));
    // 40 days old: classified on arrival, nothing stored.
    b.on_prediction(&pred(1, -40 * day), &mut |e| ev.push(e));
    assert!(
        matches!(&ev[..], [JoinEvent::ExpiredUnlabeled { .. }]),
        "{ev:?}"
    );
    assert!(b.is_empty());
    b.on_prediction(&pred(2, 0), &mut |e| ev.push(e));
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(b.stats().pending_predictions, 1);
}

#[test]
fn per_model_timeout_override() {
    let mut b = buf();
    b.set_label_timeout(ModelVersionId(5), 10 * T);
    let mut ev = Vec::new();
    let p = PredictionIn {
        model: ModelVersionId(5),
        ..pred(1, 0)
    };
    b.on_prediction(&p, &mut |e| ev.push(e));
    b.on_prediction(&pred(2, 0), &mut |e| ev.push(e));
    b.on_label(&label(1, 5 * T), &mut |e| ev.push(e));
    b.on_label(&label(2, 5 * T), &mut |e| ev.push(e));
    let c = collect(&ev);
    assert_eq!((c.matched, c.late_labels), (1, 1));
    assert_eq!(b.label_timeout(ModelVersionId(5)), 10 * T);
    assert_eq!(b.label_timeout(ModelVersionId(1)), T);
}

/// The sweep as it is without the threshold shortcut: `expire_slot` on every slot.
fn reference_sweep(b: &mut JoinBuffer, sink: &mut impl FnMut(JoinEvent)) {
    let params = b.params.clone();
    b.map
        .retain(|key, slot| params.expire_slot(*key, slot, sink));
    b.last_sweep_watermark = b.params.watermark;
}

#[test]
fn sweep_thresholds_agree_with_the_full_check() {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    let mut rng = SmallRng::seed_from_u64(7);
    for round in 0..20 {
        // Sweep interval i64::MAX: only the explicit sweeps below run. Both buffers get the
        // same feed.
        let mut fast = JoinBuffer::new(T, O, i64::MAX);
        let mut reference = JoinBuffer::new(T, O, i64::MAX);
        if round % 2 == 1 {
            fast.set_label_timeout(ModelVersionId(2), 3 * T);
            reference.set_label_timeout(ModelVersionId(2), 3 * T);
        }
        let mut ev = Vec::new();
        for n in 0..400u64 {
            let t = rng.gen_range(0..5 * (T + O));
            let model = ModelVersionId(rng.gen_range(1..4));
            if rng.gen_bool(0.5) {
                let p = PredictionIn {
                    model,
                    ..pred(n % 300, t)
                };
                fast.on_prediction(&p, &mut |e| ev.push(e));
                reference.on_prediction(&p, &mut |_| {});
            } else {
                let l = LabelIn {
                    model_hint: Some(model),
                    ..label(n % 300, t)
                };
                fast.on_label(&l, &mut |e| ev.push(e));
                reference.on_label(&l, &mut |_| {});
            }
        }
        for step in 1..=40 {
            let w = BASE + step * (T + O) / 6;
            fast.params.watermark = w;
            reference.params.watermark = w;
            let (mut a, mut b) = (Vec::new(), Vec::new());
            fast.sweep(&mut |e| a.push(e));
            reference_sweep(&mut reference, &mut |e| b.push(e));
            let key_of = |e: &JoinEvent| format!("{e:?}");
            let mut a: Vec<String> = a.iter().map(key_of).collect();
            let mut b: Vec<String> = b.iter().map(key_of).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "round {round} step {step}");
            assert_eq!(fast.len(), reference.len());
            for (k, s) in &reference.map {
                assert_eq!(fast.map.get(k), Some(s));
            }
        }
        assert!(fast.is_empty(), "everything expires eventually");
    }
}

#[test]
fn expire_all_classifies_everything_pending() {
    let mut b = buf();
    let mut ev = Vec::new();
    b.on_prediction(&pred(1, 0), &mut |e| ev.push(e));
    b.on_label(&label(2, 0), &mut |e| ev.push(e));
    b.on_prediction(&pred(3, 0), &mut |e| ev.push(e));
    b.on_label(&label(3, 1), &mut |e| ev.push(e));
    b.expire_all(&mut |e| ev.push(e));
    let c = collect(&ev);
    assert_eq!((c.matched, c.expired_unlabeled, c.orphan_labels), (1, 1, 1));
    assert!(b.is_empty());
}

#[test]
fn a_new_hot_capacity_spills_past_it_and_then_lets_the_table_fill_to_it() {
    let mut b = buf();
    b.set_cold_tier(Box::new(crate::join::MemoryColdTier::default()), 64);
    let mut ev = Vec::new();
    for n in 0..40 {
        b.on_prediction(&pred(n, 0), &mut |e| ev.push(e));
    }
    assert_eq!((b.hot_len(), b.cold_len()), (40, 0));
    b.set_hot_capacity(8);
    assert!(b.hot_len() <= 8, "{} hot", b.hot_len());
    assert_eq!(b.hot_len() + b.cold_len(), 40);
    b.set_hot_capacity(128);
    let spilled = b.cold_spilled();
    for n in 40..140 {
        b.on_prediction(&pred(n, 0), &mut |e| ev.push(e));
    }
    assert_eq!(
        b.cold_spilled(),
        spilled,
        "room for 100 more without a spill"
    );
    assert_eq!(b.len(), 140);
    assert!(ev.is_empty(), "{ev:?}");
}

proptest::proptest! {
    /// Settling keeps the last change of each key, sorted by key, and settling again changes
    /// nothing (a retried commit writes the same records).
    #[test]
    fn settled_changes_are_the_last_per_key_and_stay_so(
        changes in proptest::collection::vec((0u64..12, proptest::option::of(0u64..5)), 0..80),
    ) {
        let record = |p: u64| EntryRecord { time: 1, model: 0, flags: 0, payload: p };
        let mut c = EntryChanges(
            changes
                .iter()
                .map(|&(k, p)| (RequestKey::from_parts(k, 0), p.map(record)))
                .collect(),
        );
        let mut expected = std::collections::BTreeMap::new();
        for &(k, p) in &changes {
            expected.insert(RequestKey::from_parts(k, 0), p.map(record));
        }
        let expected: Vec<_> = expected.into_iter().collect();
        c.settle();
        proptest::prop_assert_eq!(c.settled(), &expected[..]);
        c.settle();
        proptest::prop_assert_eq!(c.settled(), &expected[..]);
    }
}
