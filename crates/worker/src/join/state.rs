//! The join's local state store (`join.state.*`): with `join.state.dir` set, each join task
//! keeps at most its share of `join.state.memory_budget` of buffer entries in memory and the
//! rest in a cold tier on local disk (`driftwatch-state`, fjall).
//!
//! # Layout and life cycle
//! `<join.state.dir>/<join group>/<predictions topic>-<partition>/`: one store per task. The
//! group's folder is wiped when the stage starts; a partition's folder is wiped when its task
//! is built (assignment, or the rebuild after an aborted transaction) and refilled by the
//! restore from the changelog, and removed when the task is dropped. The changelog topic stays
//! the source of truth; nothing in the folder is read across a restart (a checkpoint of the
//! changelog offsets the store reflects, so an intact store replays only the changelog's tail,
//! is a later step).
//!
//! # Budget
//! The budget is per worker, split evenly between the tasks built together (the range assignor
//! is eager: every assignment restores all the worker's partitions at once); each task's table
//! is sized from its share ([`hot_capacity_for_budget`]). The store's own cache and memtables
//! ([`STORE_MEMORY`]) come on top, per task.
//!
//! # Failures
//! A store failure is kept by the task's buffer, which from then on decides as if the cold
//! tier were empty: its decisions must never be committed. [`Join::check_state`] runs before
//! every batch is taken (the runtime's `Stage::check`); it keeps the first failure and fails
//! the stage from then on, so the loop stops without committing and the next start rebuilds
//! the state from the changelog.

use std::path::PathBuf;

use driftwatch_core::join::{hot_capacity_for_budget, ColdTier};
use driftwatch_state::{open_partition_tier, StoreMemory};
use tracing::info;

use super::stage::Join;
use crate::error::{Result, WorkerError};
use crate::settings::Settings;

/// The store's cache and memtables, per task: look-ups are random (a large cache would mostly
/// hold index and filter blocks), and the memtables only batch the spills' writes.
pub(super) const STORE_MEMORY: StoreMemory = StoreMemory {
    cache_bytes: 4 << 20,
    write_buffer_bytes: 16 << 20,
};

/// Where the stage's tasks keep their cold tiers, and the budget they share.
pub(super) struct LocalState {
    /// `<join.state.dir>/<join group>`.
    dir: PathBuf,
    budget_bytes: u64,
    predictions_topic: String,
    /// The first store failure seen (sticky: the stage must not commit after it).
    failure: Option<String>,
    /// Entries spilled by tasks since dropped (so the total survives rebalances).
    spilled_by_retired: u64,
}

/// A name usable as one path component: what a group id may hold besides Kafka's topic
/// characters becomes `_`.
fn path_component(name: &str) -> String {
    if name.chars().all(|c| c == '.') {
        // "", "." and ".." would not name a folder of their own.
        return format!("_{name}");
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl LocalState {
    /// The store of these settings (`None` without `join.state.dir`): checks that the folder
    /// is writable and wipes what an earlier run of the group left in it.
    pub(super) fn new(settings: &Settings) -> Result<Option<Self>> {
        let state = &settings.join.state;
        let Some(dir) = state.dir() else {
            return Ok(None);
        };
        state.check_dir()?;
        let dir = dir.join(path_component(&settings.kafka.join_group_id));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                WorkerError::Config(format!(
                    "join.state.dir: cannot clear {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let budget_bytes = state.memory_budget().as_u64();
        info!(dir = %dir.display(), memory_budget = %state.memory_budget(), "join state store on local disk");
        Ok(Some(LocalState {
            dir,
            budget_bytes,
            predictions_topic: path_component(&settings.topics.predictions),
            failure: None,
            spilled_by_retired: 0,
        }))
    }

    /// An empty cold tier for `partition`'s task and the task's hot capacity, when `tasks`
    /// tasks share the budget.
    pub(super) fn tier(&self, partition: i32, tasks: usize) -> Result<(Box<dyn ColdTier>, usize)> {
        let share = self.budget_bytes / u64::try_from(tasks.max(1)).unwrap_or(u64::MAX);
        let name = format!("{}-{partition}", self.predictions_topic);
        let tier = open_partition_tier(&self.dir, &name, STORE_MEMORY)
            .map_err(|e| WorkerError::State(format!("partition {partition}: {e}")))?;
        Ok((Box::new(tier), hot_capacity_for_budget(share)))
    }
}

impl Join {
    /// The cold tier and hot capacity of a new task of `partition` (`None`: all in memory),
    /// when `tasks` tasks share the budget.
    pub(super) fn cold_tier_for(
        &self,
        partition: i32,
        tasks: usize,
    ) -> Result<Option<(Box<dyn ColdTier>, usize)>> {
        self.local_state
            .as_ref()
            .map(|s| s.tier(partition, tasks))
            .transpose()
    }

    /// Fails once any task's store has failed (see the module docs).
    pub(super) fn check_state(&mut self) -> Result<()> {
        let Some(state) = self.local_state.as_mut() else {
            return Ok(());
        };
        if state.failure.is_none() {
            state.failure = self
                .tasks
                .iter()
                .find_map(|(p, t)| t.task.cold_error().map(|e| format!("partition {p}: {e}")));
        }
        match &state.failure {
            Some(f) => Err(WorkerError::State(format!(
                "{f}; stopping without committing (the next start rebuilds the state from the changelog)"
            ))),
            None => Ok(()),
        }
    }

    /// Entries moved to disk since the stage started, and entries on disk now.
    pub(super) fn spill_counts(&self) -> (u64, u64) {
        let Some(state) = &self.local_state else {
            return (0, 0);
        };
        let live = self.tasks.values().map(|t| t.task.buffer());
        let (spilled, cold) = live.fold((0, 0), |(s, c), b| {
            (s + b.cold_spilled(), c + b.cold_len() as u64)
        });
        (state.spilled_by_retired + spilled, cold)
    }

    /// Keeps the spill count of a task being dropped.
    pub(super) fn retire_spills(&mut self, task: &driftwatch_core::join::JoinTask) {
        if let Some(state) = self.local_state.as_mut() {
            state.spilled_by_retired += task.buffer().cold_spilled();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_become_one_path_component() {
        assert_eq!(path_component("driftwatch-join"), "driftwatch-join");
        assert_eq!(path_component("a/../b c"), "a_.._b_c");
        assert_eq!(path_component(".."), "_..");
        assert_eq!(path_component(""), "_");
    }

    #[test]
    fn an_unusable_state_dir_stops_the_stage_at_start_naming_the_setting() {
        let base = std::env::temp_dir().join(format!("dw-join-start-{}", std::process::id()));
        std::fs::create_dir_all(&base).expect("temp dir");
        // A folder below a plain file cannot be created, whoever runs the test (root too).
        let file = base.join("a-file");
        std::fs::write(&file, b"x").expect("file");
        let mut s = Settings::default();
        s.join.state.dir = Some(file.join("state"));
        // No broker is asked before the check: the default bootstrap address is never used.
        let e = match crate::join::JoinStage::new(s) {
            Ok(_) => panic!("a join stage over an unusable state dir"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("join.state.dir"), "{e}");
        assert!(e.contains(&file.display().to_string()), "{e}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
