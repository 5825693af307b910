//! Standby replicas of the join state (`join.standby_replicas`, as Kafka Streams'
//! `num.standby.replicas`): a worker keeps warm copies of partitions it does not own by
//! tailing their changelog partitions into its local store, so when such a partition comes
//! to it (its owner died or left), the restore resumes that store and replays only the
//! changelog's tail instead of the whole changelog.
//!
//! # How
//! One thread per worker ([`Standby`]) with its own changelog consumer (assigned, never
//! subscribed; `read_committed`, so aborted records are never applied):
//! - every [`REFRESH_EVERY`], and whenever the stage's assignment changes, it asks the
//!   coordinator to describe the join's group and picks its partitions by
//!   [`standby_partitions`] (rendezvous hashing: `replicas` members other than the owner per
//!   partition). A description it cannot place itself in (a rebalance in progress) leaves
//!   the set as it was;
//! - each standby partition is a [`ChangelogReplay`] into a task whose store is the folder the
//!   active task would use, opened as a restore opens it (a sealed folder is resumed, so a
//!   partition this worker just gave up is followed from where it was sealed);
//! - records are applied as they come; the task keeps at most [`STANDBY_SHARE`] of the
//!   budget in memory (split between the standbys), the rest on disk.
//!
//! # Hand-over
//! Before the stage restores partitions it was assigned, it asks the thread to release them
//! ([`Standby::release`]) and waits: the thread stops following each and hands its task
//! over as it is, store open, with the changelog offset after the last record it applied
//! (`read_committed`: every transaction before it is decided). The restore replays only the
//! rest into it and gives it the owner's share of the memory budget. Handing the open task
//! over, rather than sealing the store for the restore to open again, spares the seal (every
//! hot entry written out) and the reopening (the store's journals replayed): seconds per
//! partition with millions pending. A task the restore cannot use (its offset no longer in
//! the changelog) is dropped unsealed, and its folder rebuilt from the changelog. The other
//! way round too: a partition revoked from the stage, once committed, goes to the thread
//! with its task as it is ([`Standby::adopt`]), to be followed from the changelog's end; it
//! is neither sealed while the partition waits for its next owner nor opened again. Stores of
//! partitions the thread stops following are sealed (the sweep removes them after
//! `join.state.cleanup_delay`), and so are all of them when the stage stops. A worker killed
//! leaves them unsealed: the next start wipes and rebuilds them, as any unsealed folder.
//! Only one of the stage and the thread opens a folder at a time: the thread owns a
//! partition's folder from when it picks it until it releases it, and never picks one the
//! stage owns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use driftwatch_core::join::changelog::ChangelogReplay;
use driftwatch_core::join::{hot_capacity_for_budget, JoinConfig, JoinTask, StoreCheckpoint};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::standby_choice::{assigned_partitions, standby_partitions, Member};
use super::state::{now_ms, StoreLayout};
use crate::changelog::{RestoreContext, RestoreStart};
use crate::clients::consumer_config;
use crate::error::{Result, WorkerError};
use crate::settings::Settings;

/// How often the group is described and the standby set chosen again.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Share of `join.state.memory_budget` the standbys of a worker keep in memory together, on
/// top of the active tasks' budget: a standby is only written until it is needed.
pub(super) const STANDBY_SHARE: u64 = 4;

/// Longest wait for the thread to seal released stores: past it, the restore goes on and
/// finds them unsealed (rebuilt from the whole changelog, nothing lost).
const RELEASE_WAIT: Duration = Duration::from_secs(60);

enum Command {
    /// The stage's partitions now (after an assignment or a revocation).
    Owned(BTreeSet<i32>),
    /// Follow these partitions with the tasks the stage just gave up (committed, their
    /// stores open), each from the changelog offset its state reflects.
    Adopt(Vec<(i32, JoinTask, i64)>),
    /// Give up these partitions (the stage restores them next): answer with the task of
    /// each one followed, and where its replay goes on.
    Release(Vec<i32>, mpsc::Sender<Vec<(i32, RestoreStart)>>),
}

/// What the standby thread was given to work with.
pub(super) struct StandbyConfig {
    pub(super) settings: Settings,
    pub(super) layout: StoreLayout,
    pub(super) join_config: JoinConfig,
    pub(super) partitions: i32,
    pub(super) budget_bytes: u64,
}

/// Counters of the standby thread, read by the stage's metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StandbyCounters {
    /// Partitions followed now.
    pub partitions: u64,
    /// Changelog records applied to standbys.
    pub records: u64,
    /// Standby stores sealed (dropped, or at a stop).
    pub sealed: u64,
    /// Standby tasks handed to the stage, open, when their partition came to this worker.
    pub handed: u64,
}

#[derive(Default)]
struct Shared {
    held: BTreeSet<i32>,
    counters: StandbyCounters,
}

/// The standby thread of one join stage; dropping it seals every standby and stops it.
pub(super) struct Standby {
    commands: Option<mpsc::Sender<Command>>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

impl Standby {
    /// Starts the thread (its consumer is created here, so a bad client setting fails now).
    pub(super) fn start(config: StandbyConfig) -> Result<Self> {
        let group = config.settings.kafka.join_group_id.clone();
        let consumer: BaseConsumer<RestoreContext> =
            consumer_config(&config.settings.kafka, &format!("{group}-standby"))
                .set("fetch.max.bytes", "52428800")
                .create_with_context(RestoreContext)?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("join-standby".into())
            .spawn(move || Follower::new(config, consumer, thread_shared).run(&rx))
            .map_err(|e| WorkerError::State(format!("standby thread: {e}")))?;
        Ok(Standby {
            commands: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    /// Tells the thread which partitions the stage owns now.
    pub(super) fn owned(&self, owned: BTreeSet<i32>) {
        if let Some(tx) = &self.commands {
            let _ = tx.send(Command::Owned(owned));
        }
    }

    /// Gives the thread the tasks of partitions the stage gave up (committed; each with the
    /// changelog offset its state reflects) to follow as standbys; no wait.
    pub(super) fn adopt(&self, tasks: Vec<(i32, JoinTask, i64)>) {
        if tasks.is_empty() {
            return;
        }
        if let Some(tx) = &self.commands {
            // A thread that stopped drops them: unsealed, their folders go.
            let _ = tx.send(Command::Adopt(tasks));
        }
    }

    /// Has the thread give up `partitions` and waits for it (bounded): the tasks it followed
    /// of them, open, each with the changelog offset its replay goes on from.
    pub(super) fn release(&self, partitions: &[i32]) -> BTreeMap<i32, RestoreStart> {
        let Some(tx) = &self.commands else {
            return BTreeMap::new();
        };
        let (done, wait) = mpsc::channel();
        if tx
            .send(Command::Release(partitions.to_vec(), done))
            .is_err()
        {
            return BTreeMap::new();
        }
        match wait.recv_timeout(RELEASE_WAIT) {
            Ok(handed) => handed.into_iter().collect(),
            Err(_) => {
                warn!(partitions = ?partitions, "standby stores not released in time: the restore rebuilds them");
                BTreeMap::new()
            }
        }
    }

    /// Partitions whose folders the thread holds (kept by the sweep).
    pub(super) fn held(&self) -> BTreeSet<i32> {
        self.shared
            .lock()
            .map(|s| s.held.clone())
            .unwrap_or_default()
    }

    pub(super) fn counters(&self) -> StandbyCounters {
        self.shared.lock().map(|s| s.counters).unwrap_or_default()
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        // Closing the channel is the stop signal.
        self.commands = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the coordinator said of the join's group.
enum Described {
    Members(Vec<Member>),
    /// Not listed, or listed dead or empty: the group speaks KIP-848, whose members the
    /// classic description does not show (rust-rdkafka has no ConsumerGroupDescribe).
    NotListed,
    /// No answer, or an assignment that does not parse.
    Unknown,
}

/// One partition followed.
struct Warm {
    replay: ChangelogReplay,
    /// The changelog offset after the last record applied (where a resume replays from).
    next: i64,
}

/// The thread's state.
struct Follower {
    config: StandbyConfig,
    consumer: BaseConsumer<RestoreContext>,
    shared: Arc<Mutex<Shared>>,
    changelog: String,
    owned: BTreeSet<i32>,
    warm: BTreeMap<i32, Warm>,
    /// Whether the consumer's assignment must be set again.
    reassign: bool,
    last_refresh: Option<Instant>,
    /// The partitions followed as last logged.
    logged: BTreeSet<i32>,
}

impl Follower {
    fn new(
        config: StandbyConfig,
        consumer: BaseConsumer<RestoreContext>,
        shared: Arc<Mutex<Shared>>,
    ) -> Self {
        let changelog = config.settings.join_changelog_topic();
        Follower {
            config,
            consumer,
            shared,
            changelog,
            owned: BTreeSet::new(),
            warm: BTreeMap::new(),
            reassign: false,
            last_refresh: None,
            logged: BTreeSet::new(),
        }
    }

    fn run(mut self, commands: &mpsc::Receiver<Command>) {
        loop {
            loop {
                match commands.try_recv() {
                    Ok(c) => self.command(c),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return self.stop(),
                }
            }
            if self
                .last_refresh
                .is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
            {
                self.refresh();
            }
            if self.reassign {
                self.assign();
            }
            if self.warm.is_empty() {
                match commands.recv_timeout(Duration::from_millis(500)) {
                    Ok(c) => self.command(c),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return self.stop(),
                }
                continue;
            }
            let dropped = match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => apply(&mut self.warm, &self.shared, &m),
                Some(Err(e)) => {
                    warn!(error = %e, topic = %self.changelog, "standby: reading the changelog");
                    false
                }
                None => false,
            };
            if dropped {
                self.reassign = true;
                self.publish();
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Owned(owned) => {
                self.owned = owned;
                // Choose again now: the group just changed.
                self.last_refresh = None;
            }
            Command::Adopt(tasks) => {
                for (p, task, next) in tasks {
                    self.adopt(p, task, next);
                }
                self.publish();
            }
            Command::Release(partitions, done) => {
                let mut handed = Vec::new();
                for p in partitions {
                    self.owned.insert(p);
                    if let Some(start) = self.hand_over(p) {
                        handed.push((p, start));
                    }
                }
                self.publish();
                // A stage that stopped waiting drops them: unsealed, their folders go.
                let _ = done.send(handed);
            }
        }
    }

    /// Describes the group and follows the partitions it picks for this worker.
    fn refresh(&mut self) {
        self.last_refresh = Some(Instant::now());
        let replicas = self.config.settings.join.standby_replicas;
        let chosen = match self.describe() {
            Described::Members(members) => {
                standby_partitions(&members, &self.owned, self.config.partitions, replicas)
            }
            // Not listed by the classic protocol's description (a KIP-848 group is not):
            // every partition this worker does not own.
            Described::NotListed => Some((0..self.config.partitions).collect()),
            Described::Unknown => None,
        }
        .map(|mut c| {
            c.retain(|p| !self.owned.contains(p));
            c
        });
        let Some(chosen) = chosen else {
            // Not placed in the group now: drop only what the stage owns.
            let owned: Vec<i32> = self
                .warm
                .keys()
                .filter(|p| self.owned.contains(p))
                .copied()
                .collect();
            for p in owned {
                self.seal(p);
            }
            self.publish();
            return;
        };
        let current: BTreeSet<i32> = self.warm.keys().copied().collect();
        if current == chosen {
            return;
        }
        for p in current.difference(&chosen) {
            self.seal(*p);
        }
        let added: Vec<i32> = chosen.difference(&current).copied().collect();
        // Held before a folder is opened, so the stage's sweep leaves it alone.
        if let Ok(mut s) = self.shared.lock() {
            s.held = chosen.clone();
        }
        let hot = self.hot_capacity(chosen.len());
        for p in added {
            match self.open(p, hot) {
                Ok(w) => {
                    self.warm.insert(p, w);
                }
                Err(e) => warn!(partition = p, error = %e, "standby not started"),
            }
        }
        self.reassign = true;
        self.publish();
    }

    fn hot_capacity(&self, standbys: usize) -> usize {
        let share = self.config.budget_bytes / STANDBY_SHARE;
        hot_capacity_for_budget(share / u64::try_from(standbys.max(1)).unwrap_or(u64::MAX))
    }

    /// The group's members and what each holds of the predictions topic, as the classic
    /// protocol's description (DescribeGroups) gives them.
    fn describe(&self) -> Described {
        let group = &self.config.settings.kafka.join_group_id;
        let topic = &self.config.settings.topics.predictions;
        let Ok(list) = self
            .consumer
            .fetch_group_list(Some(group), Duration::from_secs(5))
        else {
            return Described::Unknown;
        };
        let Some(g) = list.groups().iter().find(|g| g.name() == group) else {
            return Described::NotListed;
        };
        if g.state() == "Dead" || g.members().is_empty() {
            return Described::NotListed;
        }
        let members: Option<Vec<Member>> = g
            .members()
            .iter()
            .map(|m| {
                let bytes = m.assignment().unwrap_or_default();
                let partitions = if bytes.is_empty() {
                    Vec::new()
                } else {
                    assigned_partitions(bytes, topic)?
                };
                Some(Member {
                    id: m.id().to_string(),
                    partitions,
                })
            })
            .collect();
        members.map_or(Described::Unknown, Described::Members)
    }

    fn open(&self, partition: i32, hot_capacity: usize) -> Result<Warm> {
        let (low, high) =
            self.consumer
                .fetch_watermarks(&self.changelog, partition, Duration::from_secs(10))?;
        let start = self.config.layout.open_for_replay(
            &self.config.join_config,
            &self.changelog,
            partition,
            (low, high),
            hot_capacity,
        )?;
        Ok(Warm {
            replay: ChangelogReplay::new(start.task),
            next: start.from.unwrap_or(low),
        })
    }

    /// Follows `partition` with `task`, given up by the stage, from changelog offset `next`:
    /// its hot entries cut to a standby's share of the budget (spilled here, off the
    /// stage's loop).
    fn adopt(&mut self, partition: i32, mut task: JoinTask, next: i64) {
        self.owned.remove(&partition);
        task.forget_transient();
        task.set_hot_capacity(self.hot_capacity(self.warm.len() + 1));
        if let Some(e) = task.cold_error() {
            warn!(partition, error = %e, "standby not adopted: its folder is dropped");
            return;
        }
        info!(
            partition,
            offset = next,
            entries = task.buffer().len(),
            "standby adopted from the stage"
        );
        if let Ok(mut s) = self.shared.lock() {
            s.held.insert(partition);
        }
        self.warm.insert(
            partition,
            Warm {
                replay: ChangelogReplay::new(task),
                next,
            },
        );
        self.reassign = true;
    }

    /// Stops following `partition` (the consumer's assignment is set again, its folder no
    /// longer held): what was followed of it, if anything.
    fn unfollow(&mut self, partition: i32) -> Option<Warm> {
        let w = self.warm.remove(&partition)?;
        self.reassign = true;
        if let Ok(mut s) = self.shared.lock() {
            s.held.remove(&partition);
        }
        Some(w)
    }

    /// Stops following `partition` and gives its task, open, to the stage that now owns the
    /// partition: no seal, no closing and reopening of the store, only the changelog after
    /// the last record applied left to replay. `None` when not followed, or when its store
    /// failed (dropped unsealed: the restore rebuilds it).
    fn hand_over(&mut self, partition: i32) -> Option<RestoreStart> {
        let w = self.unfollow(partition)?;
        match w.replay.suspend() {
            Ok(task) => {
                if let Ok(mut s) = self.shared.lock() {
                    s.counters.handed += 1;
                }
                info!(
                    partition,
                    offset = w.next,
                    entries = task.buffer().len(),
                    "standby handed over"
                );
                Some(RestoreStart {
                    task,
                    from: Some(w.next),
                })
            }
            Err(e) => {
                warn!(partition, error = %e, "standby not handed over: its folder is dropped");
                None
            }
        }
    }

    /// Seals `partition`'s store at the offset after its last record applied and stops
    /// following it (nothing when not followed).
    fn seal(&mut self, partition: i32) {
        let Some(w) = self.unfollow(partition) else {
            return;
        };
        let mut task = match w.replay.finish() {
            Ok(t) => t,
            Err(e) => {
                warn!(partition, error = %e, "standby store not sealed: its folder is dropped");
                return;
            }
        };
        let checkpoint = StoreCheckpoint {
            changelog_topic: self.changelog.clone(),
            changelog_partition: partition,
            changelog_offset: w.next,
            written_at_ms: now_ms(),
            ..Default::default()
        };
        match task.seal_cold_tier(checkpoint) {
            Ok(()) => {
                if let Ok(mut s) = self.shared.lock() {
                    s.counters.sealed += 1;
                }
                info!(
                    partition,
                    offset = w.next,
                    entries = task.buffer().len(),
                    "standby store sealed"
                );
            }
            Err(e) => warn!(partition, error = %e, "standby store not sealed"),
        }
    }

    fn assign(&mut self) {
        self.reassign = false;
        let mut tpl = TopicPartitionList::new();
        for (p, w) in &self.warm {
            if let Err(e) = tpl.add_partition_offset(&self.changelog, *p, Offset::Offset(w.next)) {
                warn!(partition = p, error = %e, "standby: partition not followed");
            }
        }
        let result = if tpl.count() == 0 {
            self.consumer.unassign()
        } else {
            self.consumer.assign(&tpl)
        };
        if let Err(e) = result {
            warn!(error = %e, "standby: changelog assignment not set; trying again");
            self.reassign = true;
        }
    }

    /// Publishes the counters and the folders held; logs the partitions followed when they
    /// changed.
    fn publish(&mut self) {
        let followed: BTreeSet<i32> = self.warm.keys().copied().collect();
        if followed != self.logged {
            info!(partitions = ?followed, "join standby replicas followed");
            self.logged = followed;
        }
        if let Ok(mut s) = self.shared.lock() {
            s.counters.partitions = self.warm.len() as u64;
            s.held = self.warm.keys().copied().collect();
        }
    }

    fn stop(mut self) {
        let all: Vec<i32> = self.warm.keys().copied().collect();
        for p in all {
            self.seal(p);
        }
        self.publish();
    }
}

/// Applies one changelog record to its standby; `true` when it failed and the standby was
/// dropped (unsealed, its folder goes, and a restore rebuilds it from the changelog).
fn apply(
    warm: &mut BTreeMap<i32, Warm>,
    shared: &Mutex<Shared>,
    m: &rdkafka::message::BorrowedMessage<'_>,
) -> bool {
    let p = m.partition();
    let Some(w) = warm.get_mut(&p) else {
        return false;
    };
    if m.offset() < w.next {
        return false;
    }
    match w.replay.apply(m.key().unwrap_or_default(), m.payload()) {
        Ok(()) => {
            w.next = m.offset() + 1;
            if let Ok(mut s) = shared.lock() {
                s.counters.records += 1;
            }
            false
        }
        Err(e) => {
            warn!(partition = p, offset = m.offset(), error = %e, "standby: changelog record not applied; the standby is dropped");
            warm.remove(&p);
            true
        }
    }
}
