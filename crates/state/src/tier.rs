//! [`DiskColdTier`]: one join task's cold entries in fjall partitions (see the crate docs for
//! the layout and why).

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::ops::Bound;

use driftwatch_core::join::{ColdError, ColdTier, EntryRecord, RequestKey};
use driftwatch_core::TimestampMs;
use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle};

/// A due-index key: due time (sign bit flipped, big-endian) then the request key.
type IndexKey = [u8; 24];

/// One run: entries written together, by due time, in a partition of their own.
struct Run {
    handle: PartitionHandle,
    /// Every entry of the run at or below this key was taken (none when `None`); scans start
    /// past it, so taking never writes a deletion marker into the run.
    after: Option<IndexKey>,
    /// The run's smallest and largest keys as written: once the scans pass `max`, the run is
    /// empty and its partition is dropped whole.
    min: IndexKey,
    max: IndexKey,
}

/// One task's cold tier. Its partitions are deleted when it is dropped.
pub struct DiskColdTier {
    keyspace: Keyspace,
    /// `p{n}_{g}`: the prefix of the tier's partition names.
    name: String,
    /// Request key → run id (u32) and due time (8 bytes as in the index key).
    entries: PartitionHandle,
    /// Run id → `after` flag and key, `min`, `max` ([`encode_run`]): written at a seal.
    runs_meta: PartitionHandle,
    runs: BTreeMap<u32, Run>,
    next_run: u32,
    /// Entries put since the last run was written, by due time and by key.
    fresh: BTreeMap<IndexKey, EntryRecord>,
    fresh_due: HashMap<RequestKey, TimestampMs>,
    /// Entries `fresh` holds at most before it becomes a run.
    run_entries: usize,
    /// Where the last [`ColdTier::get`] found its key (the buffer removes right after).
    last_found: Option<(RequestKey, u32, [u8; 8])>,
    /// Sealed: its partitions outlive it (see [`DiskColdTier::persist`]).
    keep: bool,
}

impl std::fmt::Debug for DiskColdTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskColdTier")
            .field("name", &self.name)
            .field("runs", &self.runs.len())
            .field("fresh", &self.fresh.len())
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

fn index_key(due: [u8; 8], k: RequestKey) -> IndexKey {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&due);
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

fn location(run: u32, due: [u8; 8]) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&run.to_be_bytes());
    b[4..].copy_from_slice(&due);
    b
}

fn location_of(b: &[u8]) -> Option<(u32, [u8; 8])> {
    Some((
        u32::from_be_bytes(b.get(..4)?.try_into().ok()?),
        b.get(4..12)?.try_into().ok()?,
    ))
}

fn encode_run(r: &Run) -> [u8; 73] {
    let mut b = [0u8; 73];
    b[0] = u8::from(r.after.is_some());
    b[1..25].copy_from_slice(&r.after.unwrap_or([0; 24]));
    b[25..49].copy_from_slice(&r.min);
    b[49..].copy_from_slice(&r.max);
    b
}

fn decode_run(b: &[u8]) -> Option<(Option<IndexKey>, IndexKey, IndexKey)> {
    let after: IndexKey = b.get(1..25)?.try_into().ok()?;
    let min = b.get(25..49)?.try_into().ok()?;
    let max = b.get(49..73)?.try_into().ok()?;
    (b.len() == 73).then_some(((b[0] != 0).then_some(after), min, max))
}

/// The key of `runs_meta` under which the next run id is kept (run ids are never reused: a
/// deleted partition's name may linger until fjall has removed its folder).
const NEXT_RUN_KEY: &[u8] = b"next";

/// The marker [`delete_partition`] writes: one byte, no key of a run, of `entries` or of
/// `runs` (24, 16 and 4 bytes).
const QUIESCE_KEY: &[u8] = &[0xff];
/// Locations written per fjall batch when a run is made.
pub(crate) const LOCATION_BATCH: usize = 8_192;

fn run_name(prefix: &str, id: u32) -> String {
    format!("{prefix}_r{id}")
}

/// Partition options of the tier's partitions.
fn partition_options() -> PartitionCreateOptions {
    // The write buffer caps the memtables all together anyway.
    PartitionCreateOptions::default().max_memtable_size(16 << 20)
}

/// Options of a run's partition: no bloom filter, as a run is only asked for keys that
/// `entries` places in it (a filter would answer "maybe" every time, and take memory).
fn run_options() -> PartitionCreateOptions {
    partition_options().bloom_filter_bits(None)
}

impl DiskColdTier {
    /// The tier `name` of `keyspace`: its runs as the last seal left them (none in a new
    /// store). `fresh_bytes`: memory for entries not yet written as a run.
    pub(crate) fn open(keyspace: Keyspace, name: String, fresh_bytes: u64) -> fjall::Result<Self> {
        let entries = keyspace.open_partition(&format!("{name}_entries"), partition_options())?;
        let runs_meta = keyspace.open_partition(&format!("{name}_runs"), partition_options())?;
        let mut runs = BTreeMap::new();
        let mut next_run = 0;
        for item in runs_meta.iter() {
            let (k, v) = item?;
            if &*k == NEXT_RUN_KEY {
                next_run = <[u8; 4]>::try_from(&*v).map_or(0, u32::from_be_bytes);
                continue;
            }
            let (Some(id), Some((after, min, max))) = (
                <[u8; 4]>::try_from(&*k).ok().map(u32::from_be_bytes),
                decode_run(&v),
            ) else {
                continue;
            };
            let handle = keyspace.open_partition(&run_name(&name, id), run_options())?;
            runs.insert(
                id,
                Run {
                    handle,
                    after,
                    min,
                    max,
                },
            );
        }
        // Runs written after the last seal are not the sealed state.
        let prefix = format!("{name}_r");
        for p in keyspace.list_partitions() {
            let id = p
                .strip_prefix(&prefix)
                .and_then(|id| id.parse::<u32>().ok());
            if id.is_some_and(|id| !runs.contains_key(&id)) {
                let handle = keyspace.open_partition(&p, run_options())?;
                keyspace.delete_partition(handle)?;
            }
        }
        let next_run = runs
            .keys()
            .next_back()
            .map_or(next_run, |id| next_run.max(id.saturating_add(1)));
        // About 100 bytes per fresh entry: the two maps' entries and their overhead.
        let run_entries = usize::try_from(fresh_bytes / 100)
            .unwrap_or(usize::MAX)
            .max(1);
        Ok(DiskColdTier {
            keyspace,
            name,
            entries,
            runs_meta,
            runs,
            next_run,
            fresh: BTreeMap::new(),
            fresh_due: HashMap::new(),
            run_entries,
            last_found: None,
            keep: false,
        })
    }

    /// Writes the fresh entries as a new run: one sorted bulk load into a new partition (no
    /// journal, no memtable), and their locations into `entries`.
    fn write_run(&mut self) -> Result<(), ColdError> {
        self.last_found = None;
        let (Some((&min, _)), Some((&max, _))) =
            (self.fresh.first_key_value(), self.fresh.last_key_value())
        else {
            return Ok(());
        };
        let id = self.next_run;
        self.next_run = id.checked_add(1).ok_or_else(|| err("run ids exhausted"))?;
        let handle = self
            .keyspace
            .open_partition(&run_name(&self.name, id), run_options())
            .map_err(err)?;
        handle
            .ingest(self.fresh.iter().map(|(k, v)| (*k, encode(v))))
            .map_err(err)?;
        // The locations go in batches of a bounded size: one batch for a whole run held a
        // copy of every key (84 MB at the peak of a 64 MiB run, heaptrack). Atomicity across
        // them is not needed: a store is trusted only once sealed, and a crash before the
        // seal rebuilds it from the changelog.
        let mut keys = self.fresh.keys().peekable();
        while keys.peek().is_some() {
            let mut batch = self.keyspace.batch();
            for k in keys.by_ref().take(LOCATION_BATCH) {
                let due: [u8; 8] = k[..8].try_into().map_err(err)?;
                batch.insert(&self.entries, &k[8..], location(id, due));
            }
            batch.commit().map_err(err)?;
        }
        self.runs.insert(
            id,
            Run {
                handle,
                after: None,
                min,
                max,
            },
        );
        self.fresh.clear();
        self.fresh_due.clear();
        Ok(())
    }

    /// Makes everything written so far durable (the journal synced to disk) and keeps the
    /// tier's partitions when it is dropped: the store is about to be sealed.
    pub fn persist(&mut self) -> Result<(), ColdError> {
        self.write_run()?;
        let mut batch = self.keyspace.batch();
        for item in self.runs_meta.keys() {
            batch.remove(&self.runs_meta, item.map_err(err)?);
        }
        for (id, run) in &self.runs {
            batch.insert(&self.runs_meta, id.to_be_bytes(), encode_run(run));
        }
        batch.insert(&self.runs_meta, NEXT_RUN_KEY, self.next_run.to_be_bytes());
        batch.commit().map_err(err)?;
        self.keyspace
            .persist(fjall::PersistMode::SyncAll)
            .map_err(err)?;
        self.keep = true;
        Ok(())
    }

    /// Bytes of this tier's tables on disk (journals are the keyspace's, not counted).
    pub fn table_bytes(&self) -> u64 {
        self.entries.disk_space()
            + self
                .runs
                .values()
                .map(|r| r.handle.disk_space())
                .sum::<u64>()
    }

    /// Number of runs (tests, metrics).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    fn drop_run(&mut self, id: u32) -> Result<(), ColdError> {
        if let Some(run) = self.runs.remove(&id) {
            delete_partition(&self.keyspace, run.handle).map_err(err)?;
        }
        Ok(())
    }
}

/// The head of one source in [`DiskColdTier::take_due`]'s merge: smallest key first.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Head(std::cmp::Reverse<IndexKey>, usize, [u8; 20]);

type Source<'a> = Box<dyn Iterator<Item = Result<(IndexKey, [u8; 20]), ColdError>> + 'a>;

impl ColdTier for DiskColdTier {
    fn get(&mut self, key: RequestKey) -> Result<Option<EntryRecord>, ColdError> {
        if let Some(due) = self.fresh_due.get(&key) {
            return Ok(self.fresh.get(&index_key(due_bytes(*due), key)).copied());
        }
        let Some(loc) = self.entries.get(key_bytes(key)).map_err(err)? else {
            return Ok(None);
        };
        let (id, due) =
            location_of(&loc).ok_or_else(|| err(format!("location of {key:?}: {loc:?}")))?;
        let run = self
            .runs
            .get(&id)
            .ok_or_else(|| err(format!("{key:?} is in run {id}, which is gone")))?;
        match run.handle.get(index_key(due, key)).map_err(err)? {
            None => Err(err(format!("{key:?} is not in its run {id}"))),
            Some(v) => {
                self.last_found = Some((key, id, due));
                decode(&v)
                    .map(Some)
                    .ok_or_else(|| err(format!("entry of {key:?}: {} bytes", v.len())))
            }
        }
    }

    fn put(&mut self, entries: &[(RequestKey, EntryRecord, TimestampMs)]) -> Result<(), ColdError> {
        for (key, e, due) in entries {
            self.fresh.insert(index_key(due_bytes(*due), *key), *e);
            self.fresh_due.insert(*key, *due);
        }
        if self.fresh.len() >= self.run_entries {
            self.write_run()?;
        }
        Ok(())
    }

    fn remove(&mut self, key: RequestKey, _due: TimestampMs) -> Result<(), ColdError> {
        // Where the entry is stored says its due time; the caller's is the same.
        if let Some(due) = self.fresh_due.remove(&key) {
            self.fresh.remove(&index_key(due_bytes(due), key));
            return Ok(());
        }
        let (id, due) = match self.last_found.take() {
            Some((k, id, due)) if k == key => (id, due),
            _ => match self.entries.get(key_bytes(key)).map_err(err)? {
                Some(loc) => {
                    location_of(&loc).ok_or_else(|| err(format!("location of {key:?}: {loc:?}")))?
                }
                None => return Ok(()),
            },
        };
        let mut batch = self.keyspace.batch();
        batch.remove(&self.entries, key_bytes(key));
        if let Some(run) = self.runs.get(&id) {
            batch.remove(&run.handle, index_key(due, key));
        }
        batch.commit().map_err(err)
    }

    fn take_due(
        &mut self,
        before: TimestampMs,
        limit: usize,
        out: &mut Vec<(RequestKey, EntryRecord)>,
    ) -> Result<(), ColdError> {
        self.last_found = None;
        let mut end = [0u8; 24];
        end[..8].copy_from_slice(&due_bytes(before));
        // Source 0 is the fresh entries, source i + 1 the i-th run of `ids`.
        let ids: Vec<u32> = self
            .runs
            .iter()
            .filter(|(_, r)| r.after.unwrap_or(r.min) < end)
            .map(|(id, _)| *id)
            .collect();
        let mut sources: Vec<Source<'_>> = Vec::with_capacity(ids.len() + 1);
        sources.push(Box::new(
            self.fresh.range(..end).map(|(k, v)| Ok((*k, encode(v)))),
        ));
        for id in &ids {
            let Some(run) = self.runs.get(id) else {
                continue;
            };
            let start = run.after.map_or(Bound::Unbounded, Bound::Excluded);
            let iter = run.handle.range((start, Bound::Excluded(end))).map(|item| {
                let (k, v) = item.map_err(err)?;
                let k = IndexKey::try_from(&*k).map_err(err)?;
                let v = <[u8; 20]>::try_from(&*v).map_err(err)?;
                Ok((k, v))
            });
            sources.push(Box::new(iter));
        }
        let mut heap = BinaryHeap::with_capacity(sources.len());
        let mut exhausted = vec![false; sources.len()];
        for (i, s) in sources.iter_mut().enumerate() {
            match s.next().transpose()? {
                Some((k, v)) => heap.push(Head(std::cmp::Reverse(k), i, v)),
                None => exhausted[i] = true,
            }
        }
        let mut taken: Vec<(usize, IndexKey, [u8; 20])> = Vec::new();
        while taken.len() < limit {
            let Some(Head(std::cmp::Reverse(k), i, v)) = heap.pop() else {
                break;
            };
            taken.push((i, k, v));
            match sources.get_mut(i).and_then(|s| s.next()).transpose()? {
                Some((k, v)) => heap.push(Head(std::cmp::Reverse(k), i, v)),
                None => exhausted[i] = true,
            }
        }
        drop(heap);
        drop(sources);
        let mut batch = self.keyspace.batch();
        for (i, k, v) in taken {
            let key = key_of(&k[8..]).ok_or_else(|| err("due index key"))?;
            let e = decode(&v).ok_or_else(|| err("entry"))?;
            out.push((key, e));
            if i == 0 {
                self.fresh.remove(&k);
                self.fresh_due.remove(&key);
            } else if let Some(run) = ids.get(i - 1).and_then(|id| self.runs.get_mut(id)) {
                run.after = Some(k);
                batch.remove(&self.entries, &k[8..]);
            }
        }
        batch.commit().map_err(err)?;
        // A run whose scan ran out below `end` is empty when its largest key is below it.
        for (i, id) in ids.iter().enumerate() {
            let empty = exhausted.get(i + 1).copied().unwrap_or(false)
                && self.runs.get(id).is_some_and(|r| r.max < end);
            if empty {
                self.drop_run(*id)?;
            }
        }
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
        let ids: Vec<u32> = self.runs.keys().copied().collect();
        for id in ids {
            let _ = self.drop_run(id);
        }
        let _ = delete_partition(&self.keyspace, self.entries.clone());
        let _ = delete_partition(&self.keyspace, self.runs_meta.clone());
    }
}

/// Deletes `handle`'s partition once no flush of it is in flight. fjall 2.11 panics in its
/// flush thread (and poisons the keyspace) when a partition is deleted while a flush of its
/// memtable runs: the deletion removes the partition's flush queue, and the flush, done,
/// then dequeues from an empty one. A run's memtable holds the deletion markers of entries
/// brought back into memory, so its flushes come and go. A marker makes the memtable not
/// empty, so that rotating it waits until every queued flush of the keyspace, this
/// partition's included, is done; nothing else writes to the partition meanwhile.
fn delete_partition(keyspace: &Keyspace, handle: PartitionHandle) -> fjall::Result<()> {
    handle.remove(QUIESCE_KEY)?;
    handle.rotate_memtable_and_wait()?;
    keyspace.delete_partition(handle)
}
