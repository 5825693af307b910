//! Settings of the join stage, and of where it keeps its state ([`JoinStateSettings`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::error::WorkerError;

/// The default of `join.state.memory_budget`: 256 MiB per worker.
pub const DEFAULT_MEMORY_BUDGET: ByteSize = ByteSize::mib(256);

/// Least `join.state.memory_budget`: below it the hot table of one partition holds too few
/// entries for a spill to move a useful share of them.
const MIN_MEMORY_BUDGET: ByteSize = ByteSize::mib(1);

/// Settings of the join stage. Durations are written like `24h`, `90s`, `500ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JoinSettings {
    /// Longest `label_time − prediction_time` that still matches. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub label_timeout: Duration,
    /// How long a label that came first waits for its prediction. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub orphan_timeout: Duration,
    /// The watermark trails the slower input by this much. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// Wait this long for producers on an empty input that is caught up before going on with
    /// the other (Kafka Streams' `max.task.idle.ms`). An empty input that is not caught up has
    /// records on the broker and is always waited for. Default `0s`: go on at once.
    #[serde(with = "humantime_serde")]
    pub max_task_idle: Duration,
    /// A caught-up input silent this long advances by processing time. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Width of the prediction-time buckets of the partials sent to the monitor. Default `1m`.
    #[serde(with = "humantime_serde")]
    pub bucket_width: Duration,
    /// How often partials are flushed and offsets committed: a transaction of the join.
    /// Default `250ms`. A commit sends the changelog records of its interval in one burst,
    /// which the broker serves before the fetches queued behind it, so a longer interval
    /// lengthens the tail of the inputs' latency (BENCHMARKS.md, *Latency*); a shorter one
    /// adds transactions for the same work. Kafka Streams commits every 100 ms under
    /// exactly-once.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// A prediction or label stamped further than this ahead of the wall clock is dead-lettered
    /// as an absurd timestamp. Default `1d`.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Largest accepted message, bytes; larger ones are dead-lettered. Default 1 MiB.
    pub max_message_bytes: usize,
    /// Pause fetching a partition when this many of its records wait in the task's queue.
    /// Default 50 000.
    pub max_queued_records: usize,
    /// Every keyed input record is checked against its key's murmur2 partition (the Java
    /// client's default partitioner, driftwatch's contract). When more than this share of a
    /// topic's checked records sit elsewhere (over at least `misrouted_min_records`), the
    /// topic is flagged: a warning log (at most once a minute per topic), `alert` in
    /// `/readyz`'s `misrouted` detail, and `check-config` fails. Default `0.01`.
    pub misrouted_alert_share: f64,
    /// Checked records a topic needs before its misrouted share can raise the flag.
    /// Default 100.
    pub misrouted_min_records: u64,
    /// What the join does with a misrouted record: `account` (default) joins it on the
    /// partition it was read from, where its partner mostly is not (it ends expired unlabeled
    /// or as an orphan label, and is counted as misrouted); `repartition` re-publishes it,
    /// in the same transaction as the input offsets, to `topics.repartition` on its key's
    /// murmur2 partition, and joins that copy instead. `repartition` needs exactly-once.
    pub misrouted: MisroutedMode,
    /// Per-model overrides, by model id.
    pub models: BTreeMap<String, ModelJoinSettings>,
    /// Where pending predictions and orphan labels beyond a memory budget go
    /// (`[join.state]`). Default: all in memory.
    pub state: JoinStateSettings,
    /// Warm copies of each partition's state kept by other workers, which tail its changelog
    /// into their local store (as Kafka Streams' `num.standby.replicas`): when the partition
    /// moves to one of them, its restore replays only the changelog's tail. Needs
    /// `join.state.dir` and exactly-once. Default 0.
    pub standby_replicas: usize,
    /// With standby replicas: how long a starting worker may spend catching its standbys up
    /// with their changelogs before it joins the group, so that the partitions a scale-out
    /// moves to it are warm (under the `consumer` protocol it follows every partition it
    /// does not own). Past it the worker joins anyway. `0s`: join at once. Default 2m.
    #[serde(with = "humantime_serde")]
    pub standby_warm_up: Duration,
}

/// `join.misrouted`: what happens to a record read from a partition other than its key's
/// murmur2 partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MisroutedMode {
    /// Joined where it was read, counted as misrouted.
    #[default]
    Account,
    /// Re-published to the repartition topic on the right partition; that copy is joined.
    Repartition,
}

impl MisroutedMode {
    /// Whether the join reads and writes the repartition topic.
    pub fn repartitions(self) -> bool {
        self == MisroutedMode::Repartition
    }
}

/// Join settings that may differ per model id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelJoinSettings {
    /// This model's label timeout.
    #[serde(with = "humantime_serde")]
    pub label_timeout: Duration,
}

impl Default for JoinSettings {
    fn default() -> Self {
        JoinSettings {
            label_timeout: Duration::from_secs(24 * 3600),
            orphan_timeout: Duration::from_secs(24 * 3600),
            allowed_lateness: Duration::from_secs(5),
            max_task_idle: Duration::ZERO,
            idle_timeout: Duration::from_secs(30),
            bucket_width: Duration::from_secs(60),
            flush_interval: Duration::from_millis(250),
            max_future_skew: Duration::from_secs(24 * 3600),
            max_message_bytes: 1 << 20,
            max_queued_records: 50_000,
            misrouted_alert_share: 0.01,
            misrouted_min_records: 100,
            misrouted: MisroutedMode::Account,
            models: BTreeMap::new(),
            state: JoinStateSettings::default(),
            standby_replicas: 0,
            standby_warm_up: Duration::from_secs(120),
        }
    }
}

/// The join's local state store (`[join.state]`): with `dir` set, each join task keeps at most
/// its share of `memory_budget` of entries in memory and the rest on local disk. The changelog
/// topic stays the source of truth: the store is a cache of it, resumed when it was sealed
/// at a clean stop or revocation, else rebuilt from the changelog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JoinStateSettings {
    /// Folder of the local store: one sub-folder per input partition held
    /// (`<join group>/<predictions topic>-<partition>`), resumed or rebuilt when the partition
    /// is assigned.
    /// Not shared between workers running at the same time. Created if missing; must be
    /// writable (checked at start-up). Default: none, every entry stays in memory.
    pub dir: Option<PathBuf>,
    /// Memory for the entries kept in memory, per worker, split evenly between the partitions
    /// it holds; the oldest entries beyond it go to `dir`. Written like `256MiB` or `2GiB`;
    /// at least 1 MiB. Only with `dir`. Default 256 MiB. The store's own cache and write
    /// buffers come on top (see docs/OPERATIONS.md, *Capacity*).
    pub memory_budget: Option<ByteSize>,
    /// How long the sealed folder of a partition this worker no longer holds is kept, in case
    /// the partition comes back, before it is removed (as Kafka Streams'
    /// `state.cleanup.delay.ms`). Folders that are not sealed go at the next sweep (once a
    /// minute). Only with `dir`. Default 10 minutes.
    #[serde(default, with = "humantime_serde")]
    pub cleanup_delay: Option<Duration>,
}

/// Default of [`JoinStateSettings::cleanup_delay`].
pub const DEFAULT_CLEANUP_DELAY: Duration = Duration::from_secs(600);

impl JoinStateSettings {
    /// The budget in force (the default when unset).
    pub fn memory_budget(&self) -> ByteSize {
        self.memory_budget.unwrap_or(DEFAULT_MEMORY_BUDGET)
    }

    /// The cleanup delay in force (the default when unset).
    pub fn cleanup_delay(&self) -> Duration {
        self.cleanup_delay.unwrap_or(DEFAULT_CLEANUP_DELAY)
    }

    /// The state folder, when the store is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Checks the fields together (no file system access: see [`Self::check_dir`]).
    pub fn validate(&self) -> Result<(), WorkerError> {
        let bad = |m: String| Err(WorkerError::Config(m));
        match (&self.dir, self.memory_budget) {
            (None, Some(b)) => {
                return bad(format!(
                    "join.state.memory_budget ({b}) is set but join.state.dir is not: the budget only applies to a disk store; set join.state.dir or remove the budget"
                ))
            }
            (None, None) if self.cleanup_delay.is_some() => {
                return bad("join.state.cleanup_delay is set but join.state.dir is not: it only applies to a disk store; set join.state.dir or remove it".into())
            }
            (Some(d), _) if d.as_os_str().is_empty() => {
                return bad("join.state.dir is empty: give a folder, or remove the key to keep all state in memory".into())
            }
            _ => {}
        }
        let b = self.memory_budget();
        if self.dir.is_some() && b < MIN_MEMORY_BUDGET {
            return bad(format!(
                "join.state.memory_budget ({b}) is below {MIN_MEMORY_BUDGET}: raise it"
            ));
        }
        Ok(())
    }

    /// Creates the state folder when missing and checks that it is writable: a clear error at
    /// start-up rather than a store failure at the first spill. `Ok` when the store is off.
    pub fn check_dir(&self) -> Result<(), WorkerError> {
        let Some(dir) = self.dir() else {
            return Ok(());
        };
        driftwatch_state::check_dir(dir).map_err(|e| {
            WorkerError::Config(format!(
                "{e}: join.state.dir must be a folder this worker can create and write"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn the_store_is_off_by_default_and_the_budget_defaults_to_256_mib() {
        let s = Settings::default();
        assert_eq!(s.join.state.dir(), None);
        assert_eq!(s.join.state.memory_budget(), ByteSize::mib(256));
        s.validate().expect("valid");
    }

    #[test]
    fn a_budget_without_a_folder_or_below_one_mib_is_refused_naming_the_fields() {
        let s: Settings =
            serde_json::from_str(r#"{"join": {"state": {"memory_budget": "64MiB"}}}"#)
                .expect("parse");
        let e = s.validate().expect_err("refused").to_string();
        assert!(
            e.contains("join.state.memory_budget") && e.contains("join.state.dir"),
            "{e}"
        );
        let s: Settings = serde_json::from_str(
            r#"{"join": {"state": {"dir": "/tmp/x", "memory_budget": "512KiB"}}}"#,
        )
        .expect("parse");
        let e = s.validate().expect_err("refused").to_string();
        assert!(e.contains("join.state.memory_budget"), "{e}");
        let s: Settings = serde_json::from_str(
            r#"{"join": {"state": {"dir": "/tmp/x", "memory_budget": "1MiB"}}}"#,
        )
        .expect("parse");
        s.validate().expect("1 MiB is enough");
        assert_eq!(s.join.state.memory_budget(), ByteSize::mib(1));
        let e = serde_json::from_str::<Settings>(r#"{"join": {"state": {"budget": "1MiB"}}}"#)
            .expect_err("unknown field");
        assert!(e.to_string().contains("unknown field `budget`"), "{e}");
        let s: Settings = serde_json::from_str(
            r#"{"join": {"state": {"dir": "/tmp/x", "cleanup_delay": "1h"}}}"#,
        )
        .expect("parse");
        s.validate().expect("valid");
        assert_eq!(s.join.state.cleanup_delay(), Duration::from_secs(3600));
        assert_eq!(
            Settings::default().join.state.cleanup_delay(),
            DEFAULT_CLEANUP_DELAY
        );
        let s: Settings =
            serde_json::from_str(r#"{"join": {"state": {"cleanup_delay": "1h"}}}"#).expect("parse");
        let e = s.validate().expect_err("refused without a dir").to_string();
        assert!(e.contains("join.state.cleanup_delay"), "{e}");
    }

    #[test]
    fn standby_replicas_need_a_state_dir_and_exactly_once() {
        let s: Settings =
            serde_json::from_str(r#"{"join": {"standby_replicas": 1}}"#).expect("parse");
        let e = s.validate().expect_err("refused without a dir").to_string();
        assert!(
            e.contains("join.standby_replicas") && e.contains("join.state.dir"),
            "{e}"
        );
        let s: Settings = serde_json::from_str(
            r#"{"join": {"standby_replicas": 1, "state": {"dir": "/tmp/x"}},
                "kafka": {"processing_guarantee": "at_least_once"}}"#,
        )
        .expect("parse");
        let e = s.validate().expect_err("refused at least once").to_string();
        assert!(e.contains("exactly_once"), "{e}");
        let s: Settings = serde_json::from_str(
            r#"{"join": {"standby_replicas": 2, "state": {"dir": "/tmp/x"}}}"#,
        )
        .expect("parse");
        s.validate().expect("valid");
        assert_eq!(Settings::default().join.standby_replicas, 0);
    }

    #[test]
    fn a_state_dir_that_cannot_be_created_is_refused_naming_the_setting() {
        let base = std::env::temp_dir().join(format!("dw-state-check-{}", std::process::id()));
        std::fs::create_dir_all(&base).expect("temp dir");
        // A folder below a plain file cannot be created, whoever runs the test (root too).
        let file = base.join("a-file");
        std::fs::write(&file, b"x").expect("file");
        let state = JoinStateSettings {
            dir: Some(file.join("state")),
            memory_budget: None,
            cleanup_delay: None,
        };
        let e = state.check_dir().expect_err("refused").to_string();
        assert!(e.contains("join.state.dir"), "{e}");
        let ok = JoinStateSettings {
            dir: Some(base.join("state")),
            memory_budget: None,
            cleanup_delay: None,
        };
        ok.check_dir().expect("a fresh folder is created");
        let _ = std::fs::remove_dir_all(&base);
    }
}
