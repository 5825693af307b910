//! The standby thread's side: what it follows, and how it picks, opens, applies, hands over
//! and seals standbys (see the parent module for the design).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftwatch_core::join::changelog::ChangelogReplay;
use driftwatch_core::join::{hot_capacity_for_budget, JoinTask, StoreCheckpoint};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::super::standby_choice::{choose, describe};
use super::super::state::now_ms;
use super::{
    Command, Shared, StandbyConfig, StandbyCounters, WarmedUp, REFRESH_EVERY, STANDBY_SHARE,
};
use crate::changelog::{position_of, RestoreContext, RestoreStart};
use crate::error::Result;

/// A warm-up in progress: the end to reach per partition in this round, and whom to tell.
struct Warming {
    targets: BTreeMap<i32, i64>,
    records_before: u64,
    done: mpsc::Sender<WarmedUp>,
    last_check: Instant,
    /// When the round began: the changelog grew meanwhile, so a long round is followed by
    /// another towards the ends as they are then ([`WARM_ROUND`]).
    round: Instant,
    rounds: u32,
}

/// A warm-up round that took longer than this is followed by another, towards the changelog's
/// ends as they are when it ends: the tail left to the restore is what one short round lets
/// pile up, not what the whole warm-up did (tens of thousands of records a partition while
/// four workers replay millions on two cores).
const WARM_ROUND: Duration = Duration::from_secs(1);

/// At most this many rounds (a changelog written faster than a standby applies never lets
/// the last round be short).
const MAX_WARM_ROUNDS: u32 = 8;

/// How long a task adopted from the stage keeps the hot entries it had as the stage's before
/// they are cut to a standby's share. Cutting spills most of them to the store (0.5–1 s for
/// 280 k entries on this machine), and a rebalance that revokes some partitions of a worker
/// usually assigns it others a second or two later: their hand-over must not wait behind the
/// spills. The memory meanwhile is what the stage held a moment before.
const TRIM_AFTER: Duration = Duration::from_secs(5);

/// One partition followed.
struct Warm {
    replay: ChangelogReplay,
    /// The changelog offset after the last record applied (where a resume replays from).
    next: i64,
}

/// The thread's state.
pub(super) struct Follower {
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
    warming: Option<Warming>,
    /// Tasks adopted from the stage whose hot entries are not yet cut to a standby's share,
    /// with when they were adopted ([`TRIM_AFTER`]).
    untrimmed: Vec<(i32, Instant)>,
}

impl Follower {
    pub(super) fn new(
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
            warming: None,
            untrimmed: Vec::new(),
        }
    }

    pub(super) fn run(mut self, commands: &mpsc::Receiver<Command>) {
        loop {
            loop {
                match commands.try_recv() {
                    Ok(c) => self.command(c),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return self.stop(),
                }
            }
            self.trim_one();
            if self
                .last_refresh
                .is_none_or(|t| t.elapsed() >= REFRESH_EVERY)
            {
                self.refresh();
            }
            if self.reassign {
                self.assign();
            }
            self.check_warm_up();
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
            Command::WarmUp(done) => {
                self.refresh();
                if self.reassign {
                    self.assign();
                }
                self.warming = Some(Warming {
                    targets: self.changelog_ends(),
                    records_before: self.counters().records,
                    done,
                    last_check: Instant::now(),
                    round: Instant::now(),
                    rounds: 1,
                });
                self.check_warm_up();
            }
        }
    }

    /// The changelog's end (high watermark) of every partition followed.
    fn changelog_ends(&self) -> BTreeMap<i32, i64> {
        let mut ends = BTreeMap::new();
        for &p in self.warm.keys() {
            match self
                .consumer
                .fetch_watermarks(&self.changelog, p, Duration::from_secs(10))
            {
                Ok((_, high)) => {
                    ends.insert(p, high);
                }
                Err(e) => {
                    warn!(partition = p, error = %e, "standby warm-up: changelog end unknown; not waited for");
                }
            }
        }
        ends
    }

    fn counters(&self) -> StandbyCounters {
        self.shared.lock().map(|s| s.counters).unwrap_or_default()
    }

    /// Answers the warm-up once every partition it waits for is followed no more, or its
    /// consumer position (past the commit markers: `read_committed`) reached the end taken
    /// when the round began, in a round short enough ([`WARM_ROUND`]). Checked at most every
    /// 100 ms.
    fn check_warm_up(&mut self) {
        let Some(w) = &mut self.warming else {
            return;
        };
        let warm = &self.warm;
        w.targets.retain(|p, _| warm.contains_key(p));
        if !w.targets.is_empty() {
            if w.last_check.elapsed() < Duration::from_millis(100) {
                return;
            }
            w.last_check = Instant::now();
            let Ok(positions) = self.consumer.position() else {
                return;
            };
            let changelog = &self.changelog;
            w.targets.retain(|p, end| {
                position_of(&positions, changelog, *p).is_none_or(|o| o < *end)
                    && warm.get(p).is_none_or(|f| f.next < *end)
            });
            if !w.targets.is_empty() {
                return;
            }
        }
        let again = self
            .warming
            .as_ref()
            .is_some_and(|w| w.round.elapsed() > WARM_ROUND && w.rounds < MAX_WARM_ROUNDS);
        if again {
            let ends = self.changelog_ends();
            if let Some(w) = &mut self.warming {
                w.rounds += 1;
                w.round = Instant::now();
                w.targets = ends;
            }
            return;
        }
        if let Some(w) = self.warming.take() {
            let records = self.counters().records.saturating_sub(w.records_before);
            let _ = w.done.send(WarmedUp {
                partitions: self.warm.len(),
                records,
                rounds: w.rounds,
            });
        }
    }

    /// Describes the group and follows the partitions it picks for this worker.
    fn refresh(&mut self) {
        self.last_refresh = Some(Instant::now());
        let settings = &self.config.settings;
        let chosen = choose(
            describe(
                self.consumer.client(),
                &settings.kafka.join_group_id,
                &settings.topics.predictions,
            ),
            &self.owned,
            self.config.partitions,
            settings.join.standby_replicas,
        );
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

    /// Follows `partition` with `task`, given up by the stage, from changelog offset `next`.
    /// Its hot entries are cut to a standby's share of the budget [`TRIM_AFTER`] later
    /// ([`Self::trim_one`], here, off the stage's loop).
    fn adopt(&mut self, partition: i32, mut task: JoinTask, next: i64) {
        self.owned.remove(&partition);
        task.forget_transient();
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
        self.untrimmed.retain(|(p, _)| *p != partition);
        self.untrimmed.push((partition, Instant::now()));
        self.reassign = true;
    }

    /// Cuts the hot entries of one adopted task, adopted at least [`TRIM_AFTER`] ago, to a
    /// standby's share (one a call, so commands are seen between two spills); a task handed
    /// back to the stage meanwhile is not cut. A store that fails drops the standby.
    fn trim_one(&mut self) {
        let Some(i) = self
            .untrimmed
            .iter()
            .position(|(_, at)| at.elapsed() >= TRIM_AFTER)
        else {
            return;
        };
        let (partition, _) = self.untrimmed.remove(i);
        let capacity = self.hot_capacity(self.warm.len());
        let Some(w) = self.warm.get_mut(&partition) else {
            return;
        };
        if let Err(e) = w.replay.set_hot_capacity(capacity) {
            warn!(partition, error = %e, "standby dropped: its store failed");
            self.unfollow(partition);
            self.publish();
        }
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
