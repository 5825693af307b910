//! Event-time verdicts: the monitor judges epochs as the join's announced watermarks pass
//! them, so the same changes split into any flushes, read in any interleaving, give the same
//! events; and labels arriving long after the data do not move a model's time.
#![allow(clippy::unwrap_used)]

use driftwatch_core::join::partial::empty_partial;
use driftwatch_core::monitor::{EpochQueue, JoinClock, Monitor, MonitorConfig, MonitorOutput};
use driftwatch_core::{ConfusionCell, DriftState, ModelPartial};
use proptest::prelude::*;

const MIN: i64 = 60_000;
const TASKS: usize = 3;

/// The changes one join task made in one epoch: outcomes of predictions of `bucket`.
fn partial(
    model: &str,
    task: i32,
    bucket: i64,
    epoch: i64,
    right: u64,
    wrong: u64,
) -> ModelPartial {
    let mut p = empty_partial(model, "v1", bucket * MIN, MIN, task);
    p.epoch_start = Some(epoch * MIN);
    p.sequence = epoch as u64;
    p.counters.predictions = right + wrong;
    p.counters.matched = right + wrong;
    p.confusion = vec![
        ConfusionCell {
            predicted: "a".into(),
            actual: "a".into(),
            count: right,
        },
        ConfusionCell {
            predicted: "a".into(),
            actual: "b".into(),
            count: wrong,
        },
    ];
    p
}

fn config() -> MonitorConfig {
    let mut c = MonitorConfig::default();
    c.default.maturity_ms = 2 * MIN;
    c
}

/// A drifting model: per task and minute 40 outcomes, 8 % wrong, 35 % from minute 120 on;
/// the labels of minute `t` arrive in epoch `t + 1`.
fn changes(minutes: i64) -> Vec<ModelPartial> {
    let mut out = Vec::new();
    for t in 0..minutes {
        for task in 0..TASKS as i32 {
            let wrong = if t >= 120 {
                14
            } else {
                3 + (t + i64::from(task)) as u64 % 2
            };
            out.push(partial("m", task, t, t + 1, 40 - wrong, wrong));
        }
    }
    out
}

/// One join task's flushes: its changes in epoch order, cut into flushes after the given
/// indexes, each flush followed by the watermark it announces (the start of its next epoch).
fn flushes(task: i32, all: &[ModelPartial], cuts: &[usize]) -> Vec<(Vec<ModelPartial>, i64)> {
    let mine: Vec<ModelPartial> = all
        .iter()
        .filter(|p| p.source_partition == task)
        .cloned()
        .collect();
    let mut out = Vec::new();
    let mut from = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (mine.len() + 1)).collect();
    bounds.push(mine.len());
    bounds.sort_unstable();
    for to in bounds {
        if to < from {
            continue;
        }
        let batch: Vec<ModelPartial> = mine[from..to].to_vec();
        // Everything after this flush lies in a later epoch than the last one sent.
        let watermark = mine
            .get(to)
            .and_then(|p| p.epoch_start)
            .unwrap_or(i64::MAX / 2);
        out.push((batch, watermark));
        from = to;
    }
    out
}

/// Runs the monitor over the tasks' flushes, read in the interleaving `order` (task indexes,
/// each taking that task's next flush), and returns its events.
fn run(all: &[ModelPartial], cuts: &[Vec<usize>], order: &[usize], advance: bool) -> MonitorOutput {
    let mut m = Monitor::new(config()).unwrap();
    let mut tasks: Vec<std::collections::VecDeque<_>> = (0..TASKS as i32)
        .map(|t| flushes(t, all, &cuts[t as usize]).into())
        .collect();
    let mut clock = JoinClock::new();
    let mut queue = EpochQueue::new();
    let mut out = MonitorOutput::default();
    let mut apply = |clock: &JoinClock, queue: &mut EpochQueue<()>, m: &mut Monitor| {
        while let Some(e) = queue.pop_ready(clock.time().unwrap_or(i64::MIN)) {
            let o = m.apply_epoch(e.partials.iter().map(|(_, p)| p), e.end, |_, r| {
                assert!(r.is_ok());
            });
            out.drift_events.extend(o.drift_events);
            out.retrain_events.extend(o.retrain_events);
        }
        // Time moving on without new data (as the stage does after each progress record).
        if let (true, Some(t)) = (advance, clock.time()) {
            let o = m.advance(["m"], t);
            out.drift_events.extend(o.drift_events);
            out.retrain_events.extend(o.retrain_events);
        }
    };
    let mut next = order.iter().cycle();
    while tasks.iter().any(|t| !t.is_empty()) {
        let t = *next.next().unwrap() % TASKS;
        let Some((batch, watermark)) = tasks[t].pop_front() else {
            // This task is done: the others go on.
            if let Some(other) = tasks.iter().position(|q| !q.is_empty()) {
                let (batch, watermark) = tasks[other].pop_front().unwrap();
                for p in batch {
                    queue.push((), p);
                }
                clock.observe(TASKS, other as i32, watermark);
                apply(&clock, &mut queue, &mut m);
            }
            continue;
        };
        for p in batch {
            queue.push((), p);
        }
        clock.observe(TASKS, t as i32, watermark);
        apply(&clock, &mut queue, &mut m);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_flushes_in_any_interleaving_give_the_same_events(
        cuts in prop::collection::vec(prop::collection::vec(0usize..1_000, 0..40), TASKS),
        order in prop::collection::vec(0usize..TASKS, 1..20),
        advance in any::<bool>(),
    ) {
        let all = changes(240);
        let one_flush = vec![Vec::new(); TASKS];
        let reference = run(&all, &one_flush, &[0, 1, 2], true);
        prop_assert!(reference
            .drift_events
            .iter()
            .any(|e| e.detector == "accuracy_drop" && e.state == DriftState::Drift));
        prop_assert_eq!(reference.retrain_events.len(), 1);
        let got = run(&all, &cuts, &order, advance);
        prop_assert_eq!(got, reference);
    }
}

#[test]
fn labels_long_after_the_data_do_not_run_a_cooldown_out() {
    let all = changes(240);
    let mut m = Monitor::new(config()).unwrap();
    let mut queue = EpochQueue::new();
    for p in all {
        queue.push((), p);
    }
    let mut retrains = 0;
    while let Some(e) = queue.pop_ready(241 * MIN) {
        retrains += m
            .apply_epoch(e.partials.iter().map(|(_, p)| p), e.end, |_, _| {})
            .retrain_events
            .len();
    }
    assert_eq!(retrains, 1);
    // Sixteen days later, the late labels of the last predictions: outcomes of old buckets.
    let late_epoch = 240 + 16 * 24 * 60;
    let late: Vec<ModelPartial> = (0..TASKS as i32)
        .map(|task| partial("m", task, 239, late_epoch, 20, 20))
        .collect();
    let out = m.apply_epoch(late.iter(), (late_epoch + 1) * MIN, |_, r| {
        assert!(r.is_ok());
    });
    assert!(out.retrain_events.is_empty(), "{:?}", out.retrain_events);
    assert!(
        out.drift_events.iter().all(|e| e.detected_at <= 240 * MIN),
        "the model's time stays at its data: {:?}",
        out.drift_events
    );
}

/// The drifting model of [`changes`] whose label producer goes wrong at minute 100: from then
/// on, each task also reads 10 labels a minute off their key's partition, which never meet
/// their predictions and are accounted to the model with no version (as in
/// `join.misrouted = "account"`).
fn changes_with_misrouted_labels(minutes: i64) -> Vec<ModelPartial> {
    let mut out = Vec::new();
    for p in changes(minutes) {
        let t = p.bucket_start / MIN;
        let task = p.source_partition;
        out.push(p);
        if t >= 100 {
            let mut orphans = empty_partial("m", "", (t + 1) * MIN, MIN, task);
            orphans.epoch_start = Some((t + 1) * MIN);
            orphans.sequence = (t + 1) as u64;
            orphans.counters.labels = 10;
            orphans.counters.orphan_labels = 10;
            orphans.counters.misrouted_labels = 10;
            out.push(orphans);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn the_misrouted_inputs_event_is_the_same_under_any_flushes(
        cuts in prop::collection::vec(prop::collection::vec(0usize..1_000, 0..40), TASKS),
        order in prop::collection::vec(0usize..TASKS, 1..20),
        advance in any::<bool>(),
    ) {
        let all = changes_with_misrouted_labels(240);
        let one_flush = vec![Vec::new(); TASKS];
        let reference = run(&all, &one_flush, &[0, 1, 2], true);
        let misrouted: Vec<_> = reference
            .drift_events
            .iter()
            .filter(|e| e.detector == "misrouted_inputs")
            .collect();
        prop_assert!(misrouted
            .iter()
            .any(|e| e.state == DriftState::Drift && e.model_version == "v1"));
        // Advisory: the one retrain is the accuracy drop's, as without misrouted labels.
        prop_assert_eq!(reference.retrain_events.len(), 1);
        let got = run(&all, &cuts, &order, advance);
        prop_assert_eq!(got, reference);
    }
}
