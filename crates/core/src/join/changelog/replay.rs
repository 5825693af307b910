//! [`ChangelogReplay`]: a changelog replayed record by record into a task.

use super::{parse, ChangelogError, Record};
use crate::join::JoinTask;

/// A task's state being replayed from its changelog in log order straight into the task
/// (and its cold tier): unlike [`ChangelogRestore`], nothing is folded in memory first, so a
/// restore needs no more memory than the task's budget. Names precede the entries that use
/// them in the log (a commit writes names first), so every entry finds its model's timeout.
/// Replaying a stretch of the log twice leaves the same state (later wins, null deletes), so
/// a replay may start at any offset up to the one its starting state reflects.
#[derive(Debug)]
pub struct ChangelogReplay {
    task: JoinTask,
    records: u64,
    bytes: u64,
}

impl ChangelogReplay {
    /// Replays onto `task`: a new one, or one resumed from a sealed store.
    pub fn new(task: JoinTask) -> Self {
        ChangelogReplay {
            task,
            records: 0,
            bytes: 0,
        }
    }

    /// Applies one record (`value` `None` is a tombstone).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), ChangelogError> {
        self.records += 1;
        self.bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
        match parse(key, value)? {
            Record::Entry(key, e) => self.task.replay_entry(key, e)?,
            Record::Model(id, m, v) => self.task.replay_model(id, &m, &v)?,
            Record::Class(id, c) => self.task.replay_class(id, &c)?,
            Record::Checkpoint(c) => self.task.replay_checkpoint(c),
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

    /// Sets the task's hot capacity (see [`JoinTask::set_hot_capacity`]): entries beyond it
    /// go to its cold tier. Fails when the cold tier failed.
    pub fn set_hot_capacity(&mut self, hot_capacity: usize) -> Result<(), ChangelogError> {
        self.task.set_hot_capacity(hot_capacity);
        match self.task.cold_error() {
            Some(e) => Err(ChangelogError::Store(e.clone())),
            None => Ok(()),
        }
    }

    /// The task as replayed so far, not tracking changes, for a replay that another
    /// [`ChangelogReplay`] goes on with (a standby handed to the stage that now owns its
    /// partition). Fails when its cold tier failed.
    pub fn suspend(self) -> Result<JoinTask, ChangelogError> {
        if let Some(e) = self.task.cold_error() {
            return Err(ChangelogError::Store(e.clone()));
        }
        Ok(self.task)
    }

    /// The task, tracking changes from here on. Fails when its cold tier failed.
    pub fn finish(mut self) -> Result<JoinTask, ChangelogError> {
        if let Some(e) = self.task.cold_error() {
            return Err(ChangelogError::Store(e.clone()));
        }
        self.task.track_changes();
        Ok(self.task)
    }
}
