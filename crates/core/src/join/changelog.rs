//! The join task's changelog format: how a task's state is written to a compacted topic and
//! read back.
//!
//! A task's state is its buffer entries, its interner (ids the entries refer to) and its
//! watermark/progress. Each is one record kind, keyed so that compaction keeps exactly the
//! latest state of each:
//!
//! | key                                   | value                                      |
//! |---------------------------------------|--------------------------------------------|
//! | `01 'E'` + request key (16 B)         | entry: time i64, model u16, flags u16, payload u64 (20 B); null = gone |
//! | `01 'M'` + model id (u16)             | `model_id` `\0` `model_version` (UTF-8)     |
//! | `01 'C'` + class id (u32)             | class label (UTF-8)                        |
//! | `01 'W'`                              | watermark, prediction and label progress (3 × i64) |
//!
//! Integers are big-endian. The leading `01` is the format version. An entry record is 18 +
//! 20 bytes before Kafka's own framing. Ids are written once, when first handed out; entries
//! and the checkpoint at every commit for what changed since the previous one.
//!
//! [`ChangelogRestore`] folds records in log order (later wins, null deletes) and builds the
//! task. Malformed records fail the restore with [`ChangelogError`]: guessing would break the
//! exact accounting the changelog exists for.

use std::collections::BTreeMap;

use hashbrown::HashMap;

use super::{
    EntryChanges, EntryRecord, Interner, JoinConfig, JoinError, JoinTask, KeyHashBuilder,
    RequestKey, TaskCheckpoint,
};

const VERSION: u8 = 1;
const ENTRY: u8 = b'E';
const MODEL: u8 = b'M';
const CLASS: u8 = b'C';
const CHECKPOINT: u8 = b'W';

/// Length of an entry value.
pub const ENTRY_VALUE_LEN: usize = 20;

/// A changelog record that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangelogError {
    #[error("malformed changelog record: {0}")]
    Malformed(&'static str),
    #[error("changelog names model ids up to {max} but id {missing} is missing")]
    MissingModel { missing: u16, max: u16 },
    #[error("changelog names class ids up to {max} but id {missing} is missing")]
    MissingClass { missing: u32, max: u32 },
    #[error("changelog state rejected by the join: {0}")]
    Join(#[from] JoinError),
    #[error("{0}")]
    Store(super::ColdError),
}

/// Key of a buffer entry.
pub fn entry_key(key: RequestKey) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[0] = VERSION;
    k[1] = ENTRY;
    k[2..10].copy_from_slice(&key.hi.to_be_bytes());
    k[10..18].copy_from_slice(&key.lo.to_be_bytes());
    k
}

/// Value of a buffer entry.
pub fn entry_value(e: &EntryRecord) -> [u8; ENTRY_VALUE_LEN] {
    let mut v = [0u8; ENTRY_VALUE_LEN];
    v[0..8].copy_from_slice(&e.time.to_be_bytes());
    v[8..10].copy_from_slice(&e.model.to_be_bytes());
    v[10..12].copy_from_slice(&e.flags.to_be_bytes());
    v[12..20].copy_from_slice(&e.payload.to_be_bytes());
    v
}

/// Key and value of an interned model version.
pub fn model_record(id: u16, model_id: &str, version: &str) -> ([u8; 4], Vec<u8>) {
    let [a, b] = id.to_be_bytes();
    let mut v = Vec::with_capacity(model_id.len() + 1 + version.len());
    v.extend_from_slice(model_id.as_bytes());
    v.push(0);
    v.extend_from_slice(version.as_bytes());
    ([VERSION, MODEL, a, b], v)
}

/// Key and value of an interned class label.
pub fn class_record(id: u32, label: &str) -> ([u8; 6], Vec<u8>) {
    let [a, b, c, d] = id.to_be_bytes();
    ([VERSION, CLASS, a, b, c, d], label.as_bytes().to_vec())
}

/// Key and value of the task checkpoint.
pub fn checkpoint_record(c: &TaskCheckpoint) -> ([u8; 2], [u8; 24]) {
    let mut v = [0u8; 24];
    v[0..8].copy_from_slice(&c.watermark.to_be_bytes());
    v[8..16].copy_from_slice(&c.prediction_progress.to_be_bytes());
    v[16..24].copy_from_slice(&c.label_progress.to_be_bytes());
    ([VERSION, CHECKPOINT], v)
}

fn be_u64(b: &[u8]) -> Option<u64> {
    b.try_into().ok().map(u64::from_be_bytes)
}

fn be_i64(b: &[u8]) -> Option<i64> {
    b.try_into().ok().map(i64::from_be_bytes)
}

fn be_u16(b: &[u8]) -> Option<u16> {
    b.try_into().ok().map(u16::from_be_bytes)
}

fn be_u32(b: &[u8]) -> Option<u32> {
    b.try_into().ok().map(u32::from_be_bytes)
}

fn decode_entry(v: &[u8]) -> Option<EntryRecord> {
    if v.len() != ENTRY_VALUE_LEN {
        return None;
    }
    Some(EntryRecord {
        time: be_i64(v.get(0..8)?)?,
        model: be_u16(v.get(8..10)?)?,
        flags: be_u16(v.get(10..12)?)?,
        payload: be_u64(v.get(12..20)?)?,
    })
}

fn utf8(v: &[u8]) -> Result<String, ChangelogError> {
    String::from_utf8(v.to_vec()).map_err(|_| ChangelogError::Malformed("name is not UTF-8"))
}

/// One changelog record, read.
enum Record {
    Entry(RequestKey, Option<EntryRecord>),
    Model(u16, String, String),
    Class(u32, String),
    Checkpoint(TaskCheckpoint),
}

/// Reads one record (`value` `None` is a tombstone).
fn parse(key: &[u8], value: Option<&[u8]>) -> Result<Record, ChangelogError> {
    let (&version, rest) = key
        .split_first()
        .ok_or(ChangelogError::Malformed("empty key"))?;
    if version != VERSION {
        return Err(ChangelogError::Malformed("unknown format version"));
    }
    let (&kind, id) = rest
        .split_first()
        .ok_or(ChangelogError::Malformed("key without kind"))?;
    match kind {
        ENTRY => {
            let key = match (id.get(0..8).and_then(be_u64), id.get(8..).and_then(be_u64)) {
                (Some(hi), Some(lo)) => RequestKey::from_parts(hi, lo),
                _ => return Err(ChangelogError::Malformed("entry key length")),
            };
            let entry = match value {
                None => None,
                Some(v) => Some(
                    decode_entry(v)
                        .filter(EntryRecord::is_valid)
                        .ok_or(ChangelogError::Malformed("entry value"))?,
                ),
            };
            Ok(Record::Entry(key, entry))
        }
        MODEL => {
            let id = be_u16(id).ok_or(ChangelogError::Malformed("model key length"))?;
            let v = value.ok_or(ChangelogError::Malformed("model without name"))?;
            let split = v
                .iter()
                .position(|&b| b == 0)
                .ok_or(ChangelogError::Malformed("model name without separator"))?;
            let (m, rest) = v.split_at(split);
            let version = rest.get(1..).unwrap_or_default();
            Ok(Record::Model(id, utf8(m)?, utf8(version)?))
        }
        CLASS => {
            let id = be_u32(id).ok_or(ChangelogError::Malformed("class key length"))?;
            let v = value.ok_or(ChangelogError::Malformed("class without name"))?;
            Ok(Record::Class(id, utf8(v)?))
        }
        CHECKPOINT => {
            let v = value.ok_or(ChangelogError::Malformed("checkpoint without value"))?;
            if v.len() != 24 {
                return Err(ChangelogError::Malformed("checkpoint length"));
            }
            let field = |r: std::ops::Range<usize>| {
                v.get(r)
                    .and_then(be_i64)
                    .ok_or(ChangelogError::Malformed("checkpoint length"))
            };
            Ok(Record::Checkpoint(TaskCheckpoint {
                watermark: field(0..8)?,
                prediction_progress: field(8..16)?,
                label_progress: field(16..24)?,
            }))
        }
        _ => Err(ChangelogError::Malformed("unknown record kind")),
    }
}

/// A task's state being read back from its changelog partition.
#[derive(Debug, Default)]
pub struct ChangelogRestore {
    entries: HashMap<RequestKey, EntryRecord, KeyHashBuilder>,
    models: BTreeMap<u16, (String, String)>,
    classes: BTreeMap<u32, String>,
    checkpoint: TaskCheckpoint,
    records: u64,
    bytes: u64,
}

impl ChangelogRestore {
    /// Nothing read yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one record (`value` `None` is a tombstone).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), ChangelogError> {
        self.records += 1;
        self.bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
        match parse(key, value)? {
            Record::Entry(key, None) => {
                self.entries.remove(&key);
            }
            Record::Entry(key, Some(e)) => {
                self.entries.insert(key, e);
            }
            Record::Model(id, m, v) => {
                self.models.insert(id, (m, v));
            }
            Record::Class(id, c) => {
                self.classes.insert(id, c);
            }
            Record::Checkpoint(c) => self.checkpoint = c,
        }
        Ok(())
    }

    /// Records applied so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Key and value bytes applied so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Live buffer entries so far.
    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    /// Builds the task. Ids must be dense (model ids from 1, class ids from 0).
    pub fn into_task(self, config: JoinConfig) -> Result<JoinTask, ChangelogError> {
        self.into_task_tiered(config, None)
    }

    /// [`into_task`](Self::into_task) into a buffer with a cold tier (`(tier, hot_capacity)`,
    /// see [`JoinTask::restore_tiered`]): the entries beyond the hot capacity go cold as they
    /// are restored.
    pub fn into_task_tiered(
        self,
        config: JoinConfig,
        cold: Option<(Box<dyn super::ColdTier>, usize)>,
    ) -> Result<JoinTask, ChangelogError> {
        let mut models = Vec::with_capacity(self.models.len());
        for (i, (id, m)) in self.models.into_iter().enumerate() {
            let expected = u16::try_from(i + 1).unwrap_or(u16::MAX);
            if id != expected {
                return Err(ChangelogError::MissingModel {
                    missing: expected,
                    max: id,
                });
            }
            models.push(m);
        }
        let mut classes = Vec::with_capacity(self.classes.len());
        for (i, (id, c)) in self.classes.into_iter().enumerate() {
            let expected = u32::try_from(i).unwrap_or(u32::MAX);
            if id != expected {
                return Err(ChangelogError::MissingClass {
                    missing: expected,
                    max: id,
                });
            }
            classes.push(c);
        }
        let interner = Interner::restore(models, classes)?;
        let mut task =
            JoinTask::restore_tiered(config, interner, self.checkpoint, self.entries, cold)?;
        task.track_changes();
        Ok(task)
    }
}

/// What a task has written to its changelog so far, to write only what changed at the next
/// commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangelogCursor {
    /// Model ids below this are in the changelog.
    pub models_written: usize,
    /// Class ids below this are in the changelog.
    pub classes_written: usize,
    /// The checkpoint last written.
    pub checkpoint: Option<TaskCheckpoint>,
}

/// One record to write: key and value (`None`: tombstone).
pub type ChangelogRecord = (Vec<u8>, Option<Vec<u8>>);

impl ChangelogCursor {
    /// A cursor for a task just restored: everything it holds is already in the changelog.
    pub fn after_restore(task: &JoinTask) -> Self {
        ChangelogCursor {
            models_written: task.interner().model_count(),
            classes_written: task.interner().class_count(),
            checkpoint: Some(task.checkpoint()),
        }
    }

    /// The records that bring the changelog up to `task`'s current state, in the order to
    /// write them (names before the entries that use them), and advances the cursor.
    /// `task` must track changes.
    pub fn changes(&mut self, task: &mut JoinTask, out: &mut Vec<ChangelogRecord>) {
        self.delta(task).write_into(out);
    }

    /// What changed since the previous call, taken cheaply (new names are few; entry changes
    /// are swapped out, not sorted or encoded): [`ChangelogDelta::write_into`] does the rest,
    /// off the stage's loop. Advances the cursor. `task` must track changes.
    pub fn delta(&mut self, task: &mut JoinTask) -> ChangelogDelta {
        let mut names = Vec::new();
        let interner = task.interner();
        // Model id 0 is the reserved unknown model: never written.
        for i in self.models_written.max(1)..interner.model_count() {
            let Ok(id) = u16::try_from(i) else { break };
            if let Some((m, v)) = interner.model(super::ModelVersionId(id)) {
                let (k, v) = model_record(id, m, v);
                names.push((k.to_vec(), Some(v)));
            }
        }
        self.models_written = interner.model_count();
        for i in self.classes_written..interner.class_count() {
            let Ok(id) = u32::try_from(i) else { break };
            if let Some(c) = interner.class(super::ClassId(id)) {
                let (k, v) = class_record(id, c);
                names.push((k.to_vec(), Some(v)));
            }
        }
        self.classes_written = interner.class_count();
        let entries = task.take_changes();
        let mut checkpoint = None;
        let current = task.checkpoint();
        if self.checkpoint != Some(current) {
            let (k, v) = checkpoint_record(&current);
            checkpoint = Some((k.to_vec(), Some(v.to_vec())));
            self.checkpoint = Some(current);
        }
        ChangelogDelta {
            names,
            entries,
            checkpoint,
        }
    }
}

/// What one commit writes for a task: names handed out, entry changes, and the checkpoint
/// when it moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangelogDelta {
    names: Vec<ChangelogRecord>,
    entries: EntryChanges,
    checkpoint: Option<ChangelogRecord>,
}

impl ChangelogDelta {
    /// Appends the records to write, in order: names, then the latest state of each changed
    /// entry (a key changed several times is written once), then the checkpoint.
    pub fn write_into(mut self, out: &mut Vec<ChangelogRecord>) {
        self.for_each_record(|k, v| out.push((k.to_vec(), v.map(<[u8]>::to_vec))));
    }

    /// Hands each record to `write` (key, value; `None` = tombstone) in the order of
    /// [`write_into`](Self::write_into), without allocating one per record: a commit writes
    /// about one record per input. Handing them out again gives the same records (a commit
    /// retried in a new transaction).
    pub fn for_each_record(&mut self, mut write: impl FnMut(&[u8], Option<&[u8]>)) -> usize {
        let mut n = 0;
        for (k, v) in &self.names {
            write(k, v.as_deref());
            n += 1;
        }
        self.entries.settle();
        for (key, state) in self.entries.settled() {
            let value = state.map(|e| entry_value(&e));
            write(&entry_key(*key), value.as_ref().map(|v| &v[..]));
            n += 1;
        }
        if let Some((k, v)) = &self.checkpoint {
            write(k, v.as_deref());
            n += 1;
        }
        n
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::join::{Actual, JoinEvent, LabelIn, Predicted, PredictionIn, HOUR_MS};
    use proptest::prelude::*;

    const BASE: i64 = 1_750_000_000_000;

    fn config() -> JoinConfig {
        JoinConfig {
            label_timeout_ms: HOUR_MS,
            orphan_timeout_ms: HOUR_MS,
            allowed_lateness_ms: 0,
            max_task_idle_ms: 0,
            idle_timeout_ms: i64::MAX / 4,
            label_timeout_overrides_ms: BTreeMap::new(),
        }
    }

    /// One step of a random workload: (is label, request number, minutes after BASE, class).
    type Step = (bool, u8, u16, u8);

    fn push(task: &mut JoinTask, (is_label, req, minute, class): Step) {
        let key = RequestKey::from_request_id(format!("r{req}"));
        let time = BASE + i64::from(minute) * 60_000;
        let model = task.intern_model("m", "v1").unwrap();
        let class = task.intern_class(&format!("c{class}")).unwrap();
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
        task.set_caught_up(crate::join::Input::Predictions, true);
        task.set_caught_up(crate::join::Input::Labels, true);
        for &s in steps {
            push(task, s);
            task.poll(0, &mut |e| events.push(e));
        }
    }

    fn restore_from(log: &[ChangelogRecord]) -> JoinTask {
        let mut r = ChangelogRestore::new();
        for (k, v) in log {
            r.apply(k, v.as_deref()).unwrap();
        }
        r.into_task(config()).unwrap()
    }

    proptest! {
        /// Running a workload straight through emits exactly the events of running it with a
        /// changelog commit, a crash (the task dropped) and a restore at any point in between.
        #[test]
        fn restore_continues_exactly(
            steps in proptest::collection::vec((any::<bool>(), 0u8..40, 0u16..400, 0u8..3), 1..200),
            cut in any::<prop::sample::Index>(),
        ) {
            let cut = cut.index(steps.len());
            let mut straight = JoinTask::new(config()).unwrap();
            let mut expected = Vec::new();
            run(&mut straight, &steps, &mut expected);

            let mut first = JoinTask::new(config()).unwrap();
            first.track_changes();
            let mut cursor = ChangelogCursor::default();
            let mut log = Vec::new();
            let mut got = Vec::new();
            run(&mut first, &steps[..cut], &mut got);
            cursor.changes(&mut first, &mut log);
            drop(first);
            let mut second = restore_from(&log);
            run(&mut second, &steps[cut..], &mut got);
            // A sweep may run at another moment after a restore, which reorders expiries (or
            // leaves one for a later sweep) but never changes a decision: apply what is due on
            // both sides and compare the decisions as multisets.
            straight.sweep(&mut |e| expected.push(e));
            second.sweep(&mut |e| got.push(e));
            let sorted = |v: &[JoinEvent]| {
                let mut s: Vec<String> = v.iter().map(|e| format!("{e:?}")).collect();
                s.sort();
                s
            };
            prop_assert_eq!(sorted(&got), sorted(&expected));
        }
    }

    #[test]
    fn compaction_keeps_the_same_state() {
        let steps: Vec<Step> = (0..60u8)
            .map(|i| (i % 3 == 0, i % 20, u16::from(i) * 7, i % 2))
            .collect();
        let mut task = JoinTask::new(config()).unwrap();
        task.track_changes();
        let mut cursor = ChangelogCursor::default();
        let mut log = Vec::new();
        let mut events = Vec::new();
        for chunk in steps.chunks(7) {
            run(&mut task, chunk, &mut events);
            cursor.changes(&mut task, &mut log);
        }
        // Compaction: the latest record per key, nulls dropped.
        let mut latest: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for (k, v) in &log {
            latest.insert(k.clone(), v.clone());
        }
        let compacted: Vec<ChangelogRecord> =
            latest.into_iter().filter(|(_, v)| v.is_some()).collect();
        let a = restore_from(&log);
        let b = restore_from(&compacted);
        assert_eq!(a.buffer().len(), task.buffer().len());
        assert_eq!(b.buffer().len(), task.buffer().len());
        assert_eq!(a.checkpoint(), task.checkpoint());
        assert_eq!(b.checkpoint(), task.checkpoint());
    }

    #[test]
    fn a_delta_handed_out_again_gives_the_same_records() {
        // A commit refused for a stale group generation is retried in a new transaction with
        // the same batch: it must write exactly what it wrote the first time.
        let steps: Vec<Step> = (0..90u8)
            .map(|i| (i % 3 == 0, i % 25, u16::from(i) * 5, i % 2))
            .collect();
        let mut task = JoinTask::new(config()).unwrap();
        task.track_changes();
        let mut cursor = ChangelogCursor::default();
        let mut events = Vec::new();
        run(&mut task, &steps, &mut events);
        let mut delta = cursor.delta(&mut task);
        let mut first = Vec::new();
        let n = delta.for_each_record(|k, v| first.push((k.to_vec(), v.map(<[u8]>::to_vec))));
        let mut again = Vec::new();
        let m = delta.for_each_record(|k, v| again.push((k.to_vec(), v.map(<[u8]>::to_vec))));
        assert_eq!((n, m), (first.len(), again.len()));
        assert!(n > 25, "{n}");
        assert_eq!(first, again);
        // Each changed key once (the names and the checkpoint are records of their own).
        let keys: std::collections::BTreeSet<&Vec<u8>> = first.iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), first.len());
    }

    #[test]
    fn entry_records_are_tens_of_bytes() {
        let e = EntryRecord {
            time: BASE,
            model: 1,
            flags: 0,
            payload: 7,
        };
        assert_eq!(
            entry_key(RequestKey::from_parts(1, 2)).len() + entry_value(&e).len(),
            38
        );
    }

    #[test]
    fn malformed_records_are_refused() {
        let mut r = ChangelogRestore::new();
        assert!(r.apply(&[], None).is_err());
        assert!(r.apply(&[2, b'E'], None).is_err());
        assert!(r.apply(&[1, b'E', 0, 1], Some(&[0; 20])).is_err());
        assert!(r
            .apply(&entry_key(RequestKey::from_parts(1, 2)), Some(&[0; 19]))
            .is_err());
        assert!(r.apply(&[1, b'M', 0, 1], Some(b"no-separator")).is_err());
        assert!(r.apply(&[1, b'X'], Some(b"")).is_err());
        // A gap in the model ids cannot be restored: entries would name the wrong model.
        let (k, v) = model_record(2, "m", "v");
        r.apply(&k, Some(&v)).unwrap();
        assert!(matches!(
            r.into_task(config()),
            Err(ChangelogError::MissingModel { missing: 1, .. })
        ));
    }
}

mod replay;
pub use replay::ChangelogReplay;

#[cfg(test)]
mod replay_tests;
