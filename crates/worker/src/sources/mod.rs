//! The sources stage: model-server topics in (Seldon Core 2 model topics, KServe
//! inference-logger CloudEvents: the `[[sources]]` of the settings), canonical predictions and
//! dead letters out. It runs on the stage runtime ([`crate::runtime`]); decoding, pairing and
//! mapping are the sans-I/O [`driftwatch_oip::SourceIntake`], one per source. This module
//! moves records, offsets and the waiting halves.
//!
//! - Every record of a source topic is offered to its source's intake with its topic, headers
//!   and timestamp (event time). A paired request and response become predictions, written as
//!   Avro `Prediction` datums keyed by request id to the predictions topic, which the join
//!   reads like any other producer's; a record that does not decode, or a pair that does not
//!   map, goes to the dead-letter topic with its reason ([`batch`]).
//! - Every half is accounted: paired (with a prediction, or `unmapped`), expired unpaired,
//!   duplicate, dead-lettered, or still waiting; the committed counts are on `/metrics`.
//!
//! # One member, all partitions
//! A request and its response are on different topics (Seldon's `.inputs` and `.outputs`) and,
//! with several partitions, usually on different partition numbers: nothing co-partitions them
//! by request id. So one member of the sources group holds every partition of every source
//! topic, and pairs across all of them. A second member would split the halves between two
//! states; the stage refuses that: on every assignment it checks that it holds every partition
//! of each source topic it was given, and stops with an error naming the group otherwise
//! ([`stage`]). Its output, not its input, scales: the join downstream reads the predictions
//! on as many workers as the predictions topic has partitions.
//!
//! # Exactly-once
//! The waiting halves are the only state. Each batch carries, in one transaction, the
//! predictions and dead letters of the records read since the last one, every change to the
//! waiting halves (a half that starts waiting is written as the record it came in; a half
//! that leaves, paired or expired, is deleted) and each moved watermark to the compacted
//! single-partition changelog ([`pending`]), and the next offset of every source partition.
//! So the changelog always holds exactly the halves waiting as of the committed offsets: after
//! a crash, the next run restores them (offering the records again to fresh intakes, then
//! restoring the watermark) before it reads a record, and reads on from the committed offsets.
//! No pair is emitted twice (its output and the deletion of its waiting half commit together)
//! and none is lost. A transaction that aborts is done again from the restored state.
//!
//! One thing does not survive a restart: the ids paired in the last `pair_wait`, which the
//! intake keeps to call a late second copy of a half a duplicate. After a restart such a copy
//! waits and expires unpaired instead: counted under another outcome, never a prediction.
//!
//! At-least-once keeps no changelog: offsets are committed once the output is delivered, and
//! the halves waiting at a restart are lost (their partners expire unpaired).

mod batch;
mod pending;
mod stage;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use driftwatch_oip::IntakeCounters;
use rdkafka::consumer::StreamConsumer;

use crate::changelog::{ensure_changelog, ChangelogReader};
use crate::clients::{member_config, producer_config, transactional_producer_config};
use crate::error::{Result, WorkerError};
use crate::runtime::{Commits, Eos, Guarantee, Schedule, Shell, StageContext};
use crate::settings::Settings;
use crate::topics::TopicChecker;
use stage::Sourcing;

/// One source's committed counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Counts of the committed work (see [`IntakeCounters`]): halves in, pairs, expired,
    /// duplicates, dead-lettered, mapped and unmapped pairs, predictions.
    pub counters: IntakeCounters,
    /// Halves waiting for their other half now.
    pub pending: u64,
}

/// What the sources stage published so far, readable while it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourcesStats {
    /// Per source name.
    pub sources: BTreeMap<String, SourceCounts>,
    /// Records read (committed or not).
    pub records_in: u64,
    /// Source partitions held, as (topic, partition).
    pub assigned: Vec<(String, i32)>,
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// Changelog restores: how many, records and bytes read, halves restored, seconds.
    pub restores: u64,
    pub restore_records: u64,
    pub restore_bytes: u64,
    pub restored_halves: u64,
    pub restore_seconds: f64,
}

/// A handle on a running sources stage.
#[derive(Clone)]
pub struct SourcesStageHandle {
    stats: Arc<Mutex<SourcesStats>>,
    exactly_once: bool,
}

impl SourcesStageHandle {
    /// A snapshot of what the stage published.
    pub fn stats(&self) -> SourcesStats {
        lock(&self.stats).clone()
    }

    /// Whether the stage keeps its state in a changelog.
    pub fn exactly_once(&self) -> bool {
        self.exactly_once
    }
}

fn lock(m: &Mutex<SourcesStats>) -> MutexGuard<'_, SourcesStats> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sources stage, built but not yet consuming.
pub struct SourcesStage {
    shell: Shell,
    sourcing: Sourcing,
    settings: Settings,
}

impl SourcesStage {
    /// Builds the clients from the settings; fails when no `[[sources]]` are configured or
    /// the topics it writes do not exist.
    pub fn new(settings: Settings) -> Result<Self> {
        settings.validate()?;
        if settings.sources.is_empty() {
            return Err(WorkerError::Config(
                "the sources role needs at least one [[sources]] entry".into(),
            ));
        }
        let group = settings.sources_group_id();
        let protocol = crate::group_protocol::resolve(&settings.kafka);
        crate::group_protocol::set_group_timeouts(&settings.kafka, &group, protocol);
        let consumer: StreamConsumer<StageContext> =
            member_config(&settings.kafka, &group, protocol)
                .create_with_context(StageContext::default())?;
        let eos = settings.kafka.exactly_once();
        let changelog = if eos {
            Some(ChangelogReader::of(
                &settings,
                settings.sources_changelog_topic(),
                &group,
            )?)
        } else {
            None
        };
        let (producer_config, guarantee) = if eos {
            let config = transactional_producer_config(&settings.kafka, &group);
            let eos = Eos::new(
                config.clone(),
                settings.kafka.transaction_timeout,
                Commits::Inline,
            );
            (config, Guarantee::ExactlyOnce(eos))
        } else {
            (producer_config(&settings.kafka), Guarantee::AtLeastOnce)
        };
        let mut topics: Vec<String> = settings
            .sources
            .iter()
            .flat_map(|s| s.subscription())
            .collect();
        topics.sort();
        topics.dedup();
        let schedule = Schedule {
            name: "sources",
            topics,
            tick: settings.join.flush_interval,
            commit_every: settings.join.flush_interval,
        };
        let shell = Shell::new(consumer, &producer_config, guarantee, schedule)?;
        let checker = TopicChecker::new(&settings.kafka, Duration::from_secs(10))?;
        for topic in [&settings.topics.predictions, &settings.topics.dead_letter] {
            checker.partitions(topic)?;
        }
        let stats = Arc::new(Mutex::new(SourcesStats::default()));
        Ok(SourcesStage {
            shell,
            sourcing: Sourcing::new(settings.clone(), changelog, checker, stats),
            settings,
        })
    }

    /// A handle to read what the stage published.
    pub fn handle(&self) -> SourcesStageHandle {
        SourcesStageHandle {
            stats: self.sourcing.stats.clone(),
            exactly_once: self.sourcing.exactly_once,
        }
    }

    /// Reads the source topics until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        if self.sourcing.exactly_once {
            ensure_changelog(
                &self.settings,
                self.settings.sources_changelog_topic(),
                1,
                "kafka.join_group_id (the sources changelog is `<join_group_id>-sources-changelog`)",
            )
            .await?;
        }
        self.shell.run(self.sourcing, shutdown).await
    }
}
