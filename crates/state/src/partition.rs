//! [`PartitionTier`]: the cold tier of one join task in a store folder of its own, as the
//! worker keeps it (one folder per input partition, `<join.state.dir>/<group>/<topic>-<n>`).
//!
//! A folder per partition, rather than one store per worker, keeps each task's store apart:
//! it is resumed, or wiped and rebuilt, when its partition is assigned, and kept (sealed) or
//! removed when the task ends, without touching the others (as Kafka Streams keeps one store
//! directory per task).
//!
//! # Sealed stores
//! [`ColdTier::seal`] syncs the store and writes its [`checkpoint`](crate::checkpoint) file;
//! the folder then outlives the tier. [`open_sealed_or_fresh`] resumes a sealed folder whose
//! checkpoint the caller accepts, removing the checkpoint before the store takes any write
//! (so a crash from then on leaves a folder that is never trusted); any other folder is
//! wiped.

use std::path::{Path, PathBuf};

use driftwatch_core::join::{ColdError, ColdTier, EntryRecord, RequestKey};
use driftwatch_core::TimestampMs;

use driftwatch_core::join::StoreCheckpoint;

use crate::checkpoint;
use crate::{check_dir, DiskColdTier, StateStore, StoreError, StoreMemory};

/// A [`DiskColdTier`] that owns its store's folder: the folder is removed when the tier is
/// dropped (after the store has closed: fjall waits for its background threads), unless the
/// tier was sealed.
#[derive(Debug)]
pub struct PartitionTier {
    tier: Option<DiskColdTier>,
    folder: PathBuf,
    sealed: bool,
}

/// What [`open_sealed_or_fresh`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// No folder: a new, empty store.
    Fresh,
    /// A sealed store, accepted: it holds the state its checkpoint describes.
    Resumed(StoreCheckpoint),
    /// A folder that could not be resumed (why), wiped: the store is empty.
    Wiped(String),
}

/// Opens the store of `<dir>/<name>`: resumed when the folder holds a sealed store whose
/// checkpoint `accept` takes (`Err(why)` refuses it), else wiped. `dir` is created when
/// missing.
pub fn open_sealed_or_fresh(
    dir: &Path,
    name: &str,
    memory: StoreMemory,
    accept: impl FnOnce(&StoreCheckpoint) -> Result<(), String>,
) -> Result<(PartitionTier, Opened), StoreError> {
    check_dir(dir)?;
    let folder = dir.join(name);
    if !folder.exists() {
        return Ok((open_partition_tier(dir, name, memory)?, Opened::Fresh));
    }
    let why = match checkpoint::read(&folder) {
        Ok(None) => "it has no checkpoint: the task that wrote it did not stop cleanly".into(),
        Err(e) => e.to_string(),
        Ok(Some(c)) => match accept(&c) {
            Err(why) => why,
            Ok(()) => {
                // Unsealed for good before the first write.
                checkpoint::remove(&folder)?;
                match StateStore::open_existing(&folder, memory).and_then(|s| s.tier(0)) {
                    Ok(tier) => {
                        let tier = PartitionTier {
                            tier: Some(tier),
                            folder,
                            sealed: false,
                        };
                        return Ok((tier, Opened::Resumed(c)));
                    }
                    Err(e) => format!("the store does not open: {e}"),
                }
            }
        },
    };
    Ok((open_partition_tier(dir, name, memory)?, Opened::Wiped(why)))
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
        sealed: false,
    })
}

impl PartitionTier {
    /// The store's folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    fn tier(&mut self) -> Result<&mut DiskColdTier, ColdError> {
        if self.sealed {
            return Err(ColdError("the store is sealed".into()));
        }
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

    fn seal(&mut self, c: &StoreCheckpoint) -> Result<(), ColdError> {
        self.tier()?.persist()?;
        checkpoint::write(&self.folder, c).map_err(|e| ColdError(e.to_string()))?;
        self.sealed = true;
        Ok(())
    }
}

impl Drop for PartitionTier {
    fn drop(&mut self) {
        drop(self.tier.take());
        if self.sealed {
            return;
        }
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

    #[test]
    fn a_sealed_store_is_resumed_once_and_anything_else_is_wiped() {
        let dir = std::env::temp_dir().join(format!("dw-sealed-tier-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = RequestKey::from_parts(4, 5);
        let e = EntryRecord {
            time: 5,
            model: 1,
            flags: 0,
            payload: 7,
        };
        let open = |accept: Result<(), String>| {
            open_sealed_or_fresh(&dir, "t-0", StoreMemory::default(), |_| accept).expect("open")
        };
        let (mut tier, opened) = open(Ok(()));
        assert_eq!(opened, Opened::Fresh);
        tier.put(&[(key, e, 10)]).expect("put");
        let sealed_with = StoreCheckpoint {
            changelog_offset: 42,
            ..Default::default()
        };
        tier.seal(&sealed_with).expect("seal");
        assert!(tier.get(key).is_err(), "no use after the seal");
        let folder = tier.folder().to_path_buf();
        drop(tier);
        assert!(
            folder.join(checkpoint::CHECKPOINT_FILE).exists(),
            "kept, sealed"
        );

        let (mut tier, opened) = open(Ok(()));
        assert_eq!(opened, Opened::Resumed(sealed_with.clone()));
        assert!(
            !folder.join(checkpoint::CHECKPOINT_FILE).exists(),
            "unsealed before any write"
        );
        assert_eq!(tier.get(key).expect("get"), Some(e), "the entry survived");
        // Dropped without a seal (as after a crash the folder has no checkpoint either).
        std::fs::create_dir_all(&folder).expect("folder");
        tier.seal(&sealed_with).expect("seal again");
        drop(tier);
        let (mut tier, opened) = open(Err("refused".into()));
        assert_eq!(opened, Opened::Wiped("refused".into()));
        assert_eq!(tier.get(key).expect("get"), None, "wiped");
        tier.put(&[(key, e, 10)]).expect("put");
        drop(tier);
        assert!(!folder.exists(), "an unsealed store goes with its task");

        std::fs::create_dir_all(&folder).expect("folder");
        std::fs::write(folder.join("leftover"), b"x").expect("leftover");
        let (mut tier, opened) = open(Ok(()));
        assert!(
            matches!(opened, Opened::Wiped(ref why) if why.contains("no checkpoint")),
            "{opened:?}"
        );
        assert_eq!(tier.get(key).expect("get"), None);
        drop(tier);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
