//! Sealing a cold tier at a clean close, and resuming a buffer from a sealed one.
//!
//! A cold tier on disk can outlive its task: when the task stops after its last commit, every
//! hot entry goes cold ([`JoinBuffer::spill_all`]) and the tier is sealed with a
//! [`StoreCheckpoint`]: what the task holds besides its entries (interner, watermark,
//! progress), the counts the buffer keeps of its cold entries, and the changelog offset the
//! whole reflects. A later task of the same partition resumes from it
//! ([`JoinBuffer::adopt_cold_tier`]) and replays only the changelog from that offset.
//! Where the checkpoint is kept, and when it is trusted, is the tier's and its owner's
//! business (the worker's `driftwatch-state`).

use super::{EntryRecord, JoinBuffer};
use crate::join::{ColdError, JoinConfig, JoinError, RequestKey, TaskCheckpoint};
use crate::TimestampMs;

/// What a buffer knows of its cold entries besides the entries themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColdState {
    /// Cold entries by kind: pending predictions, pending labels, tombstones.
    pub counts: [u64; 3],
    /// A lower bound of the oldest cold pending event time (metrics).
    pub oldest_pending: Option<TimestampMs>,
    /// The buffer's epoch when sealed (anchors the table of the resumed buffer).
    pub epoch: TimestampMs,
}

/// A sealed cold tier's description: with the tier's entries, the whole state of a task as of
/// `changelog_offset`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCheckpoint {
    /// The changelog topic the state comes from.
    pub changelog_topic: String,
    /// Its partition.
    pub changelog_partition: i32,
    /// The first changelog offset the state may not reflect: a resume replays from here.
    pub changelog_offset: i64,
    /// Wall-clock time it was written, ms since the epoch.
    pub written_at_ms: i64,
    /// [`JoinConfig::due_digest`] of the settings the stored due times were computed with.
    pub config_digest: u64,
    /// Watermark and progress.
    pub task: TaskCheckpoint,
    /// Interned models from id 1 (0 is the reserved unknown model): (model id, version).
    pub models: Vec<(String, String)>,
    /// Interned classes from id 0.
    pub classes: Vec<String>,
    /// The buffer's view of the tier.
    pub cold: ColdState,
}

impl JoinConfig {
    /// A digest of the settings an entry's due time depends on (label timeouts, overrides,
    /// orphan timeout): a store sealed under other values must not be resumed, its due index
    /// would be wrong. FNV-1a, stable across builds.
    pub fn due_digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        feed(&self.label_timeout_ms.to_be_bytes());
        feed(&self.orphan_timeout_ms.to_be_bytes());
        for (model, timeout) in &self.label_timeout_overrides_ms {
            feed(&(model.len() as u64).to_be_bytes());
            feed(model.as_bytes());
            feed(&timeout.to_be_bytes());
        }
        h
    }
}

impl JoinBuffer {
    /// Gives an empty buffer a cold tier that already holds entries (a sealed one, see the
    /// module docs), with what the buffer knew of them when it was sealed.
    pub fn adopt_cold_tier(
        &mut self,
        tier: Box<dyn super::ColdTier>,
        hot_capacity: usize,
        state: &ColdState,
    ) {
        self.set_cold_tier(tier, hot_capacity);
        self.params.epoch = state.epoch;
        if let Some(cold) = self.cold.as_mut() {
            cold.counts = state
                .counts
                .map(|c| usize::try_from(c).unwrap_or(usize::MAX));
            cold.oldest_pending = state.oldest_pending;
        }
    }

    /// Moves every hot entry to the cold tier and returns what the buffer knows of the tier
    /// then. Fails without a tier, or when the tier failed (now or before).
    pub fn spill_all(&mut self) -> Result<ColdState, ColdError> {
        let epoch = self.params.epoch;
        let Some(cold) = self.cold.as_mut() else {
            return Err(ColdError("no cold tier to spill to".into()));
        };
        if let Some(e) = cold.error() {
            return Err(e.clone());
        }
        let params = &self.params;
        let mut batch: Vec<(RequestKey, EntryRecord, TimestampMs)> = Vec::with_capacity(8192);
        let entries: Vec<(RequestKey, EntryRecord)> = self
            .map
            .drain()
            .map(|(k, s)| (k, params.record(&s)))
            .collect();
        for chunk in entries.chunks(8192) {
            batch.clear();
            batch.extend(chunk.iter().map(|(k, e)| (*k, *e, params.due(e))));
            cold.put_counted(&batch)?;
        }
        Ok(ColdState {
            counts: cold.counts.map(|c| c as u64),
            oldest_pending: cold.oldest_pending,
            epoch,
        })
    }

    /// Seals the cold tier with `checkpoint` (after [`spill_all`](Self::spill_all)).
    pub fn seal_cold_tier(&mut self, checkpoint: &StoreCheckpoint) -> Result<(), ColdError> {
        match self.cold.as_mut() {
            Some(cold) => cold.seal(checkpoint),
            None => Err(ColdError("no cold tier to seal".into())),
        }
    }

    /// Sets `key`'s entry to `entry` (`None`: removes it), wherever it lives: a changelog
    /// record replayed in log order. No rule runs (as in [`restore_entry`](Self::restore_entry)).
    pub fn replay_entry(
        &mut self,
        key: RequestKey,
        entry: Option<EntryRecord>,
    ) -> Result<(), JoinError> {
        self.promote(key);
        self.map.remove(&key);
        match entry {
            Some(e) => self.restore_entry(key, e),
            None => Ok(()),
        }
    }
}
