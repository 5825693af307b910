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
//!
//! # Warm-up before joining
//! A worker that starts has its standbys catch up with their changelogs before its stage
//! subscribes (`join.standby_warm_up`, [`Standby::warm_up`]): under the `consumer` protocol
//! it follows every partition, so whichever the coordinator moves to it at a scale-out are
//! handed over warm, with a tail to replay, instead of being rebuilt from the whole changelog
//! while their input waits (Kafka Streams' warm-up replicas serve the same end).

mod follower;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use driftwatch_core::join::{JoinConfig, JoinTask};
use rdkafka::consumer::BaseConsumer;
use tracing::warn;

use super::state::StoreLayout;
use crate::changelog::{RestoreContext, RestoreStart};
use crate::clients::consumer_config;
use crate::error::{Result, WorkerError};
use crate::settings::Settings;
use follower::Follower;

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
    /// Pick the partitions to follow now and answer once each has reached its changelog's
    /// end as of now (before the stage joins the group).
    WarmUp(mpsc::Sender<WarmedUp>),
}

/// What a warm-up before joining the group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WarmedUp {
    /// Partitions followed and caught up.
    pub(super) partitions: usize,
    /// Changelog records applied meanwhile.
    pub(super) records: u64,
    /// Rounds it took: each towards the changelog's ends as they were when it began.
    pub(super) rounds: u32,
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
                // Kafka answers a connection's requests in order: each end-offset query (a
                // partition newly followed, a warm-up) waits behind the fetch in flight, which
                // an idle changelog holds for up to this long.
                .set("fetch.wait.max.ms", "100")
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

    /// Before this worker joins the group: has the thread pick its partitions now; the answer
    /// comes once each has caught up with its changelog's end as of now. Under the
    /// `consumer` protocol the thread follows every partition this worker does not own, so
    /// whichever partitions the coordinator then moves here are warm: a scale-out moves them
    /// with a tail to replay, not their whole changelog (as Kafka Streams' warm-up replicas).
    /// `None` when the thread is gone.
    pub(super) fn warm_up(&self) -> Option<mpsc::Receiver<WarmedUp>> {
        let tx = self.commands.as_ref()?;
        let (done, wait) = mpsc::channel();
        tx.send(Command::WarmUp(done)).ok()?;
        Some(wait)
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
