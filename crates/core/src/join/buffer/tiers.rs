//! The buffer's two tiers: hot entries in its table, cold ones in a [`ColdTier`].
//!
//! # Budget
//! With a cold tier the table is sized once for `hot_capacity` entries and never grows: a
//! budget of `b` bytes buys `2^⌊log2(b / 33)⌋` buckets of 33 B (key, slot, control byte) and
//! 7/8 of them as capacity ([`hot_capacity_for_budget`]); 256 MiB holds 3.67 M hot entries in
//! a 138 MiB table. Before an access that may insert, a full table spills: the oldest entries
//! by event time go cold until 3/8 of the capacity is left. Why 3/8: removals leave hashbrown
//! "deleted" markers that use up its growth allowance; below half of its capacity hashbrown
//! rehashes in place instead of doubling, so the spill goes under half and the table keeps
//! its size. Finding the oldest takes a 4096-bin histogram of the slots' time offsets (one
//! pass, no allocation that grows with the table), then one `extract_if` pass.
//!
//! # Accounting
//! The tiers change where an entry lives, never what happens to it:
//! - an access whose key is not hot looks in the cold tier first and brings the entry back
//!   into the table (removing it from the tier); the hot rules then apply unchanged, including
//!   check-on-access expiry;
//! - a sweep takes from the cold tier every entry whose due time the watermark has passed,
//!   applies the same [`expire_slot`](super::params::Params::expire_slot) as to a hot slot,
//!   records the same changes, and puts what is kept (new tombstones) back cold with its
//!   next due time;
//! - [`expire_all`](JoinBuffer::expire_all) drains the cold tier as it clears the table.
//!
//! The changelog sees no difference: going cold or coming back is not a change of state.

use super::cold::{ColdError, ColdTier};
use super::slot::{KIND_LABEL, KIND_PREDICTION, KIND_TOMBSTONE};
use super::{EntryRecord, JoinBuffer};
use crate::join::{JoinEvent, RequestKey};
use crate::TimestampMs;

/// Entries taken from the cold tier per call during a sweep: bounds the memory a sweep that
/// expires millions of cold entries needs.
const TAKE_CHUNK: usize = 8192;

/// Entries handed to the cold tier per call during a spill.
const PUT_CHUNK: usize = 8192;

/// Bins of the time histogram that picks what a spill moves out.
const BINS: usize = 4096;

/// The cold tier of a buffer and what the buffer knows of it.
#[derive(Debug)]
pub(super) struct Cold {
    tier: Box<dyn ColdTier>,
    hot_capacity: usize,
    /// Cold entries by slot kind (pending predictions, pending labels, tombstones).
    pub(super) counts: [usize; 3],
    /// Event time of the oldest pending entry sent cold since the tier last held no pending
    /// entry: a lower bound of the oldest cold pending entry (metrics only).
    pub(super) oldest_pending: Option<TimestampMs>,
    /// The first storage failure; the tier is not used after it.
    error: Option<ColdError>,
    /// Entries moved out of the table since the tier was set (metrics, tests).
    spilled: u64,
}

/// The hot capacity (entries) that a table of at most `budget_bytes` holds. See the module docs.
pub fn hot_capacity_for_budget(budget_bytes: u64) -> usize {
    let buckets = (budget_bytes / 33).max(16);
    let buckets = 1u64 << (63 - buckets.leading_zeros());
    usize::try_from(buckets / 8 * 7).unwrap_or(usize::MAX / 2)
}

fn kind_index(flags: u16) -> usize {
    match flags & super::slot::KIND_MASK {
        KIND_PREDICTION => 0,
        KIND_LABEL => 1,
        _ => 2,
    }
}

impl Cold {
    pub(super) fn error(&self) -> Option<&ColdError> {
        self.error.as_ref()
    }

    /// Stores `batch` and counts it; a failure is kept and returned.
    pub(super) fn put_counted(
        &mut self,
        batch: &[(RequestKey, EntryRecord, TimestampMs)],
    ) -> Result<(), ColdError> {
        match self.tier.put(batch) {
            Ok(()) => {
                batch.iter().for_each(|(_, e, _)| self.add(e));
                Ok(())
            }
            Err(err) => {
                self.fail(err.clone());
                Err(err)
            }
        }
    }

    /// Seals the tier (see [`super::seal`]); a failure is kept and returned.
    pub(super) fn seal(
        &mut self,
        checkpoint: &super::seal::StoreCheckpoint,
    ) -> Result<(), ColdError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.tier
            .seal(checkpoint)
            .inspect_err(|err| self.fail(err.clone()))
    }

    fn fail(&mut self, e: ColdError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn usable(&self) -> bool {
        self.error.is_none()
    }

    fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    fn add(&mut self, e: &EntryRecord) {
        let k = kind_index(e.flags);
        if let Some(c) = self.counts.get_mut(k) {
            *c += 1;
        }
        if e.flags & super::slot::KIND_MASK != KIND_TOMBSTONE {
            self.oldest_pending = Some(self.oldest_pending.map_or(e.time, |o| o.min(e.time)));
        }
    }

    fn sub(&mut self, e: &EntryRecord) {
        if let Some(c) = self.counts.get_mut(kind_index(e.flags)) {
            *c = c.saturating_sub(1);
        }
        if self.counts[0] == 0 && self.counts[1] == 0 {
            self.oldest_pending = None;
        }
    }
}

impl JoinBuffer {
    /// Gives an empty buffer a cold tier: at most `hot_capacity` entries stay in memory, the
    /// rest go to `tier` (oldest by event time first). See [`hot_capacity_for_budget`].
    pub fn set_cold_tier(&mut self, tier: Box<dyn ColdTier>, hot_capacity: usize) {
        let hot_capacity = hot_capacity.max(2);
        self.map = hashbrown::HashMap::with_capacity_and_hasher(hot_capacity, Default::default());
        self.cold = Some(Cold {
            tier,
            hot_capacity,
            counts: [0; 3],
            oldest_pending: None,
            error: None,
            spilled: 0,
        });
    }

    /// Changes how many entries stay in memory (a standby's task handed to the stage that
    /// now owns its partition gets the owner's share of the budget). Past the new capacity
    /// the oldest go cold as in a spill; the table is then rebuilt at the new size, so it
    /// still never grows.
    pub fn set_hot_capacity(&mut self, hot_capacity: usize) {
        let Some(cold) = self.cold.as_mut() else {
            return;
        };
        cold.hot_capacity = hot_capacity.max(2);
        let capacity = cold.hot_capacity;
        if self.map.len() >= capacity {
            self.make_room();
        }
        let mut map = hashbrown::HashMap::with_capacity_and_hasher(capacity, Default::default());
        map.extend(self.map.drain());
        self.map = map;
    }

    /// The first failure of the cold tier, if any. After one the buffer's decisions can be
    /// wrong: the owner must stop without committing them.
    pub fn cold_error(&self) -> Option<&ColdError> {
        self.cold.as_ref().and_then(|c| c.error.as_ref())
    }

    /// Entries in the cold tier.
    pub fn cold_len(&self) -> usize {
        self.cold.as_ref().map_or(0, Cold::total)
    }

    /// Entries moved from the table to the cold tier since it was set (an entry that came
    /// back and went cold again counts twice).
    pub fn cold_spilled(&self) -> u64 {
        self.cold.as_ref().map_or(0, |c| c.spilled)
    }

    /// Entries in memory.
    pub fn hot_len(&self) -> usize {
        self.map.len()
    }

    /// Bytes the cold tier occupies on its medium.
    pub fn cold_size_bytes(&self) -> u64 {
        self.cold.as_ref().map_or(0, |c| c.tier.size_bytes())
    }

    /// Counts of cold entries (pending predictions, pending labels, tombstones) and a lower
    /// bound of the oldest cold pending event time.
    pub(super) fn cold_stats(&self) -> ([usize; 3], Option<TimestampMs>) {
        self.cold
            .as_ref()
            .map_or(([0; 3], None), |c| (c.counts, c.oldest_pending))
    }

    /// Brings `key`'s entry into the table when it is cold. Called before every access.
    pub(super) fn promote(&mut self, key: RequestKey) {
        let Some(cold) = self.cold.as_mut() else {
            return;
        };
        if !cold.usable() || cold.total() == 0 || self.map.contains_key(&key) {
            return;
        }
        match cold.tier.get(key) {
            Ok(Some(e)) => {
                let due = self.params.due(&e);
                if let Err(err) = cold.tier.remove(key, due) {
                    cold.fail(err);
                    return;
                }
                cold.sub(&e);
                self.map.insert(key, self.params.slot_of(&e));
            }
            Ok(None) => {}
            Err(err) => cold.fail(err),
        }
    }

    /// Spills the oldest entries when the table is full (see the module docs), so that the
    /// one insert an access may make fits without the table growing.
    pub(super) fn make_room(&mut self) {
        let Some(cold) = self.cold.as_mut() else {
            return;
        };
        let len = self.map.len();
        let cap = cold.hot_capacity;
        let no_growth_left = self.map.capacity() <= len;
        if !cold.usable() || !(len >= cap || (no_growth_left && len + 1 > cap / 2)) {
            return;
        }
        let keep = (cap / 8 * 3).min(len.saturating_sub(1));
        let mut n = len - keep;
        // Histogram of time offsets: the spill takes whole bins from the oldest, then the
        // first entries met in the bin where the count is reached.
        let (lo, hi) = self.map.values().fold((u32::MAX, 0u32), |(lo, hi), s| {
            (lo.min(s.time), hi.max(s.time))
        });
        let width = (u64::from(hi.saturating_sub(lo)) / BINS as u64) + 1;
        let bin = |t: u32| (u64::from(t.saturating_sub(lo)) / width) as usize;
        let mut hist = [0usize; BINS];
        for s in self.map.values() {
            if let Some(h) = hist.get_mut(bin(s.time)) {
                *h += 1;
            }
        }
        let mut cut = BINS;
        for (b, &c) in hist.iter().enumerate() {
            if c >= n {
                cut = b;
                break;
            }
            n -= c;
        }
        let params = &self.params;
        let mut batch: Vec<(RequestKey, EntryRecord, TimestampMs)> =
            Vec::with_capacity(PUT_CHUNK.min(len));
        let flush = |batch: &mut Vec<(RequestKey, EntryRecord, TimestampMs)>, cold: &mut Cold| {
            if cold.usable() {
                match cold.tier.put(batch) {
                    Ok(()) => batch.iter().for_each(|(_, e, _)| cold.add(e)),
                    Err(err) => cold.fail(err),
                }
            }
            batch.clear();
        };
        let spilled = self.map.extract_if(|_, s| {
            let b = bin(s.time);
            if b < cut {
                true
            } else if b == cut && n > 0 {
                n -= 1;
                true
            } else {
                false
            }
        });
        for (key, slot) in spilled {
            let e = params.record(&slot);
            batch.push((key, e, params.due(&e)));
            if batch.len() == PUT_CHUNK {
                flush(&mut batch, cold);
            }
        }
        flush(&mut batch, cold);
        cold.spilled += (len - self.map.len()) as u64;
    }

    /// The cold part of a sweep: every entry the watermark has passed the due time of.
    pub(super) fn sweep_cold(&mut self, sink: &mut impl FnMut(JoinEvent)) {
        let Some(cold) = self.cold.as_mut() else {
            return;
        };
        let params = &self.params;
        let mut taken = Vec::new();
        let mut back = Vec::new();
        while cold.usable() && cold.total() > 0 {
            taken.clear();
            if let Err(err) = cold.tier.take_due(params.watermark, TAKE_CHUNK, &mut taken) {
                cold.fail(err);
                break;
            }
            back.clear();
            for (key, e) in &taken {
                cold.sub(e);
                let mut slot = params.slot_of(e);
                let keep = params.expire_slot(*key, &mut slot, sink);
                let after = keep.then(|| params.record(&slot));
                if let Some(c) = self.changes.as_mut() {
                    c.push((*key, after));
                }
                if let Some(a) = after {
                    back.push((*key, a, params.due(&a)));
                }
            }
            if !back.is_empty() {
                match cold.tier.put(&back) {
                    Ok(()) => back.iter().for_each(|(_, e, _)| cold.add(e)),
                    Err(err) => cold.fail(err),
                }
            }
            if taken.len() < TAKE_CHUNK {
                break;
            }
        }
    }

    /// Expires every cold entry as [`expire_all`](JoinBuffer::expire_all) does the hot ones.
    pub(super) fn expire_all_cold(&mut self, sink: &mut impl FnMut(JoinEvent)) {
        let Some(cold) = self.cold.as_mut() else {
            return;
        };
        let mut params = self.params.clone();
        params.watermark = i64::MAX;
        let mut taken = Vec::new();
        while cold.usable() && cold.total() > 0 {
            taken.clear();
            if let Err(err) = cold.tier.take_due(i64::MAX, TAKE_CHUNK, &mut taken) {
                cold.fail(err);
                break;
            }
            for (key, e) in &taken {
                cold.sub(e);
                let mut slot = params.slot_of(e);
                params.expire_slot(*key, &mut slot, sink);
                if let Some(c) = self.changes.as_mut() {
                    c.push((*key, None));
                }
            }
            if taken.len() < TAKE_CHUNK {
                break;
            }
        }
    }
}
