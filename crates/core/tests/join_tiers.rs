//! Property tests of the join buffer's cold tier: with a hot capacity of a few entries, so
//! that nearly everything lives cold, a task decides, counts and records changes exactly as
//! the all-in-memory one on the same feed.

#![allow(clippy::unwrap_used)]

use driftwatch_core::join::{
    Actual, ClassId, Input, JoinConfig, JoinEvent, JoinTask, LabelIn, MemoryColdTier,
    ModelVersionId, Predicted, PredictionIn, RequestKey,
};
use proptest::prelude::*;

const BASE: i64 = 1_760_000_000_000;

#[derive(Debug, Clone)]
enum Rec {
    Pred(PredictionIn),
    Label(LabelIn),
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        any::<bool>(),
        0u8..40,
        0i64..20_000,
        1u16..4,
        0u32..3,
        proptest::option::of(0.0f32..=1.0),
        any::<bool>(),
    )
        .prop_map(|(is_pred, k, t, model, class, score, hinted)| {
            let key = RequestKey::from_request_id([k]);
            if is_pred {
                Rec::Pred(PredictionIn {
                    key,
                    model: ModelVersionId(model),
                    time: BASE + t,
                    predicted: Predicted::Class(ClassId(class)),
                    score,
                })
            } else {
                Rec::Label(LabelIn {
                    key,
                    model_hint: hinted.then_some(ModelVersionId(model)),
                    time: BASE + t,
                    actual: Actual::Class(ClassId(class)),
                })
            }
        })
}

fn new_task(hot_capacity: Option<usize>) -> JoinTask {
    let mut c = JoinConfig {
        label_timeout_ms: 1_000,
        orphan_timeout_ms: 1_500,
        allowed_lateness_ms: 0,
        max_task_idle_ms: 0,
        idle_timeout_ms: 200,
        ..JoinConfig::default()
    };
    c.label_timeout_overrides_ms.insert("m3".into(), 3_000);
    let mut t = JoinTask::new(c).unwrap();
    for m in 1..4 {
        t.intern_model(&format!("m{m}"), "v").unwrap();
    }
    if let Some(cap) = hot_capacity {
        t.set_cold_tier(Box::new(MemoryColdTier::new()), cap);
    }
    t.track_changes();
    t
}

/// Everything observable after one step: the events (as a sorted multiset: the tiers may
/// emit a sweep's events in another order), the latest changes, the counters and the
/// buffer's entry counts.
type Observed = (Vec<String>, String, String, String);

fn observe(task: &mut JoinTask, events: Vec<JoinEvent>) -> Observed {
    let mut ev: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
    ev.sort();
    let changes = format!("{:?}", task.take_changes().latest());
    let counters = format!("{:?}", task.all_counters().collect::<Vec<_>>());
    let s = task.buffer().stats();
    let counts = format!(
        "{} {} {} {}",
        s.pending_predictions,
        s.pending_labels,
        s.tombstones,
        task.buffer().len()
    );
    (ev, changes, counters, counts)
}

fn run(recs: &[Rec], polls: &[(bool, bool, i64)], hot: Option<usize>) -> Vec<Observed> {
    let mut task = new_task(hot);
    let mut now = BASE;
    let mut out = Vec::new();
    for (r, (cp, cl, dt)) in recs.iter().zip(polls.iter().cycle()) {
        match r {
            Rec::Pred(p) => task.push_prediction(*p),
            Rec::Label(l) => task.push_label(*l),
        }
        task.set_caught_up(Input::Predictions, *cp);
        task.set_caught_up(Input::Labels, *cl);
        now += dt;
        let mut events = Vec::new();
        task.poll(now, &mut |e| events.push(e));
        out.push(observe(&mut task, events));
    }
    let mut events = Vec::new();
    task.drain(&mut |e| events.push(e));
    out.push(observe(&mut task, events));
    assert!(task.cold_error().is_none());
    assert!(task.buffer().is_empty());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_tiny_hot_tier_decides_exactly_as_all_in_memory(
        recs in proptest::collection::vec(rec(), 0..250),
        polls in proptest::collection::vec((any::<bool>(), any::<bool>(), 0i64..400), 1..50),
        hot in 2usize..9,
    ) {
        let reference = run(&recs, &polls, None);
        let tiered = run(&recs, &polls, Some(hot));
        prop_assert_eq!(reference.len(), tiered.len());
        for (i, (a, b)) in reference.iter().zip(&tiered).enumerate() {
            prop_assert_eq!(a, b, "step {}", i);
        }
    }
}

/// A restore into a tiered buffer spills as it goes and keeps every entry.
#[test]
fn restore_into_a_tiered_buffer_keeps_every_entry() {
    let mut source = new_task(None);
    for n in 0..100u64 {
        source.push_prediction(PredictionIn {
            key: RequestKey::from_parts(n, n),
            model: ModelVersionId(1),
            time: BASE + i64::try_from(n).unwrap(),
            predicted: Predicted::Class(ClassId(1)),
            score: None,
        });
    }
    source.set_caught_up(Input::Labels, true);
    source.poll(BASE, &mut |_| {});
    let entries: Vec<_> = source
        .take_changes()
        .latest()
        .into_iter()
        .filter_map(|(k, e)| e.map(|e| (k, e)))
        .collect();
    assert_eq!(entries.len(), 100);
    let task = JoinTask::restore_tiered(
        source.config().clone(),
        source.interner().clone(),
        source.checkpoint(),
        entries,
        Some((Box::new(MemoryColdTier::new()), 8)),
    )
    .unwrap();
    assert_eq!(task.buffer().len(), 100);
    assert!(task.buffer().hot_len() <= 8);
    assert_eq!(task.buffer().stats().pending_predictions, 100);
}
