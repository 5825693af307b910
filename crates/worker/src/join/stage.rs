//! The join stage's state and its hooks: what the runtime's loop ([`crate::runtime`]) calls.
//!
//! | hook | the join |
//! |---|---|
//! | `on_record` | decode, validate, push into the partition's task, poll it ([`super::intake`]) |
//! | `on_tick` | caught-up flags from the statistics, poll every task (idle fallback), resume drained inputs |
//! | `take_batch` | partials and progress records, changelog deltas, dead letters, offsets ([`super::batch`]) |
//! | `committed` | the batch's counts become final (totals that survive an abort) |
//! | `aborted` | the open transaction's rejections and dead letters are forgotten (read again) |
//! | `rewound` | every task rebuilt from the changelog at the committed offsets |
//! | `assigned` | tasks restored (exactly-once: a sealed local store resumed plus the changelog's tail, or the whole changelog) or new |
//! | `revoked` | tasks dropped (their state is in the changelog; at-least-once: counted as dropped); exactly-once and committed: their local stores sealed first ([`super::state`]) |
//! | `closed` | exactly-once, the final transaction committed: every local store sealed |
//! | `check` | before each batch: fails the stage once a task's local store failed ([`super::state`]) |

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use driftwatch_codec::framing::{GroundTruthDecoders, PredictionDecoders};
use driftwatch_core::join::{IntakeRules, JoinConfig, JoinEvent};
use driftwatch_core::JoinCounters;
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;
use tracing::{error, info, warn};

use super::batch::{CommitBatch, CommitOutcome};
use super::dead_letter::Rejections;
use super::partition::{PartitionTask, SOURCES};
use super::repartition::Repartition;
use super::routing::RoutingCheck;
use super::schemas::RegistrySchemas;
use super::standby::{Standby, StandbyConfig, WarmedUp};
use super::state::LocalState;
use super::stats::{record_micros, Meters, Shared};
use crate::changelog::{ChangelogReader, RestoreStart};
use crate::error::Result;
use crate::runtime::{InputPartition, Stage};
use crate::settings::Settings;

/// How long a restore may take before the stage gives up on it (well within the consumer's
/// `max.poll.interval.ms`: librdkafka waits for the assignment meanwhile).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(240);

/// The topics the stage reads and writes.
pub(super) struct Topics {
    pub(super) predictions: String,
    pub(super) ground_truth: String,
    pub(super) partials: String,
    pub(super) dead_letter: String,
    pub(super) changelog: String,
}

/// The decoders of both inputs (Avro, framed or bare).
pub(super) struct Decoders {
    pub(super) predictions: PredictionDecoders,
    pub(super) labels: GroundTruthDecoders,
}

/// The join stage's state, owned by its loop.
pub(crate) struct Join {
    pub(super) topics: Topics,
    pub(super) join_config: JoinConfig,
    pub(super) rules: IntakeRules,
    pub(super) bucket_width_ms: i64,
    pub(super) max_queued: usize,
    pub(super) max_message_bytes: usize,
    /// Join tasks in all (the input partition count) and partitions of the partials topic:
    /// progress records go to each of those partitions.
    pub(super) join_tasks: usize,
    pub(super) partials_partitions: usize,
    pub(super) exactly_once: bool,
    pub(super) decoders: Decoders,
    /// Writer schemas fetched from the schema registry, and the partitions held for them.
    pub(super) registry: Option<RegistrySchemas>,
    /// The changelog reader (exactly-once).
    pub(super) changelog: Option<ChangelogReader>,
    pub(super) tasks: BTreeMap<i32, PartitionTask>,
    /// Counters of tasks that were dropped, so totals survive rebalances.
    pub(super) retired: BTreeMap<(String, String), JoinCounters>,
    pub(super) rejections: Rejections,
    /// Scratch buffer of one poll's events.
    pub(super) events: Vec<JoinEvent>,
    pub(super) meters: Meters,
    /// Every input record's partition against its key's murmur2 partition.
    pub(super) routing: RoutingCheck,
    /// `join.misrouted = "repartition"`: misrouted records staged for the repartition topic.
    pub(super) repartition: Option<Repartition>,
    /// The local store of the entries beyond the memory budget (`join.state.dir`).
    pub(super) local_state: Option<LocalState>,
    /// Warm copies of partitions other workers own (`join.standby_replicas`).
    pub(super) standby: Option<Standby>,
    /// `join.standby_warm_up`.
    standby_warm_up: Duration,
    warm_up: WarmUp,
    /// When every task was last polled by a tick (a longer gap is a stall, see `poll_all`).
    pub(super) last_poll_all: Option<Instant>,
    /// At a clean stop, the changelog's end per partition right after the final commit: the
    /// stores are sealed at these offsets once the consumer has left the group.
    pub(super) closing_ends: Option<Vec<(i32, i64)>>,
    pub(super) shared: Arc<Shared>,
}

/// Where the standbys' warm-up before joining the group stands.
pub(super) enum WarmUp {
    NotAsked,
    Waiting {
        answer: mpsc::Receiver<WarmedUp>,
        since: Instant,
    },
    Done,
}

impl Join {
    pub(super) fn new(
        settings: &Settings,
        decoders: Decoders,
        changelog: Option<ChangelogReader>,
        join_tasks: usize,
        partials_partitions: usize,
    ) -> Result<Self> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let t = &settings.topics;
        let local_state = LocalState::new(settings)?;
        let standby = match &local_state {
            Some(state) if settings.join.standby_replicas > 0 && changelog.is_some() => {
                Some(Standby::start(StandbyConfig {
                    settings: settings.clone(),
                    layout: state.layout(),
                    join_config: settings.join_config()?,
                    partitions: i32::try_from(join_tasks).unwrap_or(i32::MAX),
                    budget_bytes: state.budget_bytes(),
                })?)
            }
            _ => None,
        };
        Ok(Join {
            topics: Topics {
                predictions: t.predictions.clone(),
                ground_truth: t.ground_truth.clone(),
                partials: t.model_partials.clone(),
                dead_letter: t.dead_letter.clone(),
                changelog: settings.join_changelog_topic(),
            },
            join_config: settings.join_config()?,
            rules: IntakeRules {
                max_future_skew_ms: ms(settings.join.max_future_skew),
            },
            bucket_width_ms: ms(settings.join.bucket_width),
            max_queued: settings.join.max_queued_records,
            max_message_bytes: settings.join.max_message_bytes,
            join_tasks,
            partials_partitions,
            exactly_once: settings.kafka.exactly_once(),
            decoders,
            registry: RegistrySchemas::new(&settings.schema_registry)?,
            changelog,
            tasks: BTreeMap::new(),
            retired: BTreeMap::new(),
            rejections: Rejections::default(),
            events: Vec::new(),
            meters: Meters::default(),
            routing: RoutingCheck::new(join_tasks, &settings.join),
            repartition: settings
                .join
                .misrouted
                .repartitions()
                .then(|| Repartition::new(t.repartition.clone())),
            local_state,
            standby,
            standby_warm_up: settings.join.standby_warm_up,
            warm_up: WarmUp::NotAsked,
            last_poll_all: None,
            closing_ends: None,
            shared: Arc::new(Shared::new(t.predictions.clone(), t.ground_truth.clone())),
        })
    }
}

impl Stage for Join {
    type Batch = CommitBatch;

    fn ready_to_join(&mut self) -> bool {
        self.standbys_warm()
    }

    #[inline]
    fn on_record(&mut self, msg: &BorrowedMessage<'_>, now_ms: i64) -> Option<InputPartition> {
        self.handle_message(msg, now_ms)
            .map(|(source, partition)| InputPartition {
                topic: source,
                partition,
            })
    }

    fn on_tick(&mut self, now_ms: i64, paused: &HashSet<InputPartition>) -> Vec<InputPartition> {
        if let Some(registry) = &mut self.registry {
            let d = &mut self.decoders;
            registry.poll(now_ms, &mut d.predictions, &mut d.labels);
        }
        let mut resumable = self.poll_all(now_ms, paused);
        if let Some(registry) = &self.registry {
            resumable.retain(|p| !registry.is_held(p));
        }
        if let Some(state) = &mut self.local_state {
            let (tasks, standby) = (&self.tasks, &self.standby);
            state.sweep_if_due(|p| {
                tasks.contains_key(&p) || standby.as_ref().is_some_and(|s| s.held().contains(&p))
            });
        }
        self.log_stats(false);
        resumable
    }

    fn take_seeks(&mut self) -> Vec<(InputPartition, i64)> {
        self.registry
            .as_mut()
            .map(RegistrySchemas::take_seeks)
            .unwrap_or_default()
    }

    fn on_statistics(&mut self, statistics: &Statistics) {
        self.observe_statistics(statistics);
    }

    fn check(&mut self) -> Result<()> {
        self.check_state()
    }

    fn take_batch(&mut self) -> CommitBatch {
        if !self.exactly_once {
            return self.take_batch_at_least_once();
        }
        // The loop waits while the batch is taken: measured.
        let started = Instant::now();
        let batch = self.take_transaction_batch();
        record_micros(&mut self.meters.batch_micros, started.elapsed());
        batch
    }

    fn committed(&mut self, outcome: CommitOutcome, took: Duration) {
        self.batch_committed(outcome, took);
    }

    fn aborted(&mut self, _outcome: Option<CommitOutcome>) {
        if !self.exactly_once {
            // Not all delivered: the offsets stay where they were.
            self.meters.producing = false;
            return;
        }
        // What the open transaction held is gone; its inputs are read again (after a rewind,
        // or by the partitions' next owner), and counted and dead-lettered then.
        self.meters.transactions_aborted += 1;
        self.rejections.forget_uncommitted();
        if let Some(r) = &mut self.repartition {
            r.aborted();
        }
    }

    fn rewound(&mut self) -> Result<()> {
        if let Some(registry) = &mut self.registry {
            // Every input is read again from its committed offset.
            registry.forget(|_| true);
        }
        let assigned = self.assigned_partitions();
        self.abandon(&assigned.iter().copied().collect());
        self.restore(&assigned)
    }

    fn assigned(&mut self, tpl: &TopicPartitionList) -> Result<()> {
        let sources = self.source_topics().len();
        let mut per_partition: HashMap<i32, [bool; SOURCES]> = HashMap::new();
        for e in tpl.elements() {
            let entry = per_partition.entry(e.partition()).or_default();
            entry[self.source_of(e.topic())] = true;
        }
        let mut partitions: Vec<i32> = per_partition.keys().copied().collect();
        partitions.sort_unstable();
        for (partition, assigned) in per_partition {
            if assigned.iter().take(sources).any(|a| !a) {
                error!(partition, "not every input topic of this partition was assigned: the join needs the range assignor and co-partitioned topics");
            }
        }
        if self.exactly_once {
            // A standby of these partitions is handed over first: their restore goes on
            // with it.
            let handed = match &self.standby {
                Some(s) if !partitions.is_empty() => s.release(&partitions),
                _ => BTreeMap::new(),
            };
            // Restored before any of their records is processed.
            self.restore_from(&partitions, handed)?;
            self.tell_standby();
            return Ok(());
        }
        let tasks = self.tasks_after(&partitions);
        for partition in partitions {
            if self.tasks.contains_key(&partition) {
                // Opening a tier wipes the partition's folder: never under a live task.
                continue;
            }
            let cold = self.cold_tier_for(partition, tasks)?;
            self.create_task(partition, None, cold);
        }
        Ok(())
    }

    fn offsets_pending(&mut self, tpl: &TopicPartitionList) {
        if let Some(reader) = &self.changelog {
            reader.fence_last_writers(&crate::runtime::partition_numbers(tpl));
        }
    }

    fn positioned(&mut self, committed: &TopicPartitionList) {
        self.set_positions(committed);
    }

    fn revoked(&mut self, tpl: &TopicPartitionList, lost: bool) {
        let partitions: HashSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        if let Some(registry) = &mut self.registry {
            registry.forget(|p| partitions.contains(&p));
        }
        if self.exactly_once {
            if !lost {
                // Committed: the local stores hold what the changelog does. With standbys
                // the tasks go on as standbys; the others are sealed.
                let mut sealing: Vec<i32> = partitions.iter().copied().collect();
                sealing.sort_unstable();
                let handed = self.hand_to_standby(&sealing);
                sealing.retain(|p| !handed.contains(p));
                self.seal_stores(&sealing);
            }
            // Their state is in the changelog as of the last committed transaction; dead
            // letters still waiting for a covering offset are the next owner's to write.
            self.abandon(&partitions);
            self.rejections.forget_partitions(&partitions);
            self.tell_standby();
        } else {
            self.retire(&partitions);
        }
    }

    fn publish(&mut self) {
        self.scan_buffers(false);
        self.shared.publish(self.stats());
    }

    fn closed(&mut self) {
        // Sealed in `stopped`, after the consumer has left: the next owners need not wait
        // for every hot entry to be written out. The offsets are taken now, before any of
        // them writes to the changelog.
        let all = self.assigned_partitions();
        self.closing_ends = Some(self.changelog_ends(&all));
    }

    fn stopped(&mut self) {
        if let Some(ends) = self.closing_ends.take() {
            self.seal_stores_at(&ends);
        }
        self.log_stats(true);
    }
}

impl Join {
    /// Rebuilds the tasks of `partitions` from the changelog.
    fn restore(&mut self, partitions: &[i32]) -> Result<()> {
        self.restore_from(partitions, BTreeMap::new())
    }

    /// [`Self::restore`], going on with the standbys' tasks `handed` where they are usable.
    fn restore_from(
        &mut self,
        partitions: &[i32],
        mut handed: BTreeMap<i32, RestoreStart>,
    ) -> Result<()> {
        if self.changelog.is_none() || partitions.is_empty() {
            return Ok(());
        }
        let tasks = self.tasks_after(partitions);
        // A task's store folder is wiped when its new tier opens: the old task (if any) goes
        // first, with its store.
        for p in partitions {
            if let Some(t) = self.tasks.remove(p) {
                self.retire_spills(&t.task);
            }
        }
        let Some(reader) = &self.changelog else {
            return Ok(());
        };
        let this = &*self;
        let restored = reader.restore(partitions, RESTORE_TIMEOUT, |p, watermarks| {
            if let Some(start) = handed.remove(&p) {
                if let Some(start) = this.go_on_with(p, start, watermarks, tasks) {
                    return Ok(start);
                }
            }
            this.restore_start(p, watermarks, tasks)
        })?;
        self.install_restored(restored);
        Ok(())
    }

    /// Before joining the group: whether the standbys caught up with their changelogs
    /// (`join.standby_warm_up`, see [`Standby::warm_up`]), or the bound passed.
    fn standbys_warm(&mut self) -> bool {
        let bound = self.standby_warm_up;
        let (answer, since) = match &self.warm_up {
            WarmUp::Done => return true,
            WarmUp::NotAsked => {
                let asked = self
                    .standby
                    .as_ref()
                    .filter(|_| !bound.is_zero())
                    .and_then(Standby::warm_up);
                self.warm_up = match asked {
                    Some(answer) => WarmUp::Waiting {
                        answer,
                        since: Instant::now(),
                    },
                    None => WarmUp::Done,
                };
                return matches!(self.warm_up, WarmUp::Done);
            }
            WarmUp::Waiting { answer, since } => (answer, since),
        };
        let seconds = since.elapsed().as_secs_f64();
        match answer.try_recv() {
            Ok(w) => info!(
                partitions = w.partitions,
                records = w.records,
                rounds = w.rounds,
                seconds,
                "standby replicas warmed up before joining the group"
            ),
            Err(mpsc::TryRecvError::Empty) if since.elapsed() < bound => return false,
            Err(mpsc::TryRecvError::Empty) => warn!(
                bound = ?bound,
                "standby replicas not caught up within join.standby_warm_up: joining the group anyway"
            ),
            Err(mpsc::TryRecvError::Disconnected) => {
                warn!("standby thread gone before its warm-up ended: joining the group")
            }
        }
        self.warm_up = WarmUp::Done;
        true
    }

    /// Tells the standby thread (if any) which partitions this worker owns now.
    fn tell_standby(&self) {
        if let Some(standby) = &self.standby {
            standby.owned(self.tasks.keys().copied().collect());
        }
    }

    /// How many tasks the worker holds once `partitions` have theirs: the tasks sharing the
    /// memory budget.
    fn tasks_after(&self, partitions: &[i32]) -> usize {
        let others = self
            .tasks
            .keys()
            .filter(|p| !partitions.contains(p))
            .count();
        others + partitions.len()
    }
}
