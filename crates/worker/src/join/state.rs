//! The join's local state store (`join.state.*`): with `join.state.dir` set, each join task
//! keeps at most its share of `join.state.memory_budget` of buffer entries in memory and the
//! rest in a cold tier on local disk (`driftwatch-state`, fjall).
//!
//! # Layout and life cycle
//! `<join.state.dir>/<join group>/<predictions topic>-<partition>/`: one store per task. The
//! changelog topic stays the source of truth; a store is a cache of it, trusted only when
//! sealed (exactly-once, as Kafka Streams' `.checkpoint` under exactly-once):
//! - after the last commit of a clean stop (SIGTERM) or of a revocation, each task moves its
//!   hot entries to its store and seals it with a checkpoint file: names, watermark, cold
//!   counts, the due digest of the timeouts, and the changelog's end offset then
//!   ([`Join::seal_stores`]);
//! - when the partition is assigned again (this process or a later one), a sealed store is
//!   resumed if its checkpoint names this changelog partition, the same timeouts, an offset
//!   within the changelog's current range, and is younger than the changelog's
//!   `delete.retention.ms` (older, a tombstone it never saw may be compacted away). The
//!   checkpoint is removed before the store takes a write, and only the changelog from that
//!   offset is replayed. Any other folder (no checkpoint: a crash, an abort's rebuild, a
//!   failed store; refused; corrupt; not opening) is wiped with one warning and the task is
//!   rebuilt from the whole changelog;
//! - the replay streams records into the task in log order, so entries beyond the budget go
//!   to disk as they come: a restore needs the budget, not the changelog's size, in memory;
//! - a task dropped without a seal (an abort's rewind, a lost assignment, at-least-once)
//!   removes its folder;
//! - once a minute the folders of partitions this worker does not hold are swept
//!   ([`driftwatch_state::sweep`]): a sealed one once it is older than
//!   `join.state.cleanup_delay` (the partition went to another worker for good), any other
//!   once not modified for as long (a worker restarted after a crash still finds it, and
//!   warns as it rebuilds).
//!
//! # Budget
//! The budget is per worker, split evenly between the tasks built together (the range assignor
//! is eager: every assignment restores all the worker's partitions at once); each task's table
//! is sized from its share ([`hot_capacity_for_budget`]). The store's own cache, memtables and
//! entries gathered for its next run ([`STORE_MEMORY`]) come on top, per task.
//!
//! # Failures
//! A store failure is kept by the task's buffer, which from then on decides as if the cold
//! tier were empty: its decisions must never be committed. [`Join::check_state`] runs before
//! every batch is taken (the runtime's `Stage::check`); it keeps the first failure and fails
//! the stage from then on, so the loop stops without committing and the next start rebuilds
//! the state from the changelog.

use std::path::PathBuf;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use driftwatch_core::join::{
    hot_capacity_for_budget, ColdTier, JoinConfig, JoinTask, StoreCheckpoint,
};
use driftwatch_state::{
    open_partition_tier, open_sealed_or_fresh, sweep, Opened, StoreMemory, SweptReason,
};
use tracing::{info, warn};

use super::stage::Join;
use crate::changelog::RestoreStart;
use crate::error::{Result, WorkerError};
use crate::settings::Settings;

/// The store's cache, memtables and entries gathered for a run, per task: look-ups are random
/// (a large cache would mostly hold index and filter blocks), the memtables only take the
/// location index's writes, and a run of 16 MiB of entries (about 170 k) keeps the runs few.
pub(super) const STORE_MEMORY: StoreMemory = StoreMemory {
    cache_bytes: 4 << 20,
    write_buffer_bytes: 16 << 20,
    run_bytes: 16 << 20,
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
    /// `join.state.cleanup_delay`, ms.
    cleanup_delay_ms: i64,
    /// When the folders of partitions not held were last swept.
    last_sweep: Option<Instant>,
}

/// How often the folders of partitions not held are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

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
    /// is writable. What an earlier run left is resumed or wiped per partition, when assigned.
    pub(super) fn new(settings: &Settings) -> Result<Option<Self>> {
        let state = &settings.join.state;
        let Some(dir) = state.dir() else {
            return Ok(None);
        };
        state.check_dir()?;
        let dir = dir.join(path_component(&settings.kafka.join_group_id));
        let budget_bytes = state.memory_budget().as_u64();
        info!(dir = %dir.display(), memory_budget = %state.memory_budget(), "join state store on local disk");
        Ok(Some(LocalState {
            dir,
            budget_bytes,
            predictions_topic: path_component(&settings.topics.predictions),
            failure: None,
            spilled_by_retired: 0,
            cleanup_delay_ms: i64::try_from(state.cleanup_delay().as_millis()).unwrap_or(i64::MAX),
            last_sweep: None,
        }))
    }

    /// Removes the folders of partitions not `held` (see the module docs), at most once a
    /// [`SWEEP_EVERY`]. A failure is logged, not fatal: the folder only takes disk.
    pub(super) fn sweep_if_due(&mut self, held: impl Fn(i32) -> bool) {
        if self.last_sweep.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
            return;
        }
        self.last_sweep = Some(Instant::now());
        let (swept, error) = sweep(
            &self.dir,
            &self.predictions_topic,
            held,
            now_ms(),
            self.cleanup_delay_ms,
        );
        for s in swept {
            match s.reason {
                SweptReason::Moved { sealed_ms_ago } => info!(
                    partition = s.partition,
                    sealed_s_ago = sealed_ms_ago / 1000,
                    "join state store of a partition held elsewhere removed (join.state.cleanup_delay)"
                ),
                SweptReason::Unsealed { idle_ms } => info!(
                    partition = s.partition,
                    idle_s = idle_ms / 1000,
                    "unsealed join state store of a partition not held removed"
                ),
                SweptReason::Unreadable(why) => info!(
                    partition = s.partition,
                    reason = %why,
                    "join state store with an unreadable checkpoint removed"
                ),
            }
        }
        if let Some(e) = error {
            warn!(dir = %self.dir.display(), error = %e, "join state folders of partitions not held: not all removed");
        }
    }

    pub(super) fn hot_capacity(&self, tasks: usize) -> usize {
        let share = self.budget_bytes / u64::try_from(tasks.max(1)).unwrap_or(u64::MAX);
        hot_capacity_for_budget(share)
    }

    /// An empty cold tier for `partition`'s task and the task's hot capacity, when `tasks`
    /// tasks share the budget.
    pub(super) fn tier(&self, partition: i32, tasks: usize) -> Result<(Box<dyn ColdTier>, usize)> {
        Ok((self.layout().tier(partition)?, self.hot_capacity(tasks)))
    }

    /// Where `partition`'s restore starts (see [`open_for_replay`]), when `tasks` tasks share
    /// the budget.
    pub(super) fn restore_start(
        &self,
        config: &JoinConfig,
        changelog: &str,
        partition: i32,
        watermarks: (i64, i64),
        tasks: usize,
    ) -> Result<RestoreStart> {
        self.layout().open_for_replay(
            config,
            changelog,
            partition,
            watermarks,
            self.hot_capacity(tasks),
        )
    }

    /// Where the stores are and how they are named, for the standby replicas' thread.
    pub(super) fn layout(&self) -> StoreLayout {
        StoreLayout {
            dir: self.dir.clone(),
            predictions_topic: self.predictions_topic.clone(),
        }
    }

    /// The memory budget, bytes.
    pub(super) fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }
}

/// Where the stores of a join group are (`<join.state.dir>/<join group>`), and the prefix of
/// their folder names (the predictions topic).
#[derive(Debug, Clone)]
pub(super) struct StoreLayout {
    pub(super) dir: PathBuf,
    pub(super) predictions_topic: String,
}

impl StoreLayout {
    fn folder_name(&self, partition: i32) -> String {
        format!("{}-{partition}", self.predictions_topic)
    }

    /// An empty cold tier for `partition`.
    fn tier(&self, partition: i32) -> Result<Box<dyn ColdTier>> {
        let tier = open_partition_tier(&self.dir, &self.folder_name(partition), STORE_MEMORY)
            .map_err(|e| WorkerError::State(format!("partition {partition}: {e}")))?;
        Ok(boxed(tier))
    }

    /// Where a replay of `partition` starts: its sealed store resumed when it is valid for
    /// the changelog partition `changelog`[`partition`] of watermarks `(low, high)` (see the
    /// module docs), else an empty store and the whole changelog. The task keeps at most
    /// `hot_capacity` entries in memory.
    pub(super) fn open_for_replay(
        &self,
        config: &JoinConfig,
        changelog: &str,
        partition: i32,
        (low, high): (i64, i64),
        hot_capacity: usize,
    ) -> Result<RestoreStart> {
        let fail =
            |e: &dyn std::fmt::Display| WorkerError::State(format!("partition {partition}: {e}"));
        let name = self.folder_name(partition);
        let accept = |c: &StoreCheckpoint| {
            checkpoint_validity(c, config, changelog, partition, (low, high), now_ms())
        };
        let (tier, opened) =
            open_sealed_or_fresh(&self.dir, &name, STORE_MEMORY, accept).map_err(|e| fail(&e))?;
        let rebuild = |why: &str| {
            warn!(partition, reason = %why, "join state store not usable: rebuilding it from the changelog");
        };
        let tier = match opened {
            Opened::Resumed(c) => {
                match JoinTask::resume(config.clone(), &c, boxed(tier), hot_capacity) {
                    Ok(task) => {
                        info!(
                            partition,
                            from = c.changelog_offset,
                            end = high,
                            "join state store resumed: replaying the changelog's tail"
                        );
                        return Ok(RestoreStart {
                            task,
                            from: Some(c.changelog_offset),
                        });
                    }
                    Err(e) => {
                        // The tier went with the failed task; unsealed, its folder went too.
                        rebuild(&format!("the sealed state does not resume: {e}"));
                        self.tier(partition)?
                    }
                }
            }
            Opened::Wiped(why) => {
                rebuild(&why);
                boxed(tier)
            }
            Opened::Fresh => boxed(tier),
        };
        let mut task = JoinTask::new(config.clone()).map_err(|e| fail(&e))?;
        task.set_cold_tier(tier, hot_capacity);
        Ok(RestoreStart { task, from: None })
    }
}

/// A task's tier as the buffer holds it; with the `fault-points` feature, behind the
/// `state.write` failure point.
fn boxed(tier: impl ColdTier + 'static) -> Box<dyn ColdTier> {
    #[cfg(feature = "fault-points")]
    return Box::new(super::fault_tier::FaultTier(Box::new(tier)));
    #[cfg(not(feature = "fault-points"))]
    Box::new(tier)
}

/// How long a compacted changelog keeps a tombstone (`delete.retention.ms` of
/// [`crate::changelog::changelog_configs`]): a sealed store older than this may have missed
/// a deletion the changelog no longer holds.
pub(super) const TOMBSTONE_RETENTION: Duration = Duration::from_millis(86_400_000);

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Whether a sealed store's checkpoint `c` may be resumed for changelog partition
/// `changelog`[`partition`], whose watermarks are `(low, high)`, at wall-clock `now_ms`;
/// `Err(why)` when not.
pub(super) fn checkpoint_validity(
    c: &StoreCheckpoint,
    config: &JoinConfig,
    changelog: &str,
    partition: i32,
    (low, high): (i64, i64),
    now_ms: i64,
) -> std::result::Result<(), String> {
    let retention = i64::try_from(TOMBSTONE_RETENTION.as_millis()).unwrap_or(i64::MAX);
    if c.changelog_topic != changelog || c.changelog_partition != partition {
        Err(format!(
            "its checkpoint is of changelog `{}`[{}]",
            c.changelog_topic, c.changelog_partition
        ))
    } else if c.config_digest != config.due_digest() {
        Err("it was written under other timeouts".into())
    } else if c.changelog_offset > high {
        Err(format!(
            "its checkpoint offset {} is beyond the changelog's end {high} (the changelog was recreated?)",
            c.changelog_offset
        ))
    } else if c.changelog_offset < low {
        Err(format!(
            "its checkpoint offset {} is older than the changelog's start {low}",
            c.changelog_offset
        ))
    } else if now_ms.saturating_sub(c.written_at_ms) > retention {
        Err(format!(
            "its checkpoint is older than the changelog's tombstone retention ({:?})",
            TOMBSTONE_RETENTION
        ))
    } else {
        Ok(())
    }
}

impl Join {
    /// Where the restore of `partition` starts (see [`LocalState::restore_start`]); without a
    /// local store, a new task and the whole changelog.
    pub(super) fn restore_start(
        &self,
        partition: i32,
        watermarks: (i64, i64),
        tasks: usize,
    ) -> Result<RestoreStart> {
        match &self.local_state {
            Some(state) => state.restore_start(
                &self.join_config,
                &self.topics.changelog,
                partition,
                watermarks,
                tasks,
            ),
            None => Ok(RestoreStart {
                task: JoinTask::new(self.join_config.clone())
                    .map_err(|e| WorkerError::State(format!("partition {partition}: {e}")))?,
                from: None,
            }),
        }
    }

    /// A standby's task handed over for `partition` (see [`super::standby`]), with the
    /// owner's share of the memory budget when `tasks` tasks share it; `None` (the task and
    /// its unsealed folder dropped, before the restore opens the folder again) when the
    /// changelog, of watermarks `(low, high)`, no longer holds where its replay goes on.
    pub(super) fn go_on_with(
        &self,
        partition: i32,
        mut start: RestoreStart,
        (low, high): (i64, i64),
        tasks: usize,
    ) -> Option<RestoreStart> {
        let from = start.from?;
        if from < low || from > high {
            warn!(
                partition,
                from, low, high, "standby's task not usable: the changelog moved past it"
            );
            return None;
        }
        if let Some(state) = &self.local_state {
            start.task.set_hot_capacity(state.hot_capacity(tasks));
        }
        info!(
            partition,
            from,
            end = high,
            "join state taken over from a standby: replaying the changelog's tail"
        );
        Some(start)
    }

    /// Exactly-once, right after a commit that covers everything the tasks of `partitions`
    /// did, with standbys on: hands their tasks, stores open, to the standby thread, which
    /// follows the changelog from its end on (see [`super::standby`]). Sealing them instead
    /// would write every hot entry out while the partitions wait for their next owner, and
    /// the thread would open the stores again to follow them. Returns the partitions handed
    /// over; the rest are left to [`Self::seal_stores`].
    pub(super) fn hand_to_standby(&mut self, partitions: &[i32]) -> Vec<i32> {
        if self.standby.is_none() {
            return Vec::new();
        }
        let mut handed = Vec::new();
        for (p, end) in self.changelog_ends(partitions) {
            if self
                .tasks
                .get(&p)
                .is_some_and(|t| t.task.cold_error().is_none())
            {
                if let Some(task) = self.take_task(p) {
                    handed.push((p, task, end));
                }
            }
        }
        let numbers: Vec<i32> = handed.iter().map(|(p, _, _)| *p).collect();
        if let Some(standby) = &self.standby {
            standby.adopt(handed);
        }
        numbers
    }

    /// Exactly-once, right after a commit that covers everything the tasks of `partitions`
    /// did: seals their stores (see the module docs). A store that fails to seal is only
    /// reported: it is rebuilt at its next assignment.
    pub(super) fn seal_stores(&mut self, partitions: &[i32]) {
        let ends = self.changelog_ends(partitions);
        self.seal_stores_at(&ends);
    }

    /// The changelog's end offset of each of `partitions` with a local store to seal, right
    /// after a commit (settled, see [`ChangelogReader::settled_end_offsets`]; none without a
    /// local store or after it failed); a partition whose end is unknown is left out, with a
    /// warning, and so not sealed.
    pub(super) fn changelog_ends(&self, partitions: &[i32]) -> Vec<(i32, i64)> {
        let (Some(state), Some(reader)) = (self.local_state.as_ref(), self.changelog.as_ref())
        else {
            return Vec::new();
        };
        if state.failure.is_some() {
            return Vec::new();
        }
        let held: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| self.tasks.contains_key(p))
            .collect();
        reader
            .settled_end_offsets(&held, Duration::from_secs(10))
            .into_iter()
            .filter_map(|(p, end)| match end {
                Ok(end) => Some((p, end)),
                Err(e) => {
                    warn!(partition = p, error = %e, "join state store not sealed: changelog end unknown");
                    None
                }
            })
            .collect()
    }

    /// Seals the stores of the tasks of `ends`' partitions, each with a checkpoint at its
    /// offset: the changelog's end when everything the task did was committed.
    pub(super) fn seal_stores_at(&mut self, ends: &[(i32, i64)]) {
        let started = std::time::Instant::now();
        let mut sealed = Vec::new();
        let mut entries = 0u64;
        for &(p, end) in ends {
            let Some(t) = self.tasks.get_mut(&p) else {
                continue;
            };
            let checkpoint = StoreCheckpoint {
                changelog_topic: self.topics.changelog.clone(),
                changelog_partition: p,
                changelog_offset: end,
                written_at_ms: now_ms(),
                ..Default::default()
            };
            match t.task.seal_cold_tier(checkpoint) {
                Ok(()) => {
                    sealed.push(p);
                    entries += t.task.buffer().len() as u64;
                }
                Err(e) => warn!(partition = p, error = %e, "join state store not sealed"),
            }
        }
        if !sealed.is_empty() {
            let seconds = started.elapsed().as_secs_f64();
            info!(partitions = ?sealed, entries, seconds, "join state stores sealed");
        }
    }

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
