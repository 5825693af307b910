//! Standby replicas of the monitor state (`monitor.standby_replicas`): a worker keeps the
//! latest monitor changelog record of every key of partitions it does not own, so a partition
//! that moves to it restores from that copy plus the changelog's tail instead of reading the
//! whole changelog partition.
//!
//! # How
//! One thread per worker ([`MonitorStandby`]) with its own changelog consumer (assigned,
//! never subscribed; `read_committed`, so aborted records are never kept). Every
//! [`REFRESH_EVERY`], and whenever the stage's assignment changes, it asks the coordinator to
//! describe the monitor's group and picks its partitions as the join's standbys do
//! ([`crate::join::standby_choice`]: `replicas` members other than the owner per partition;
//! under the `consumer` protocol, whose members the client cannot list, every partition it
//! does not own). Each partition followed is a map of key → latest value (`None`: deleted),
//! which is what a restore builds from the changelog ([`super::models`]): the restore of a
//! partition handed over ([`MonitorStandby::release`]) starts from the map and reads only the
//! records after the last one it holds. The state of a model is small next to the join's
//! (kilobytes to megabytes per model, not millions of entries), so the copy stays in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::changelog::RestoreContext;
use crate::clients::consumer_config;
use crate::error::{Result, WorkerError};
use crate::join::standby_choice::{choose, describe};
use crate::settings::Settings;

/// How often the group is described and the standby set chosen again.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Longest wait for the thread to hand partitions over: past it, the restore reads them
/// from the changelog's start.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// One partition's copy: the latest value of each key (`None`: deleted), and the changelog
/// offset after the last record applied (`None`: nothing read yet).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Followed {
    pub(super) latest: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub(super) next: Option<i64>,
}

impl Followed {
    /// Applies one changelog record at `offset`.
    pub(super) fn apply(&mut self, offset: i64, key: &[u8], value: Option<&[u8]>) {
        self.latest.insert(key.to_vec(), value.map(<[u8]>::to_vec));
        self.next = Some(offset + 1);
    }
}

enum Command {
    /// The stage's partitions now.
    Owned(BTreeSet<i32>),
    /// Give up these partitions (the stage restores them next): answer with the copy of
    /// each one followed.
    Release(Vec<i32>, mpsc::Sender<BTreeMap<i32, Followed>>),
}

/// The monitor standby thread of a worker; stopped when dropped.
pub(super) struct MonitorStandby {
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl MonitorStandby {
    /// Starts following the monitor changelog (`partitions` partitions, as the partials
    /// topic) for the worker of `settings`.
    pub(super) fn start(settings: &Settings, partitions: i32) -> Result<Self> {
        let consumer: BaseConsumer<RestoreContext> = consumer_config(
            &settings.kafka,
            &format!("{}-standby", settings.monitor.group_id),
        )
        .set("enable.partition.eof", "false")
        // Hand-overs ask for nothing; a short wait keeps commands answered promptly.
        .set("fetch.wait.max.ms", "100")
        .create_with_context(RestoreContext)?;
        let (tx, rx) = mpsc::channel();
        let mut follower = Follower {
            consumer,
            topic: settings.monitor_changelog_topic(),
            group: settings.monitor.group_id.clone(),
            partials: settings.topics.model_partials.clone(),
            partitions,
            replicas: settings.monitor.standby_replicas,
            owned: BTreeSet::new(),
            followed: BTreeMap::new(),
            reassign: false,
            last_refresh: None,
        };
        let thread = std::thread::Builder::new()
            .name("monitor-standby".into())
            .spawn(move || follower.run(&rx))
            .map_err(|e| WorkerError::State(format!("monitor standby thread: {e}")))?;
        Ok(MonitorStandby {
            commands: Some(tx),
            thread: Some(thread),
        })
    }

    /// The stage now owns `owned`: they are not followed, and the others are chosen again.
    pub(super) fn owned(&self, owned: BTreeSet<i32>) {
        if let Some(c) = &self.commands {
            let _ = c.send(Command::Owned(owned));
        }
    }

    /// Stops following `partitions` (the stage owns them from now on) and returns the copy
    /// of each one that was followed.
    pub(super) fn release(&self, partitions: &[i32]) -> BTreeMap<i32, Followed> {
        let Some(c) = &self.commands else {
            return BTreeMap::new();
        };
        let (tx, rx) = mpsc::channel();
        if c.send(Command::Release(partitions.to_vec(), tx)).is_err() {
            return BTreeMap::new();
        }
        rx.recv_timeout(RELEASE_WAIT).unwrap_or_else(|_| {
            warn!(
                ?partitions,
                "monitor standby did not answer: restoring from the changelog"
            );
            BTreeMap::new()
        })
    }
}

impl Drop for MonitorStandby {
    fn drop(&mut self) {
        self.commands = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread's state.
struct Follower {
    consumer: BaseConsumer<RestoreContext>,
    topic: String,
    group: String,
    partials: String,
    partitions: i32,
    replicas: usize,
    owned: BTreeSet<i32>,
    followed: BTreeMap<i32, Followed>,
    reassign: bool,
    last_refresh: Option<Instant>,
}

impl Follower {
    fn run(&mut self, commands: &mpsc::Receiver<Command>) {
        loop {
            loop {
                match commands.try_recv() {
                    Ok(c) => self.command(c),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
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
            if self.followed.is_empty() {
                match commands.recv_timeout(Duration::from_millis(500)) {
                    Ok(c) => self.command(c),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                continue;
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if let Some(f) = self.followed.get_mut(&m.partition()) {
                        f.apply(m.offset(), m.key().unwrap_or_default(), m.payload());
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %e, topic = %self.topic, "monitor standby: reading the changelog");
                }
                None => {}
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Owned(owned) => {
                self.owned = owned;
                self.last_refresh = None;
            }
            Command::Release(partitions, done) => {
                let mut handed = BTreeMap::new();
                for p in partitions {
                    self.owned.insert(p);
                    if let Some(f) = self.followed.remove(&p) {
                        handed.insert(p, f);
                        self.reassign = true;
                    }
                }
                let _ = done.send(handed);
            }
        }
    }

    /// Describes the group and follows the partitions it picks for this worker.
    fn refresh(&mut self) {
        self.last_refresh = Some(Instant::now());
        let Some(chosen) = choose(
            describe(self.consumer.client(), &self.group, &self.partials),
            &self.owned,
            self.partitions,
            self.replicas,
        ) else {
            // Not placed in the group now: drop only what the stage owns.
            let before = self.followed.len();
            self.followed.retain(|p, _| !self.owned.contains(p));
            self.reassign |= self.followed.len() != before;
            return;
        };
        let current: BTreeSet<i32> = self.followed.keys().copied().collect();
        if current == chosen {
            return;
        }
        self.followed.retain(|p, _| chosen.contains(p));
        for p in chosen {
            self.followed.entry(p).or_default();
        }
        info!(partitions = ?self.followed.keys().collect::<Vec<_>>(), "monitor standby replicas followed");
        self.reassign = true;
    }

    /// Assigns the consumer the partitions followed, each from where its copy stands.
    fn assign(&mut self) {
        self.reassign = false;
        let mut tpl = TopicPartitionList::new();
        for (&p, f) in &self.followed {
            let offset = f.next.map_or(Offset::Beginning, Offset::Offset);
            if let Err(e) = tpl.add_partition_offset(&self.topic, p, offset) {
                warn!(error = %e, partition = p, "monitor standby: partition not followed");
            }
        }
        if let Err(e) = self.consumer.assign(&tpl) {
            warn!(error = %e, "monitor standby: assigning the changelog");
            self.reassign = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_keeps_the_latest_value_of_each_key_and_where_it_stands() {
        let mut f = Followed::default();
        f.apply(3, b"a", Some(b"1"));
        f.apply(4, b"b", Some(b"2"));
        f.apply(5, b"a", Some(b"3"));
        f.apply(6, b"b", None);
        assert_eq!(f.next, Some(7));
        assert_eq!(f.latest.get(&b"a"[..]), Some(&Some(b"3".to_vec())));
        assert_eq!(f.latest.get(&b"b"[..]), Some(&None));
    }
}
