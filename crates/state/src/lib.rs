//! The join's cold tier on local disk: the [`ColdTier`](driftwatch_core::join::ColdTier) of
//! each join task, in one embedded LSM-tree store (fjall) per worker.
//!
//! # Layout
//! One fjall keyspace per store. Each join task's tier (named `p{n}_{g}`, `n`, `g` numbering
//! the tasks the worker created) keeps its entries in *runs*, a location index, and a list of
//! its runs:
//!
//! | partition | key (bytes) | value (bytes) |
//! |-----------|-------------|---------------|
//! | `p{n}_{g}_r{id}` (a run) | due time (i64, sign bit flipped, BE, 8) + request key (`hi`, `lo` BE, 16) | time i64, model u16, flags u16, payload u64, little-endian (20) |
//! | `p{n}_{g}_entries` | request key (16) | run id (u32 BE) + due time as in the run's key (12) |
//! | `p{n}_{g}_runs` | run id (u32 BE), or `next` | how far the run was taken, its smallest and largest key (73), or the next run id (4); written at a seal |
//!
//! Puts gather in memory (by due time and by key, up to [`StoreMemory::run_bytes`]); when
//! full, they are bulk-loaded as a new run (fjall's `ingest`: one sorted table written
//! straight to disk, no journal, no memtable, no bloom filter) and their locations are
//! written to `entries`. Then:
//! - a look-up (every input whose key is not in memory) reads `entries` (bloom filters make a
//!   miss cheap), then the one run it names;
//! - the watermark's expiry merges the due-ordered scans of the runs (and of the entries in
//!   memory) up to the watermark, oldest due first. Taking writes nothing into a run: the
//!   tier remembers how far each run was taken, and deletes a run's partition whole once the
//!   scans passed its largest key. Only `entries` gets a deletion marker per entry taken;
//! - a removal by key (an entry brought back into memory) writes a deletion marker into
//!   `entries` and into the entry's run.
//!
//! Flipping the sign bit makes the byte order of the due time its numeric order.
//!
//! Why runs: with one partition of entries by key and one due index, both written through
//! fjall's memtables, a perf profile put most of the time in the memtables' skiplists (every
//! entry inserted twice, and the due index's scans stepping over the deletion markers of the
//! entries already taken) and in a point look-up per entry taken; writes stalled on the
//! journal's cap. A run is written once and read once, both sequentially; expired entries
//! leave no markers behind.
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

use fjall::{Config, Keyspace};

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
    /// Entries put since the last run, kept in memory per tier until they make a run (about
    /// 100 bytes each): the larger, the fewer runs a look-up and a take visit.
    pub run_bytes: u64,
}

impl Default for StoreMemory {
    /// 16 MiB of cache, 32 MiB of memtables, 64 MiB of entries to make runs of: the
    /// look-ups are random (a larger cache would mostly hold index and filter blocks), the
    /// memtables only take the location index's writes.
    fn default() -> Self {
        StoreMemory {
            cache_bytes: 16 << 20,
            write_buffer_bytes: 32 << 20,
            run_bytes: 64 << 20,
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
    run_bytes: u64,
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
            run_bytes: memory.run_bytes,
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
        DiskColdTier::open(
            self.keyspace.clone(),
            format!("p{partition}_{generation}"),
            self.run_bytes,
        )
        .map_err(fail)
    }

    /// Bytes on disk: tables and journals.
    pub fn disk_bytes(&self) -> u64 {
        self.keyspace.disk_space()
    }
}

#[cfg(test)]
mod tests;
