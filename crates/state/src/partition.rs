//! [`PartitionTier`]: the cold tier of one join task in a store folder of its own, as the
//! worker keeps it (one folder per input partition, `<join.state.dir>/<group>/<topic>-<n>`).
//!
//! A folder per partition, rather than one store per worker, keeps each task's store apart:
//! it is wiped and rebuilt when its partition is assigned and removed when the task ends,
//! without touching the others, and it is the unit a later checkpointed restore keeps across
//! restarts (as Kafka Streams keeps one store directory per task).

use std::path::{Path, PathBuf};

use driftwatch_core::join::{ColdError, ColdTier, EntryRecord, RequestKey};
use driftwatch_core::TimestampMs;

use crate::{check_dir, DiskColdTier, StateStore, StoreError, StoreMemory};

/// A [`DiskColdTier`] that owns its store's folder: the folder is removed when the tier is
/// dropped (after the store has closed: fjall waits for its background threads).
#[derive(Debug)]
pub struct PartitionTier {
    tier: Option<DiskColdTier>,
    folder: PathBuf,
}

/// Wipes `<dir>/<name>` and opens an empty tier there. `dir` is created when missing.
pub fn open_partition_tier(
    dir: &Path,
    name: &str,
    memory: StoreMemory,
) -> Result<PartitionTier, StoreError> {
    check_dir(dir)?;
    let folder = dir.join(name);
    let store = StateStore::open_wiped(&folder, memory)?;
    let tier = store.tier(0)?;
    // Only the tier keeps the store open from here on, so dropping it closes the store.
    drop(store);
    Ok(PartitionTier {
        tier: Some(tier),
        folder,
    })
}

impl PartitionTier {
    /// The store's folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    fn tier(&mut self) -> Result<&mut DiskColdTier, ColdError> {
        self.tier
            .as_mut()
            .ok_or_else(|| ColdError("the store is closed".into()))
    }
}

impl ColdTier for PartitionTier {
    fn get(&mut self, key: RequestKey) -> Result<Option<EntryRecord>, ColdError> {
        self.tier()?.get(key)
    }

    fn put(&mut self, entries: &[(RequestKey, EntryRecord, TimestampMs)]) -> Result<(), ColdError> {
        self.tier()?.put(entries)
    }

    fn remove(&mut self, key: RequestKey, due: TimestampMs) -> Result<(), ColdError> {
        self.tier()?.remove(key, due)
    }

    fn take_due(
        &mut self,
        before: TimestampMs,
        limit: usize,
        out: &mut Vec<(RequestKey, EntryRecord)>,
    ) -> Result<(), ColdError> {
        self.tier()?.take_due(before, limit, out)
    }

    fn size_bytes(&self) -> u64 {
        self.tier.as_ref().map_or(0, DiskColdTier::table_bytes)
    }
}

impl Drop for PartitionTier {
    fn drop(&mut self) {
        drop(self.tier.take());
        // Nothing to report to: a folder left behind is wiped when the partition comes back.
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_tier_wipes_its_folder_on_open_and_removes_it_when_dropped() {
        let dir = std::env::temp_dir().join(format!("dw-partition-tier-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let stale = dir.join("p-3").join("stale-file");
        std::fs::create_dir_all(stale.parent().expect("parent")).expect("stale folder");
        std::fs::write(&stale, b"old").expect("stale file");
        let mut tier = open_partition_tier(&dir, "p-3", StoreMemory::default()).expect("open");
        assert!(!stale.exists(), "the old content is wiped");
        let key = RequestKey::from_parts(1, 2);
        let e = EntryRecord {
            time: 5,
            model: 1,
            flags: 0,
            payload: 7,
        };
        tier.put(&[(key, e, 10)]).expect("put");
        assert_eq!(tier.get(key).expect("get"), Some(e));
        let folder = tier.folder().to_path_buf();
        assert!(folder.exists());
        drop(tier);
        assert!(!folder.exists(), "dropped with its task");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
