//! Unit tests of the join task, beside it.

use super::*;
use crate::join::{Actual, Predicted, RequestKey, HOUR_MS};

const BASE: i64 = 1_750_000_000_000;

fn key(n: u64) -> RequestKey {
    RequestKey::from_request_id(format!("req-{n}"))
}

struct Fixture {
    task: JoinTask,
    model: ModelVersionId,
    events: Vec<JoinEvent>,
}

impl Fixture {
    fn new(config: JoinConfig) -> Self {
        let mut task = JoinTask::new(config).unwrap();
        let model = task.intern_model("fraud", "v1").unwrap();
        Fixture {
            task,
            model,
            events: Vec::new(),
        }
    }

    fn pred(&mut self, n: u64, t: i64) {
        let model = self.model;
        self.task.push_prediction(PredictionIn {
            key: key(n),
            model,
            time: BASE + t,
            predicted: Predicted::Value(1.0),
            score: None,
        });
    }

    fn label(&mut self, n: u64, t: i64) {
        self.task.push_label(LabelIn {
            key: key(n),
            model_hint: None,
            time: BASE + t,
            actual: Actual::Value(2.0),
        });
    }

    fn poll(&mut self, now: i64) {
        let ev = &mut self.events;
        self.task.poll(now, &mut |e| ev.push(e));
    }

    fn drain(&mut self) {
        let ev = &mut self.events;
        self.task.drain(&mut |e| ev.push(e));
    }

    fn totals(&self) -> JoinCounters {
        self.task.total_counters()
    }
}

fn quick() -> JoinConfig {
    JoinConfig {
        label_timeout_ms: 1_000,
        orphan_timeout_ms: 1_000,
        allowed_lateness_ms: 0,
        max_task_idle_ms: 0,
        idle_timeout_ms: 500,
        ..JoinConfig::default()
    }
}

fn assert_accounting(c: &JoinCounters) {
    assert_eq!(
        c.predictions,
        c.matched + c.expired_unlabeled + c.duplicate_predictions,
        "{c:?}"
    );
    assert_eq!(
        c.labels,
        c.matched + c.orphan_labels + c.duplicate_labels + c.late_labels,
        "{c:?}"
    );
}

#[test]
fn merges_in_timestamp_order() {
    let mut f = Fixture::new(quick());
    // Label for 1 queued before its prediction; the prediction is older and goes first.
    f.label(1, 300);
    f.pred(1, 100);
    f.pred(2, 200);
    f.poll(0);
    // Predictions 100 and 200 go before the label at 300; then the prediction queue is
    // empty and not caught up, so the label waits.
    assert_eq!(f.task.queued(), (0, 1));
    f.task.set_caught_up(Input::Predictions, true);
    f.poll(0);
    assert_eq!(f.task.queued(), (0, 0));
    assert_eq!(f.totals().matched, 1);
}

#[test]
fn waits_for_an_input_that_is_not_caught_up_however_long_it_takes() {
    let mut f = Fixture::new(JoinConfig {
        max_task_idle_ms: 100,
        ..quick()
    });
    f.pred(1, 0);
    f.poll(1_000);
    assert_eq!(f.task.queued(), (1, 0), "waits for the label input");
    // Records are on the broker: no processing-time bound lets the prediction go first.
    f.poll(1_000 + 3_600_000);
    assert_eq!(f.task.queued(), (1, 0));
    // Read to its end, the label input is waited for max_task_idle_ms more (for producers).
    f.task.set_caught_up(Input::Labels, true);
    f.poll(2_000_000);
    assert_eq!(f.task.queued(), (1, 0));
    f.poll(2_000_099);
    assert_eq!(f.task.queued(), (1, 0));
    f.poll(2_000_100);
    assert_eq!(f.task.queued(), (0, 0), "max_task_idle_ms elapsed");
}

#[test]
fn draining_does_not_wait_for_producers() {
    let mut f = Fixture::new(JoinConfig {
        max_task_idle_ms: 100,
        ..quick()
    });
    f.pred(1, 0);
    f.drain();
    assert_eq!(f.task.queued(), (0, 0));
    assert_eq!(f.totals().expired_unlabeled, 1);
}

#[test]
fn with_no_idle_time_a_caught_up_empty_input_is_not_waited_for() {
    let mut f = Fixture::new(quick());
    f.pred(1, 0);
    f.poll(1_000);
    assert_eq!(f.task.queued(), (1, 0));
    f.task.set_caught_up(Input::Labels, true);
    f.poll(1_000);
    assert_eq!(f.task.queued(), (0, 0));
}

#[test]
fn an_input_that_falls_behind_again_is_waited_for_again() {
    let mut f = Fixture::new(quick());
    f.task.set_caught_up(Input::Labels, true);
    f.pred(1, 0);
    f.poll(0);
    f.poll(100);
    assert_eq!(f.task.queued(), (0, 0));
    // New labels are on the broker: the next prediction waits for them.
    f.task.set_caught_up(Input::Labels, false);
    f.pred(2, 10);
    f.poll(10_000);
    assert_eq!(f.task.queued(), (1, 0));
    f.label(2, 5);
    f.poll(10_000);
    assert_eq!(
        f.task.queued(),
        (1, 0),
        "the label at 5 goes first, then the queue is empty"
    );
}

#[test]
fn watermark_is_min_of_inputs_minus_lateness_and_never_decreases() {
    let cfg = JoinConfig {
        allowed_lateness_ms: 50,
        ..quick()
    };
    let mut f = Fixture::new(cfg);
    f.task.set_caught_up(Input::Predictions, true);
    f.task.set_caught_up(Input::Labels, true);
    f.pred(1, 1_000);
    f.poll(0);
    assert_eq!(f.task.watermark(), i64::MIN, "no label progress yet");
    f.label(9, 400);
    f.poll(0);
    assert_eq!(f.task.watermark(), BASE + 400 - 50);
    f.label(8, 2_000);
    f.poll(0);
    assert_eq!(f.task.watermark(), BASE + 1_000 - 50);
    // An out-of-order older label does not move it back.
    f.label(7, 0);
    f.poll(0);
    assert_eq!(f.task.watermark(), BASE + 1_000 - 50);
    f.task.advance_to(BASE, &mut |_| {});
    assert_eq!(f.task.watermark(), BASE + 1_000 - 50);
}

#[test]
fn idle_caught_up_input_advances_by_processing_time() {
    let mut f = Fixture::new(quick());
    f.task.set_caught_up(Input::Predictions, true);
    f.task.set_caught_up(Input::Labels, true);
    f.pred(1, 0);
    f.poll(BASE);
    assert_eq!(f.totals().expired_unlabeled, 0);
    // The label input has been silent for longer than idle_timeout: it counts as
    // now − idle_timeout, but the active prediction input holds the watermark.
    f.pred(2, 100);
    f.poll(BASE + 10_000);
    assert_eq!(f.task.watermark(), BASE + 100);
    assert_eq!(f.totals().expired_unlabeled, 0);
    // The prediction input goes quiet too: the watermark follows processing time and
    // both predictions expire.
    f.poll(BASE + 10_000 + 500);
    assert_eq!(f.task.watermark(), BASE + 10_000);
    assert_eq!(f.totals().expired_unlabeled, 2);
    assert_accounting(&f.totals());
}

#[test]
fn idle_time_restarts_when_an_input_is_caught_up_again() {
    let mut f = Fixture::new(quick());
    f.task.set_caught_up(Input::Predictions, true);
    f.task.set_caught_up(Input::Labels, true);
    f.pred(1, 0);
    f.poll(BASE);
    // An outage: the caller cannot tell whether the inputs are caught up.
    f.task.set_caught_up(Input::Predictions, false);
    f.task.set_caught_up(Input::Labels, false);
    f.poll(BASE + 100 * HOUR_MS);
    // Back: caught up again, but the quiet stretch starts now, not before the outage.
    f.task.set_caught_up(Input::Predictions, true);
    f.task.set_caught_up(Input::Labels, true);
    f.poll(BASE + 100 * HOUR_MS + 1);
    assert_eq!(
        f.totals().expired_unlabeled,
        0,
        "no jump right after the outage"
    );
    f.poll(BASE + 100 * HOUR_MS + 1 + 60_000);
    assert_eq!(
        f.totals().expired_unlabeled,
        1,
        "a real quiet stretch still advances"
    );
}

#[test]
fn not_caught_up_input_never_idles_the_watermark_forward() {
    let mut f = Fixture::new(quick());
    f.task.set_caught_up(Input::Predictions, true);
    f.pred(1, 0);
    f.poll(BASE);
    f.poll(BASE + 100 * HOUR_MS);
    assert_eq!(f.task.watermark(), i64::MIN);
    assert_eq!(f.totals().expired_unlabeled, 0);
}

/// All predictions queued first, all labels afterwards, the label input not caught up:
/// nothing expires before the labels are processed, and the counts equal an interleaved
/// feed of the same records.
#[test]
fn catch_up_backlog_matches_interleaved_feed() {
    let n = 200u64;
    let cfg = quick();
    let delay = |i: u64| (i % 7) as i64 * 100; // all within the 1 s timeout
                                               // Predictions 10 s apart: far more than the timeout, so any premature watermark
                                               // advance would expire them.
    let pt = |i: u64| i as i64 * 10_000;

    let mut backlog = Fixture::new(cfg.clone());
    for i in 0..n {
        backlog.pred(i, pt(i));
    }
    backlog.task.set_caught_up(Input::Predictions, true);
    // Processing time goes on while the label input is still being read.
    for step in 0..50 {
        backlog.poll(BASE + step * 60_000);
        assert_eq!(backlog.totals().expired_unlabeled, 0, "step {step}");
    }
    for i in 0..n {
        if i % 10 != 0 {
            backlog.label(i, pt(i) + delay(i));
        }
    }
    backlog.task.set_caught_up(Input::Labels, true);
    backlog.poll(BASE + 50 * 60_000);
    backlog.drain();

    let mut inter = Fixture::new(cfg);
    inter.task.set_caught_up(Input::Predictions, true);
    inter.task.set_caught_up(Input::Labels, true);
    for i in 0..n {
        inter.pred(i, pt(i));
        if i % 10 != 0 {
            inter.label(i, pt(i) + delay(i));
        }
        inter.poll(0);
    }
    inter.drain();

    assert_eq!(backlog.totals(), inter.totals());
    assert_eq!(backlog.totals().matched, n - n / 10);
    assert_eq!(backlog.totals().expired_unlabeled, n / 10);
    assert_accounting(&backlog.totals());
}

/// Why the min-watermark matters: treat the label input as caught up and idle while its
/// backlog is in fact unread, and the predictions expire before their labels arrive.
#[test]
fn naive_order_would_expire_the_backlog() {
    let n = 50u64;
    let mut f = Fixture::new(quick());
    for i in 0..n {
        f.pred(i, i as i64 * 10_000);
    }
    f.task.set_caught_up(Input::Predictions, true);
    f.task.set_caught_up(Input::Labels, true);
    f.poll(BASE);
    f.poll(BASE + n as i64 * 10_000 + 10_000);
    for i in 0..n {
        f.label(i, i as i64 * 10_000 + 100);
    }
    f.poll(BASE + n as i64 * 10_000 + 10_000);
    f.drain();
    let c = f.totals();
    // The predictions expired before their labels were read; the labels then come so far
    // behind the watermark that even the tombstones are gone: late or orphan, not matched.
    assert_eq!(c.expired_unlabeled, n, "{c:?}");
    assert_eq!(c.late_labels + c.orphan_labels, n, "{c:?}");
    assert!(c.matched < n, "{c:?}");
    assert_accounting(&c);
}

#[test]
fn per_model_override_and_unknown_model_for_orphans() {
    let mut cfg = quick();
    cfg.label_timeout_overrides_ms.insert("slow".into(), 5_000);
    let mut f = Fixture::new(cfg);
    let slow = f.task.intern_model("slow", "v3").unwrap();
    let fast = f.model;
    f.task.set_caught_up(Input::Predictions, true);
    f.task.set_caught_up(Input::Labels, true);
    for (n, model) in [(1, slow), (2, fast)] {
        f.task.push_prediction(PredictionIn {
            key: key(n),
            model,
            time: BASE,
            predicted: Predicted::None,
            score: None,
        });
    }
    f.label(1, 3_000);
    f.label(2, 3_000);
    f.label(3, 3_000); // no prediction: orphan of the unknown model
    f.poll(0);
    f.drain();
    assert_eq!(f.task.counters(slow).matched, 1);
    assert_eq!(f.task.counters(fast).late_labels, 1);
    assert_eq!(f.task.counters(fast).expired_unlabeled, 1);
    assert_eq!(f.task.counters(ModelVersionId::UNKNOWN).orphan_labels, 1);
    for (_, c) in f.task.all_counters() {
        assert_accounting(&c);
    }
}

#[test]
fn out_of_range_time_is_dead_lettered_and_counted() {
    let mut f = Fixture::new(quick());
    f.task.set_caught_up(Input::Labels, true);
    f.pred(1, 0);
    f.pred(2, 1i64 << 40);
    f.poll(0);
    let rejected = f
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                JoinEvent::Rejected {
                    error: JoinError::TimeOutOfRange { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(rejected, 1);
    assert_eq!(f.task.counters(f.model).dead_lettered, 1);
}

/// Coverage needs every prediction of a bucket, not only the resolved ones: a prediction
/// is counted in `received_predictions` when processed, once, and never when it is a
/// duplicate or rejected.
#[test]
fn received_counts_each_prediction_taken_in_once_resolved_or_not() {
    let mut f = Fixture::new(quick());
    f.task.set_caught_up(Input::Predictions, true);
    f.task.set_caught_up(Input::Labels, true);
    f.pred(1, 0);
    f.pred(1, 10); // duplicate
    f.pred(2, 20);
    f.pred(3, 1i64 << 40); // rejected: out of range
    assert_eq!(f.totals().received_predictions, 0, "queued is not received");
    f.poll(0);
    let c = f.totals();
    assert_eq!(c.received_predictions, 2, "{c:?}");
    assert_eq!(c.matched + c.expired_unlabeled, 0, "none resolved yet");
    let received: Vec<_> = f
        .events
        .iter()
        .filter_map(|e| match e {
            JoinEvent::Received {
                key,
                prediction_time,
                ..
            } => Some((*key, *prediction_time)),
            _ => None,
        })
        .collect();
    assert_eq!(received, vec![(key(1), BASE), (key(2), BASE + 20)]);
    // A label that comes before its prediction: counted with the prediction, once.
    f.label(4, 30);
    f.pred(4, 40);
    f.label(1, 50);
    f.poll(0);
    f.drain();
    let c = f.totals();
    assert_eq!(c.received_predictions, 3, "{c:?}");
    assert_eq!(c.matched, 2, "{c:?}");
    assert_eq!(
        c.received_predictions,
        c.matched + c.expired_unlabeled,
        "all resolved: {c:?}"
    );
    assert_eq!(c.duplicate_predictions, 1);
    assert_eq!(c.dead_lettered, 1);
    assert_eq!(
        c.predictions, 5,
        "every prediction still ends in one outcome"
    );
}

#[test]
fn invalid_config_is_refused() {
    let cfg = JoinConfig {
        idle_timeout_ms: -5,
        ..JoinConfig::default()
    };
    assert!(matches!(
        JoinTask::new(cfg),
        Err(JoinError::InvalidConfig(_))
    ));
}

#[test]
fn a_marked_input_is_announced_misrouted_when_processed_and_still_ends_once() {
    let mut f = Fixture::new(quick());
    let hint = f.task.intern_model_hint("fraud").unwrap();
    f.pred(1, 100);
    assert!(f.task.mark_misrouted(Input::Predictions));
    f.pred(2, 150);
    f.task.push_label(LabelIn {
        key: key(3),
        model_hint: Some(hint),
        time: BASE + 200,
        actual: Actual::Value(2.0),
    });
    assert!(f.task.mark_misrouted(Input::Labels));
    f.label(1, 300);
    f.task.set_caught_up(Input::Predictions, true);
    f.task.set_caught_up(Input::Labels, true);
    f.drain();
    let misrouted: Vec<_> = f
        .events
        .iter()
        .filter(|e| matches!(e, JoinEvent::Misrouted { .. }))
        .cloned()
        .collect();
    assert_eq!(
        misrouted,
        vec![
            JoinEvent::Misrouted {
                input: Input::Predictions,
                model: f.model,
                time: BASE + 100,
            },
            JoinEvent::Misrouted {
                input: Input::Labels,
                model: hint,
                time: BASE + 200,
            },
        ]
    );
    // Counted apart: the prediction still matched, the label still became an orphan.
    let (p, l) = (f.task.counters(f.model), f.task.counters(hint));
    assert_eq!((p.misrouted_predictions, p.misrouted_labels), (1, 0));
    assert_eq!((l.misrouted_predictions, l.misrouted_labels), (0, 1));
    assert_eq!((p.matched, l.orphan_labels), (1, 1));
    let t = f.totals();
    assert_eq!((t.misrouted_predictions, t.misrouted_labels), (1, 1));
    assert_accounting(&t);
    // Nothing queued: nothing to mark.
    assert!(!f.task.mark_misrouted(Input::Labels));
}

#[test]
fn a_task_given_up_forgets_its_queue_and_idle_state_but_not_its_watermark() {
    let mut f = Fixture::new(quick());
    f.task.set_caught_up(Input::Predictions, true);
    f.task.set_caught_up(Input::Labels, true);
    f.pred(1, 0);
    f.pred(2, 100);
    f.poll(BASE);
    // Pushed, not processed: not committed, so read again by the next owner.
    f.label(3, 300);
    assert_eq!(f.task.queued(), (0, 1));
    let watermark = f.task.watermark();
    f.task.forget_transient();
    assert_eq!(f.task.queued(), (0, 0));
    assert_eq!(f.task.total_counters(), JoinCounters::default());
    assert_eq!(f.task.watermark(), watermark);
    // Long after, the next owner's first poll: nothing read yet, so neither input counts as
    // idle and the watermark stays where the records put it.
    f.poll(BASE + 1_000_000);
    assert_eq!(f.task.watermark(), watermark);
    assert_eq!(f.task.buffer().len(), 2);
}
