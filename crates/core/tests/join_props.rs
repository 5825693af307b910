//! Property tests of the join core: accounting under arbitrary feeds, order independence,
//! and the monoid laws of partial merging.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use driftwatch_core::join::partial::{empty_partial, merge_partials, PartialAggregator};
use driftwatch_core::join::{
    Actual, ClassId, Input, JoinBuffer, JoinConfig, JoinEvent, JoinTask, LabelIn, Match,
    ModelVersionId, Predicted, PredictionIn, RequestKey,
};
use driftwatch_core::summary::{FeatureInterner, SignatureSummary};
use driftwatch_core::{ConfusionCell, JoinCounters, ModelPartial, RegressionSums};
use proptest::prelude::*;

const BASE: i64 = 1_760_000_000_000;

#[derive(Debug, Clone)]
enum Rec {
    Pred(PredictionIn),
    Label(LabelIn),
}

fn key(n: u8) -> RequestKey {
    RequestKey::from_request_id([n])
}

/// A prediction or label over a small key pool (forcing duplicates) and a small time range
/// (forcing all timeout cases with the 1 s timeouts used below).
fn rec() -> impl Strategy<Value = Rec> {
    (
        any::<bool>(),
        0u8..24,
        0i64..20_000,
        1u16..4,
        0u32..3,
        proptest::option::of(0.0f32..=1.0),
        any::<bool>(),
    )
        .prop_map(|(is_pred, k, t, model, class, score, hinted)| {
            if is_pred {
                Rec::Pred(PredictionIn {
                    key: key(k),
                    model: ModelVersionId(model),
                    time: BASE + t,
                    predicted: Predicted::Class(ClassId(class)),
                    score,
                })
            } else {
                Rec::Label(LabelIn {
                    key: key(k),
                    model_hint: hinted.then_some(ModelVersionId(model)),
                    time: BASE + t,
                    actual: Actual::Class(ClassId(class)),
                })
            }
        })
}

fn config() -> JoinConfig {
    let mut c = JoinConfig {
        label_timeout_ms: 1_000,
        orphan_timeout_ms: 1_500,
        allowed_lateness_ms: 0,
        max_task_idle_ms: 50,
        idle_timeout_ms: 200,
        ..JoinConfig::default()
    };
    c.label_timeout_overrides_ms.insert("m3".into(), 3_000);
    c
}

fn new_task() -> JoinTask {
    let mut t = JoinTask::new(config()).unwrap();
    for m in 1..4 {
        let id = t.intern_model(&format!("m{m}"), "v").unwrap();
        assert_eq!(id, ModelVersionId(m));
    }
    t
}

/// Whether the caller's routing check finds `r` misrouted: a fixed share of the keys, so
/// every feed of the same records marks the same ones.
fn misrouted(r: &Rec) -> bool {
    let key = match r {
        Rec::Pred(p) => p.key,
        Rec::Label(l) => l.key,
    };
    key.hi % 5 == 0
}

fn push(task: &mut JoinTask, r: &Rec) {
    let input = match r {
        Rec::Pred(p) => {
            task.push_prediction(*p);
            Input::Predictions
        }
        Rec::Label(l) => {
            task.push_label(*l);
            Input::Labels
        }
    };
    if misrouted(r) {
        assert!(task.mark_misrouted(input));
    }
}

/// Every input in exactly one bucket; besides, each marked input counted misrouted once
/// (`n_misrouted`: predictions, labels).
fn check_accounting(task: &JoinTask, n_pred: u64, n_label: u64, n_misrouted: (u64, u64)) {
    let mut total = JoinCounters::default();
    for (model, c) in task.all_counters() {
        assert_eq!(
            c.predictions,
            c.matched + c.expired_unlabeled + c.duplicate_predictions,
            "{model:?} {c:?}"
        );
        assert_eq!(
            c.labels,
            c.matched + c.orphan_labels + c.duplicate_labels + c.late_labels,
            "{model:?} {c:?}"
        );
        assert_eq!(c.dead_lettered, 0);
        // Drained: every prediction taken in is resolved, duplicates were never taken in.
        assert_eq!(
            c.received_predictions,
            c.matched + c.expired_unlabeled,
            "{model:?} {c:?}"
        );
        total.predictions += c.predictions;
        total.labels += c.labels;
    }
    assert_eq!(total.predictions, n_pred);
    assert_eq!(total.labels, n_label);
    assert_eq!(task.total_counters().predictions, n_pred);
    let t = task.total_counters();
    assert_eq!((t.misrouted_predictions, t.misrouted_labels), n_misrouted);
    assert_eq!(task.queued(), (0, 0));
    assert!(task.buffer().is_empty());
}

/// Feeds the records in time order per input, interleaving pushes and polls as `schedule`
/// says (true: next prediction, false: next label; polls after every step), inputs not
/// caught up and processing time frozen, then drains.
fn run_interleaved(
    preds: &[Rec],
    labels: &[Rec],
    schedule: &[bool],
) -> Vec<(ModelVersionId, JoinCounters)> {
    let mut task = new_task();
    let (mut pi, mut li) = (0, 0);
    for &take_pred in schedule {
        let r = if take_pred {
            preds.get(pi)
        } else {
            labels.get(li)
        };
        if let Some(r) = r {
            push(&mut task, r);
            if take_pred {
                pi += 1;
            } else {
                li += 1;
            }
        }
        task.poll(0, &mut |_| {});
    }
    for r in preds.iter().skip(pi).chain(labels.iter().skip(li)) {
        push(&mut task, r);
    }
    task.set_caught_up(Input::Predictions, true);
    task.set_caught_up(Input::Labels, true);
    task.poll(0, &mut |_| {});
    task.drain(&mut |_| {});
    task.all_counters().collect()
}

fn split_sorted(recs: &[Rec]) -> (Vec<Rec>, Vec<Rec>) {
    let mut preds: Vec<Rec> = recs
        .iter()
        .filter(|r| matches!(r, Rec::Pred(_)))
        .cloned()
        .collect();
    let mut labels: Vec<Rec> = recs
        .iter()
        .filter(|r| matches!(r, Rec::Label(_)))
        .cloned()
        .collect();
    let time = |r: &Rec| match r {
        Rec::Pred(p) => p.time,
        Rec::Label(l) => l.time,
    };
    preds.sort_by_key(time);
    labels.sort_by_key(time);
    (preds, labels)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any feed (arbitrary order within each input, random polls, caught-up flags and
    /// processing time) ends with every input in exactly one bucket, per model; at every
    /// poll, predictions received but unresolved are the buffer's pending ones.
    #[test]
    fn join_every_input_is_accounted_once(
        recs in proptest::collection::vec(rec(), 0..200),
        polls in proptest::collection::vec((any::<bool>(), any::<bool>(), 0i64..400), 200),
    ) {
        let mut task = new_task();
        let mut now = BASE;
        let (mut n_pred, mut n_label) = (0, 0);
        let mut n_misrouted = (0, 0);
        for (r, (cp, cl, dt)) in recs.iter().zip(polls.iter().cycle()) {
            match r {
                Rec::Pred(_) => n_pred += 1,
                Rec::Label(_) => n_label += 1,
            }
            match (r, misrouted(r)) {
                (Rec::Pred(_), true) => n_misrouted.0 += 1,
                (Rec::Label(_), true) => n_misrouted.1 += 1,
                _ => {}
            }
            push(&mut task, r);
            task.set_caught_up(Input::Predictions, *cp);
            task.set_caught_up(Input::Labels, *cl);
            now += dt;
            let mut seen = JoinCounters::default();
            task.poll(now, &mut |e| e.count_into(&mut seen));
            // Predictions taken in and not resolved yet are exactly those the buffer holds.
            let c = task.total_counters();
            prop_assert_eq!(
                c.received_predictions - c.matched - c.expired_unlabeled,
                task.buffer().stats().pending_predictions as u64
            );
        }
        let mut events = Vec::new();
        task.drain(&mut |e| events.push(e));
        let rejected = events.iter().filter(|e| matches!(e, JoinEvent::Rejected { .. })).count();
        prop_assert_eq!(rejected, 0);
        check_accounting(&task, n_pred, n_label, n_misrouted);
    }

    /// With each input in time order, the outcome counts do not depend on how the two inputs
    /// interleave (the task merges them by timestamp and waits for inputs not caught up).
    #[test]
    fn join_outcome_counts_do_not_depend_on_interleaving(
        recs in proptest::collection::vec(rec(), 0..150),
        schedule_a in proptest::collection::vec(any::<bool>(), 0..300),
        schedule_b in proptest::collection::vec(any::<bool>(), 0..300),
    ) {
        let (preds, labels) = split_sorted(&recs);
        let all_preds_first: Vec<bool> = std::iter::repeat_n(true, preds.len())
            .chain(std::iter::repeat_n(false, labels.len()))
            .collect();
        let all_labels_first: Vec<bool> = all_preds_first.iter().rev().copied().collect();
        let reference = run_interleaved(&preds, &labels, &all_preds_first);
        prop_assert_eq!(&reference, &run_interleaved(&preds, &labels, &all_labels_first));
        prop_assert_eq!(&reference, &run_interleaved(&preds, &labels, &schedule_a));
        prop_assert_eq!(&reference, &run_interleaved(&preds, &labels, &schedule_b));
    }

    /// The matching rule itself is symmetric: with no watermark movement, feeding the buffer
    /// all predictions first or all labels first gives the same per-model counts.
    #[test]
    fn join_rule_is_independent_of_which_input_comes_first(recs in proptest::collection::vec(rec(), 0..150)) {
        let (preds, labels) = split_sorted(&recs);
        let run = |first: &[Rec], second: &[Rec]| {
            let mut b = JoinBuffer::new(1_000, 1_500, 1);
            b.set_label_timeout(ModelVersionId(3), 3_000);
            let mut counters: BTreeMap<ModelVersionId, JoinCounters> = BTreeMap::new();
            let mut sink = |e: JoinEvent| e.count_into(counters.entry(e.model()).or_default());
            for r in first.iter().chain(second) {
                match r {
                    Rec::Pred(p) => b.on_prediction(p, &mut sink),
                    Rec::Label(l) => b.on_label(l, &mut sink),
                }
            }
            b.expire_all(&mut sink);
            counters
        };
        prop_assert_eq!(run(&preds, &labels), run(&labels, &preds));
    }
}

// ---- partial merging -------------------------------------------------------------------

fn event() -> impl Strategy<Value = JoinEvent> {
    (
        0u8..9,
        1u16..3,
        0i64..5_000,
        0u32..3,
        0u32..3,
        proptest::option::of(0.0f32..=1.0),
        -100.0f64..100.0,
        -100.0f64..100.0,
    )
        .prop_map(|(kind, model, t, p, a, score, pv, av)| {
            let model = ModelVersionId(model);
            let key = RequestKey::from_parts(u64::from(p), t as u64);
            match kind {
                0 => JoinEvent::Matched(Match {
                    key,
                    model,
                    prediction_time: t,
                    label_time: t + 37,
                    label_delay_ms: 37,
                    predicted: Predicted::Class(ClassId(p)),
                    actual: Actual::Class(ClassId(a)),
                    score,
                }),
                1 => JoinEvent::Matched(Match {
                    key,
                    model,
                    prediction_time: t,
                    label_time: t - 5,
                    label_delay_ms: -5,
                    predicted: Predicted::Value(pv),
                    actual: Actual::Value(if a == 0 { 0.0 } else { av }),
                    score: None,
                }),
                2 => JoinEvent::ExpiredUnlabeled {
                    key,
                    model,
                    prediction_time: t,
                    predicted: Predicted::None,
                    score,
                },
                3 => JoinEvent::Orphan {
                    key,
                    model,
                    label_time: t,
                    actual: Actual::None,
                },
                4 => JoinEvent::DuplicatePrediction {
                    key,
                    model,
                    prediction_time: t,
                },
                7 => JoinEvent::Misrouted {
                    input: Input::Predictions,
                    model,
                    time: t,
                },
                8 => JoinEvent::Misrouted {
                    input: Input::Labels,
                    model,
                    time: t,
                },
                6 => JoinEvent::Received {
                    key,
                    model,
                    prediction_time: t,
                    score,
                    class: Some(ClassId(p)),
                },
                _ => JoinEvent::LateLabel {
                    key,
                    model,
                    label_time: t,
                    prediction_time: None,
                },
            }
        })
}

const CATS: [&str; 3] = ["a", "b", "c"];

/// A serialized signature of a few predictions (feature names in a random order, so the
/// sides of a merge intern them differently), or none.
fn signature() -> impl Strategy<Value = Option<Vec<u8>>> {
    let row = (
        prop::option::of(-1e3f64..1e3),
        prop::option::of(0usize..3),
        prop::option::of(0usize..3),
        any::<bool>(),
    );
    prop::option::of((proptest::collection::vec(row, 0..40), any::<bool>())).prop_map(|rows| {
        rows.map(|(rows, flip)| {
            let mut names = FeatureInterner::new();
            let mut sig = SignatureSummary::new();
            let order = if flip { ["x", "c"] } else { ["c", "x"] };
            let ids = order.map(|n| names.intern(n).unwrap());
            let (x, c) = if flip {
                (ids[0], ids[1])
            } else {
                (ids[1], ids[0])
            };
            for (num, cat, label, extra) in rows {
                match num {
                    Some(v) => sig.update_number(x, v),
                    None => sig.update_missing(x),
                }
                if let Some(k) = cat {
                    sig.update_category(c, CATS[k]);
                }
                if extra {
                    let e = names.intern("extra").unwrap();
                    sig.update_category(e, "e");
                }
                sig.update_output(label.map(|l| CATS[l]), None, num.map(|v| v.abs() / 1e3));
            }
            sig.flush();
            sig.to_bytes(&names).unwrap()
        })
    })
}

fn partial() -> impl Strategy<Value = ModelPartial> {
    (
        proptest::collection::vec(0u64..1_000, 12),
        proptest::collection::btree_map((0u8..3, 0u8..3), 1u64..50, 0..5),
        proptest::collection::vec(0.0f64..1e3, 7),
        (0u64..100, 0u64..100, 0u64..1_000, -1_000i64..1_000),
        signature(),
        (0u64..1_000, 0.0f64..1e3, 0.0f64..1e3, 0u64..1_000),
    )
        .prop_map(
            |(c, cells, f, (rc, pc, seq, delay), signature, (rs, rss, sss, sc))| ModelPartial {
                counters: JoinCounters {
                    predictions: c[0],
                    labels: c[1],
                    matched: c[2],
                    expired_unlabeled: c[3],
                    orphan_labels: c[4],
                    duplicate_predictions: c[5],
                    duplicate_labels: c[6],
                    late_labels: c[7],
                    dead_lettered: c[8],
                    received_predictions: c[9],
                    misrouted_predictions: c[10],
                    misrouted_labels: c[11],
                },
                confusion: cells
                    .into_iter()
                    .map(|((p, a), count)| ConfusionCell {
                        predicted: format!("c{p}"),
                        actual: format!("c{a}"),
                        count,
                    })
                    .collect(),
                regression: RegressionSums {
                    count: rc,
                    abs_error_sum: f[0],
                    squared_error_sum: f[1],
                    error_sum: f[2],
                    abs_pct_error_sum: f[3],
                    pct_count: pc,
                },
                log_loss_sum: f[4],
                brier_sum: f[5],
                scored: (f[6] as u64),
                label_delay_sum_ms: delay,
                sequence: seq,
                signature,
                received_scored: rs,
                received_score_sum: rss,
                scored_score_sum: sss,
                scored_correct: sc,
                ..empty_partial("m", "v", 60_000, 60_000, 7)
            },
        )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (a, b) => a == b,
    }
}

/// Same signature content: these streams are small, so every count, extreme and frequency
/// is exact; means agree up to rounding.
fn same_signature(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return a.is_none() && b.is_none();
    };
    let (mut na, mut nb) = (FeatureInterner::new(), FeatureInterner::new());
    let sa = SignatureSummary::from_bytes(a, &mut na).unwrap();
    let sb = SignatureSummary::from_bytes(b, &mut nb).unwrap();
    let names = |s: &SignatureSummary, n: &FeatureInterner| {
        s.features()
            .map(|(id, _)| n.name(id).unwrap().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
    };
    if sa.predictions() != sb.predictions() || names(&sa, &na) != names(&sb, &nb) {
        return false;
    }
    let numeric_same = |x: &driftwatch_core::summary::NumericSummary,
                        y: &driftwatch_core::summary::NumericSummary| {
        x.count() == y.count()
            && x.missing() == y.missing()
            && x.min() == y.min()
            && x.max() == y.max()
            && close_opt(x.mean(), y.mean())
    };
    let cats_same = |x: &driftwatch_core::summary::CategoricalSummary,
                     y: &driftwatch_core::summary::CategoricalSummary| {
        x.count() == y.count()
            && x.missing() == y.missing()
            && CATS
                .iter()
                .chain(&["e"])
                .all(|c| x.estimate(c) == y.estimate(c))
    };
    for name in names(&sa, &na) {
        let fa = sa.feature_by_name(&na, &name).unwrap();
        let fb = sb.feature_by_name(&nb, &name).unwrap();
        let num = match (fa.numeric(), fb.numeric()) {
            (Some(x), Some(y)) => numeric_same(x, y),
            (x, y) => x.is_none() && y.is_none(),
        };
        let cat = match (fa.categorical(), fb.categorical()) {
            (Some(x), Some(y)) => cats_same(x, y),
            (x, y) => x.is_none() && y.is_none(),
        };
        if !(num && cat && fa.missing() == fb.missing()) {
            return false;
        }
    }
    cats_same(sa.predicted_label(), sb.predicted_label())
        && numeric_same(sa.score(), sb.score())
        && numeric_same(sa.predicted_value(), sb.predicted_value())
}

/// Equal up to floating-point rounding of the sums (and, when `with_sequence` is false,
/// ignoring the sequence number).
fn same(a: &ModelPartial, b: &ModelPartial, with_sequence: bool) -> bool {
    let (ra, rb) = (&a.regression, &b.regression);
    a.model_id == b.model_id
        && a.model_version == b.model_version
        && a.bucket_start == b.bucket_start
        && a.bucket_width_ms == b.bucket_width_ms
        && a.source_partition == b.source_partition
        && (!with_sequence || a.sequence == b.sequence)
        && a.counters == b.counters
        && a.confusion == b.confusion
        && ra.count == rb.count
        && ra.pct_count == rb.pct_count
        && close(ra.abs_error_sum, rb.abs_error_sum)
        && close(ra.squared_error_sum, rb.squared_error_sum)
        && close(ra.error_sum, rb.error_sum)
        && close(ra.abs_pct_error_sum, rb.abs_pct_error_sum)
        && close(a.log_loss_sum, b.log_loss_sum)
        && close(a.brier_sum, b.brier_sum)
        && a.scored == b.scored
        && a.label_delay_sum_ms == b.label_delay_sum_ms
        && a.received_scored == b.received_scored
        && close(a.received_score_sum, b.received_score_sum)
        && close(a.scored_score_sum, b.scored_score_sum)
        && a.scored_correct == b.scored_correct
        && same_signature(a.signature.as_deref(), b.signature.as_deref())
}

type PartialKey = (String, String, i64);

fn by_key(parts: Vec<ModelPartial>) -> BTreeMap<PartialKey, ModelPartial> {
    let mut out: BTreeMap<PartialKey, ModelPartial> = BTreeMap::new();
    for p in parts {
        let k = (p.model_id.clone(), p.model_version.clone(), p.bucket_start);
        let merged = match out.remove(&k) {
            Some(prev) => merge_partials(&prev, &p).unwrap(),
            None => p,
        };
        out.insert(k, merged);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn join_merge_is_associative_and_commutative(a in partial(), b in partial(), c in partial()) {
        let left = merge_partials(&merge_partials(&a, &b).unwrap(), &c).unwrap();
        let right = merge_partials(&a, &merge_partials(&b, &c).unwrap()).unwrap();
        prop_assert!(same(&left, &right, true), "{left:?}\n{right:?}");
        let ab = merge_partials(&a, &b).unwrap();
        let ba = merge_partials(&b, &a).unwrap();
        prop_assert!(same(&ab, &ba, true));
    }

    #[test]
    fn join_empty_partial_is_the_identity(a in partial()) {
        let e = empty_partial(&a.model_id, &a.model_version, a.bucket_start, a.bucket_width_ms, a.source_partition);
        prop_assert_eq!(&merge_partials(&a, &e).unwrap(), &a);
        prop_assert_eq!(&merge_partials(&e, &a).unwrap(), &a);
    }

    /// Aggregating a stream split anywhere (with a flush at the split) and merging the
    /// partials equals aggregating the whole stream at once.
    #[test]
    fn join_split_then_merge_equals_whole(events in proptest::collection::vec(event(), 0..120), cut in any::<prop::sample::Index>()) {
        let mut interner = driftwatch_core::join::Interner::new();
        for m in 1..3 {
            interner.intern_model(&format!("m{m}"), "v").unwrap();
        }
        for c in 0..3 {
            interner.intern_class(&format!("c{c}")).unwrap();
        }
        let cut = if events.is_empty() { 0 } else { cut.index(events.len() + 1) };
        let mut whole = PartialAggregator::new(4, 1_000).unwrap();
        for e in &events {
            whole.fold(e);
        }
        let whole = by_key(whole.flush(&interner, i64::MIN));
        let mut split = PartialAggregator::new(4, 1_000).unwrap();
        for e in &events[..cut] {
            split.fold(e);
        }
        let mut parts = split.flush(&interner, i64::MIN);
        for e in &events[cut..] {
            split.fold(e);
        }
        parts.extend(split.flush(&interner, i64::MIN));
        let merged = by_key(parts);
        prop_assert_eq!(whole.len(), merged.len());
        for (k, w) in &whole {
            let m = &merged[k];
            prop_assert!(same(w, m, false), "{w:?}\n{m:?}");
            // Partial counters follow the join accounting.
            let c = &w.counters;
            prop_assert_eq!(c.predictions, c.matched + c.expired_unlabeled + c.duplicate_predictions);
            prop_assert_eq!(c.labels, c.matched + c.orphan_labels + c.duplicate_labels + c.late_labels);
        }
    }
}
