//! The join's cold tier on local disk: the [`ColdTier`](driftwatch_core::join::ColdTier) of
//! each join task, in one embedded LSM-tree store (fjall) per worker.
//!
//! # Layout
//! One fjall keyspace under `<join.state.dir>/join-store`, two partitions per join task
//! (partition pair `n`, `g` numbering the tasks the worker created):
//!
//! | partition   | key (bytes)                               | value (bytes)                          |
//! |-------------|-------------------------------------------|----------------------------------------|
//! | `p{n}_{g}_entries` | request key: `hi`, `lo` big-endian (16) | time i64, model u16, flags u16, payload u64, little-endian (20) |
//! | `p{n}_{g}_due` | due time (i64, sign bit flipped, BE, 8) + request key (16) | empty                |
//!
//! The first answers the point look-ups of the hot path (every input whose key is not in
//! memory: bloom filters make a miss cheap); the second orders the entries by due time so the
//! watermark's expiry is a range scan from its start, never a full scan. Flipping the sign bit
//! makes the byte order of the due time its numeric order.
//!
//! # A cache, not a database
//! The changelog topic stays the source of truth. A [`StateStore`] opened with
//! [`StateStore::open_fresh`] is wiped first (the bench's store); the join's per-partition
//! stores ([`PartitionTier`]) outlive a task only when sealed with a [`checkpoint`] at a clean
//! stop, and are wiped when opened otherwise. Writes skip fsync (`manual_journal_persist`)
//! until the seal syncs the journal, so a crash that loses the store loses nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fjall::{Config, Keyspace, PartitionCreateOptions};

pub mod checkpoint;
mod partition;
mod sweep;
mod tier;

pub use partition::{open_partition_tier, open_sealed_or_fresh, Opened, PartitionTier};
pub use sweep::{sweep, Swept, SweptReason};
pub use tier::DiskColdTier;

/// Name of the store's folder inside the configured state directory: the only thing wiped.
pub const STORE_DIR: &str = "join-store";

/// A failure of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("join.state.dir {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("join state store at {dir}: {source}")]
    Store { dir: PathBuf, source: fjall::Error },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// Memory the store may use besides the hot entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreMemory {
    /// Block cache shared by all partitions.
    pub cache_bytes: u64,
    /// All memtables together (fjall's write buffer); at least 1 MiB.
    pub write_buffer_bytes: u64,
}

impl Default for StoreMemory {
    /// 16 MiB of cache, 32 MiB of memtables: the look-ups are random (a larger cache would
    /// mostly hold index and filter blocks), and the memtables only batch writes.
    fn default() -> Self {
        StoreMemory {
            cache_bytes: 16 << 20,
            write_buffer_bytes: 32 << 20,
        }
    }
}

/// Checks that `dir` is a usable state directory: created if missing, and writable.
pub fn check_dir(dir: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(".driftwatch-write-check");
    std::fs::write(&probe, b"ok").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}

/// The store of one worker. Cloning shares it.
#[derive(Clone)]
pub struct StateStore {
    keyspace: Keyspace,
    path: PathBuf,
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish()
    }
}

impl StateStore {
    /// Wipes `<dir>/join-store` and opens an empty store there.
    pub fn open_fresh(dir: &Path, memory: StoreMemory) -> Result<Self, StoreError> {
        check_dir(dir)?;
        Self::open_wiped(&dir.join(STORE_DIR), memory)
    }

    /// Wipes `path` (the store's own folder, never a folder given by the user) and opens an
    /// empty store there.
    fn open_wiped(path: &Path, memory: StoreMemory) -> Result<Self, StoreError> {
        if path.exists() {
            std::fs::remove_dir_all(path).map_err(|source| StoreError::Dir {
                dir: path.to_path_buf(),
                source,
            })?;
        }
        Self::open_existing(path, memory)
    }

    /// Opens the store in `path` as it is (created when missing).
    fn open_existing(path: &Path, memory: StoreMemory) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let keyspace = Config::new(&path)
            .cache_size(memory.cache_bytes)
            .max_write_buffer_size(memory.write_buffer_bytes.max(1 << 20))
            .manual_journal_persist(true)
            // Journals hold what the memtables hold until flushed: 64 MiB keeps them from
            // growing to fjall's default 512 MiB on disk for data that is a cache anyway.
            .max_journaling_size(64 << 20)
            // One of each: the stage's loop needs the other core.
            .flush_workers(1)
            .compaction_workers(1)
            .open()
            .map_err(|source| StoreError::Store {
                dir: path.clone(),
                source,
            })?;
        Ok(StateStore {
            keyspace,
            path,
            generation: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The folder the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An empty cold tier for partition pair `partition`. Each tier gets partitions of its
    /// own (numbered by a counter: a task created again after a rebalance never sees what an
    /// earlier one left), deleted when the tier is dropped.
    pub fn tier(&self, partition: i32) -> Result<DiskColdTier, StoreError> {
        let fail = |source| StoreError::Store {
            dir: self.path.clone(),
            source,
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        // 8 MiB memtables: the write buffer caps them all together anyway.
        let options = || PartitionCreateOptions::default().max_memtable_size(8 << 20);
        let entries = self
            .keyspace
            .open_partition(&format!("p{partition}_{generation}_entries"), options())
            .map_err(fail)?;
        let due = self
            .keyspace
            .open_partition(&format!("p{partition}_{generation}_due"), options())
            .map_err(fail)?;
        Ok(DiskColdTier::new(self.keyspace.clone(), entries, due))
    }

    /// Bytes on disk: tables and journals.
    pub fn disk_bytes(&self) -> u64 {
        self.keyspace.disk_space()
    }
}

#[cfg(test)]
mod tests;
