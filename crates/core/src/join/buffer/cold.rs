//! The cold tier: where the join buffer keeps the entries that do not fit its memory budget.
//!
//! The buffer stays pure: it decides *what* goes cold and *when* an entry is due, a
//! [`ColdTier`] only stores. The worker implements it on an embedded disk store
//! (`driftwatch-state`); [`MemoryColdTier`] is the reference implementation the tests use.
//!
//! # Contract
//! - Every cold entry is stored under its key with a *due* time: the event time at which the
//!   watermark passing it changes the entry (a pending prediction expires unlabeled, a pending
//!   label becomes an orphan, a tombstone is dropped). The buffer computes it; the tier keeps
//!   an index ordered by it, so expiry never scans the whole tier.
//! - [`take_due`](ColdTier::take_due) hands back, and removes, entries whose due time is
//!   strictly before a bound (the watermark, as the buffer's `passed` rule), oldest due first.
//! - A key is in at most one tier at a time: the buffer removes an entry from the cold tier
//!   when it brings it back into memory.
//!
//! Errors are not recovered here: the buffer keeps the first one and goes on as if the tier
//! were empty from then on; its owner must stop without committing
//! ([`JoinBuffer::cold_error`](super::JoinBuffer::cold_error)), so nothing decided after the
//! failure reaches an output.

use std::collections::{BTreeSet, HashMap};

use super::super::{KeyHashBuilder, RequestKey};
use super::seal::StoreCheckpoint;
use super::EntryRecord;
use crate::TimestampMs;

/// A failure of the cold tier's storage, with its cause as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("join state store: {0}")]
pub struct ColdError(pub String);

/// Storage for the entries the join buffer moved out of memory. See the module docs.
pub trait ColdTier: std::fmt::Debug + Send {
    /// The entry stored under `key`, if any.
    fn get(&mut self, key: RequestKey) -> Result<Option<EntryRecord>, ColdError>;

    /// Stores entries (none of them is stored yet), each with its due time.
    fn put(&mut self, entries: &[(RequestKey, EntryRecord, TimestampMs)]) -> Result<(), ColdError>;

    /// Removes the entry stored under `key` with due time `due`.
    fn remove(&mut self, key: RequestKey, due: TimestampMs) -> Result<(), ColdError>;

    /// Removes up to `limit` entries whose due time is before `before`, oldest due first,
    /// and appends them to `out`.
    fn take_due(
        &mut self,
        before: TimestampMs,
        limit: usize,
        out: &mut Vec<(RequestKey, EntryRecord)>,
    ) -> Result<(), ColdError>;

    /// Bytes the tier occupies on its medium (0 when unknown).
    fn size_bytes(&self) -> u64 {
        0
    }

    /// Keeps the tier's entries beyond its buffer's life, described by `checkpoint` (see
    /// [`super::seal`]); the tier takes no more writes after it. A tier that cannot outlive
    /// its buffer says so.
    fn seal(&mut self, _checkpoint: &StoreCheckpoint) -> Result<(), ColdError> {
        Err(ColdError("this cold tier cannot be sealed".into()))
    }
}

/// A cold tier in memory: the reference for tests and a stand-in where no disk is wanted.
#[derive(Debug, Default, Clone)]
pub struct MemoryColdTier {
    entries: HashMap<RequestKey, EntryRecord, KeyHashBuilder>,
    by_due: BTreeSet<(TimestampMs, RequestKey)>,
    /// The checkpoint it was sealed with, if any.
    pub sealed: Option<StoreCheckpoint>,
}

impl MemoryColdTier {
    /// An empty tier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl ColdTier for MemoryColdTier {
    fn get(&mut self, key: RequestKey) -> Result<Option<EntryRecord>, ColdError> {
        Ok(self.entries.get(&key).copied())
    }

    fn put(&mut self, entries: &[(RequestKey, EntryRecord, TimestampMs)]) -> Result<(), ColdError> {
        for &(key, record, due) in entries {
            if self.entries.insert(key, record).is_some() {
                return Err(ColdError(format!("{key:?} stored twice")));
            }
            self.by_due.insert((due, key));
        }
        Ok(())
    }

    fn remove(&mut self, key: RequestKey, due: TimestampMs) -> Result<(), ColdError> {
        if self.entries.remove(&key).is_none() || !self.by_due.remove(&(due, key)) {
            return Err(ColdError(format!("{key:?} not stored with due {due}")));
        }
        Ok(())
    }

    fn take_due(
        &mut self,
        before: TimestampMs,
        limit: usize,
        out: &mut Vec<(RequestKey, EntryRecord)>,
    ) -> Result<(), ColdError> {
        for _ in 0..limit {
            let Some(&(due, key)) = self.by_due.first() else {
                break;
            };
            if due >= before {
                break;
            }
            self.by_due.pop_first();
            if let Some(record) = self.entries.remove(&key) {
                out.push((key, record));
            }
        }
        Ok(())
    }

    fn seal(&mut self, checkpoint: &StoreCheckpoint) -> Result<(), ColdError> {
        self.sealed = Some(checkpoint.clone());
        Ok(())
    }
}
