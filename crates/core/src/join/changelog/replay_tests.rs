#![allow(clippy::unwrap_used)]
//! [`ChangelogReplay`] and sealed stores: a resumed or streamed task decides exactly as one
//! that never stopped.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;
use crate::join::{
    Actual, ColdError, ColdTier, Input, JoinEvent, LabelIn, MemoryColdTier, Predicted,
    PredictionIn, StoreCheckpoint, HOUR_MS,
};
use crate::TimestampMs;

const BASE: i64 = 1_750_000_000_000;

fn config() -> JoinConfig {
    JoinConfig {
        label_timeout_ms: HOUR_MS,
        orphan_timeout_ms: HOUR_MS,
        allowed_lateness_ms: 0,
        max_task_idle_ms: 0,
        idle_timeout_ms: i64::MAX / 4,
        label_timeout_overrides_ms: BTreeMap::from([("m1".to_string(), 2 * HOUR_MS)]),
    }
}

/// A cold tier the test keeps a handle on, so it outlives the task that sealed it.
#[derive(Debug, Clone, Default)]
struct Shared(Arc<Mutex<MemoryColdTier>>);

impl ColdTier for Shared {
    fn get(&mut self, key: RequestKey) -> Result<Option<EntryRecord>, ColdError> {
        self.0.lock().unwrap().get(key)
    }
    fn put(&mut self, entries: &[(RequestKey, EntryRecord, TimestampMs)]) -> Result<(), ColdError> {
        self.0.lock().unwrap().put(entries)
    }
    fn remove(&mut self, key: RequestKey, due: TimestampMs) -> Result<(), ColdError> {
        self.0.lock().unwrap().remove(key, due)
    }
    fn take_due(
        &mut self,
        before: TimestampMs,
        limit: usize,
        out: &mut Vec<(RequestKey, EntryRecord)>,
    ) -> Result<(), ColdError> {
        self.0.lock().unwrap().take_due(before, limit, out)
    }
    fn seal(&mut self, checkpoint: &StoreCheckpoint) -> Result<(), ColdError> {
        self.0.lock().unwrap().seal(checkpoint)
    }
}

/// (is label, request number, minutes after BASE, model 0/1).
type Step = (bool, u8, u16, u8);

fn push(task: &mut JoinTask, (is_label, req, minute, model): Step) {
    let key = RequestKey::from_request_id(format!("r{req}"));
    let time = BASE + i64::from(minute) * 60_000;
    let model = task.intern_model(&format!("m{model}"), "v1").unwrap();
    let class = task.intern_class(&format!("c{}", req % 3)).unwrap();
    if is_label {
        task.push_label(LabelIn {
            key,
            model_hint: Some(model),
            time,
            actual: Actual::Class(class),
        });
    } else {
        task.push_prediction(PredictionIn {
            key,
            model,
            time,
            predicted: Predicted::Class(class),
            score: Some(0.5),
        });
    }
}

fn run(task: &mut JoinTask, steps: &[Step], events: &mut Vec<JoinEvent>) {
    task.set_caught_up(Input::Predictions, true);
    task.set_caught_up(Input::Labels, true);
    for &s in steps {
        push(task, s);
        task.poll(0, &mut |e| events.push(e));
    }
}

fn tiered(tier: Shared) -> JoinTask {
    let mut t = JoinTask::new(config()).unwrap();
    t.set_cold_tier(Box::new(tier), 4);
    t
}

fn replay(task: JoinTask, log: &[ChangelogRecord]) -> JoinTask {
    let mut r = ChangelogReplay::new(task);
    for (k, v) in log {
        r.apply(k, v.as_deref()).unwrap();
    }
    r.finish().unwrap()
}

fn sorted(v: &[JoinEvent]) -> Vec<String> {
    let mut s: Vec<String> = v.iter().map(|e| format!("{e:?}")).collect();
    s.sort();
    s
}

proptest! {
    /// A task that seals its store at `seal`, while another owner goes on to `tail` and
    /// commits, then resumes from the sealed store and replays only the changelog after the
    /// seal, decides as one that ran straight through; and so does a task streamed from the
    /// whole changelog into a small hot table, and so does a standby handed over at the seal
    /// with another hot capacity, and so does the owner's own task given up at the seal to a
    /// standby that follows the changelog.
    #[test]
    fn resumed_and_streamed_tasks_continue_exactly(
        steps in proptest::collection::vec((any::<bool>(), 0u8..40, 0u16..600, 0u8..2), 1..200),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        hot in 2usize..64,
    ) {
        let (seal, tail) = {
            let (x, y) = (a.index(steps.len() + 1), b.index(steps.len() + 1));
            (x.min(y), x.max(y))
        };
        let mut straight = JoinTask::new(config()).unwrap();
        let mut expected = Vec::new();
        run(&mut straight, &steps, &mut expected);

        let mut got = Vec::new();
        let mut log = Vec::new();
        let store = Shared::default();
        let mut first = tiered(store.clone());
        first.track_changes();
        let mut cursor = ChangelogCursor::default();
        run(&mut first, &steps[..seal], &mut got);
        cursor.changes(&mut first, &mut log);
        let offset = log.len();
        // The same owner again, giving its task up to a standby instead of sealing it: its
        // records still queued (the next owner reads them again) and idle state forgotten.
        let mut adopted = tiered(Shared::default());
        adopted.track_changes();
        let mut adopted_cursor = ChangelogCursor::default();
        run(&mut adopted, &steps[..seal], &mut Vec::new());
        adopted_cursor.changes(&mut adopted, &mut Vec::new());
        adopted.forget_transient();
        first
            .seal_cold_tier(StoreCheckpoint { changelog_offset: offset as i64, ..Default::default() })
            .unwrap();
        drop(first);

        // Another owner, streamed from the whole changelog, runs on and commits.
        let mut other_events = Vec::new();
        let mut other = replay(tiered(Shared::default()), &log);
        let mut cursor = ChangelogCursor::after_restore(&other);
        run(&mut other, &steps[seal..tail], &mut other_events);
        cursor.changes(&mut other, &mut log);
        got.extend(other_events);
        drop(other);

        let checkpoint = store.0.lock().unwrap().sealed.clone().unwrap();
        prop_assert_eq!(checkpoint.changelog_offset, offset as i64);
        let resumed = JoinTask::resume(config(), &checkpoint, Box::new(store.clone()), 4).unwrap();
        let mut resumed = replay(resumed, &log[offset..]);
        let mut streamed = replay(tiered(Shared::default()), &log);
        // A standby that followed the changelog up to the seal with a small hot table, then
        // handed over with a larger one, replays the rest.
        let mut standby = ChangelogReplay::new(tiered(Shared::default()));
        for (k, v) in &log[..offset] {
            standby.apply(k, v.as_deref()).unwrap();
        }
        let mut handed = standby.suspend().unwrap();
        handed.set_hot_capacity(hot);
        let mut handed = replay(handed, &log[offset..]);
        adopted.set_hot_capacity(hot);
        let mut adopted = replay(adopted, &log[offset..]);
        let mut streamed_events = got.clone();
        let mut handed_events = got.clone();
        let mut adopted_events = got.clone();
        run(&mut resumed, &steps[tail..], &mut got);
        run(&mut streamed, &steps[tail..], &mut streamed_events);
        run(&mut handed, &steps[tail..], &mut handed_events);
        run(&mut adopted, &steps[tail..], &mut adopted_events);
        straight.sweep(&mut |e| expected.push(e));
        resumed.sweep(&mut |e| got.push(e));
        streamed.sweep(&mut |e| streamed_events.push(e));
        handed.sweep(&mut |e| handed_events.push(e));
        adopted.sweep(&mut |e| adopted_events.push(e));
        prop_assert_eq!(sorted(&got), sorted(&expected));
        prop_assert_eq!(sorted(&streamed_events), sorted(&expected));
        prop_assert_eq!(sorted(&handed_events), sorted(&expected));
        prop_assert_eq!(handed.buffer().len(), straight.buffer().len());
        prop_assert_eq!(sorted(&adopted_events), sorted(&expected));
        prop_assert_eq!(adopted.buffer().len(), straight.buffer().len());
        prop_assert_eq!(resumed.buffer().len(), straight.buffer().len());
    }
}

#[test]
fn a_store_sealed_under_other_timeouts_is_not_resumed() {
    let store = Shared::default();
    let mut t = tiered(store.clone());
    t.seal_cold_tier(StoreCheckpoint::default()).unwrap();
    let checkpoint = store.0.lock().unwrap().sealed.clone().unwrap();
    let mut other = config();
    other.label_timeout_ms += 1;
    assert!(JoinTask::resume(other, &checkpoint, Box::new(store.clone()), 4).is_err());
    assert!(JoinTask::resume(config(), &checkpoint, Box::new(store), 4).is_ok());
}

#[test]
fn replaying_a_model_id_out_of_order_fails() {
    let mut r = ChangelogReplay::new(JoinTask::new(config()).unwrap());
    let (k, v) = model_record(2, "m", "v");
    assert!(r.apply(&k, Some(&v)).is_err());
    let mut r = ChangelogReplay::new(JoinTask::new(config()).unwrap());
    let (k, v) = model_record(1, "m", "v");
    r.apply(&k, Some(&v)).unwrap();
    r.apply(&k, Some(&v)).unwrap();
    let (k, v) = model_record(1, "other", "v");
    assert!(r.apply(&k, Some(&v)).is_err());
}
