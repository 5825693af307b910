//! [`DiskColdTier`]: one join task's cold entries in two fjall partitions (see the crate docs).

use driftwatch_core::join::{ColdError, ColdTier, EntryRecord, RequestKey};
use driftwatch_core::TimestampMs;
use fjall::{Keyspace, PartitionHandle};

/// One task's cold tier. Its partitions are deleted when it is dropped.
pub struct DiskColdTier {
    keyspace: Keyspace,
    entries: PartitionHandle,
    due: PartitionHandle,
    /// No due-index key sorts below this one: where the next expiry scan starts. Removed
    /// keys stay in the tree as tombstones until compaction; starting past them keeps a scan
    /// from walking over every entry already expired.
    floor: [u8; 8],
    /// Sealed: its partitions outlive it (see [`DiskColdTier::persist`]).
    keep: bool,
}

impl std::fmt::Debug for DiskColdTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskColdTier")
            .field("entries", &self.entries.name)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> ColdError {
    ColdError(e.to_string())
}

fn key_bytes(k: RequestKey) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&k.hi.to_be_bytes());
    b[8..].copy_from_slice(&k.lo.to_be_bytes());
    b
}

fn key_of(b: &[u8]) -> Option<RequestKey> {
    let hi = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    let lo = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
    Some(RequestKey::from_parts(hi, lo))
}

/// The due time as bytes whose order is the numeric order.
fn due_bytes(due: TimestampMs) -> [u8; 8] {
    ((due as u64) ^ (1 << 63)).to_be_bytes()
}

fn index_key(due: TimestampMs, k: RequestKey) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&due_bytes(due));
    b[8..].copy_from_slice(&key_bytes(k));
    b
}

fn encode(e: &EntryRecord) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[..8].copy_from_slice(&e.time.to_le_bytes());
    b[8..10].copy_from_slice(&e.model.to_le_bytes());
    b[10..12].copy_from_slice(&e.flags.to_le_bytes());
    b[12..].copy_from_slice(&e.payload.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<EntryRecord> {
    Some(EntryRecord {
        time: i64::from_le_bytes(b.get(..8)?.try_into().ok()?),
        model: u16::from_le_bytes(b.get(8..10)?.try_into().ok()?),
        flags: u16::from_le_bytes(b.get(10..12)?.try_into().ok()?),
        payload: u64::from_le_bytes(b.get(12..20)?.try_into().ok()?),
    })
}

impl DiskColdTier {
    pub(crate) fn new(keyspace: Keyspace, entries: PartitionHandle, due: PartitionHandle) -> Self {
        DiskColdTier {
            keyspace,
            entries,
            due,
            floor: [0; 8],
            keep: false,
        }
    }

    /// Makes everything written so far durable (the journal synced to disk) and keeps the
    /// tier's partitions when it is dropped: the store is about to be sealed.
    pub fn persist(&mut self) -> Result<(), ColdError> {
        self.keyspace
            .persist(fjall::PersistMode::SyncAll)
            .map_err(err)?;
        self.keep = true;
        Ok(())
    }

    /// Bytes of this tier's tables on disk (journals are the keyspace's, not counted).
    pub fn table_bytes(&self) -> u64 {
        self.entries.disk_space() + self.due.disk_space()
    }
}

impl ColdTier for DiskColdTier {
    fn get(&mut self, key: RequestKey) -> Result<Option<EntryRecord>, ColdError> {
        match self.entries.get(key_bytes(key)).map_err(err)? {
            None => Ok(None),
            Some(v) => decode(&v)
                .map(Some)
                .ok_or_else(|| ColdError(format!("entry of {key:?}: {} bytes", v.len()))),
        }
    }

    fn put(&mut self, entries: &[(RequestKey, EntryRecord, TimestampMs)]) -> Result<(), ColdError> {
        let mut batch = self.keyspace.batch();
        for (key, e, due) in entries {
            batch.insert(&self.entries, key_bytes(*key), encode(e));
            batch.insert(&self.due, index_key(*due, *key), []);
            self.floor = self.floor.min(due_bytes(*due));
        }
        batch.commit().map_err(err)
    }

    fn remove(&mut self, key: RequestKey, due: TimestampMs) -> Result<(), ColdError> {
        let mut batch = self.keyspace.batch();
        batch.remove(&self.entries, key_bytes(key));
        batch.remove(&self.due, index_key(due, key));
        batch.commit().map_err(err)
    }

    fn take_due(
        &mut self,
        before: TimestampMs,
        limit: usize,
        out: &mut Vec<(RequestKey, EntryRecord)>,
    ) -> Result<(), ColdError> {
        let start = self.floor;
        let end = due_bytes(before);
        if start >= end {
            return Ok(());
        }
        let mut batch = self.keyspace.batch();
        let mut taken = 0;
        let mut last = start;
        for item in self.due.range(start..end).take(limit) {
            let (k, _) = item.map_err(err)?;
            let key = k
                .get(8..)
                .and_then(key_of)
                .ok_or_else(|| ColdError(format!("due index key of {} bytes", k.len())))?;
            if let Some(d) = k.get(..8).and_then(|d| <[u8; 8]>::try_from(d).ok()) {
                last = d;
            }
            // An index key without its entry cannot arise from the buffer's calls; it is
            // dropped rather than trusted.
            let stored = self.entries.get(key_bytes(key)).map_err(err)?;
            if let Some(e) = stored.as_deref().and_then(decode) {
                out.push((key, e));
                batch.remove(&self.entries, key_bytes(key));
            }
            batch.remove(&self.due, k);
            taken += 1;
        }
        batch.commit().map_err(err)?;
        // Everything below `last` is gone now; when the scan ended early, everything below
        // `before` is.
        self.floor = if taken < limit { end } else { last };
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        self.table_bytes()
    }
}

impl Drop for DiskColdTier {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Errors cannot be reported from here; the store is wiped at the next start anyway.
        let _ = self.keyspace.delete_partition(self.entries.clone());
        let _ = self.keyspace.delete_partition(self.due.clone());
    }
}
