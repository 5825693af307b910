//! Tests of the disk tier against the contract the join buffer relies on.
#![allow(clippy::unwrap_used)]

use driftwatch_core::join::{ColdTier, EntryRecord, MemoryColdTier, RequestKey};

use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("driftwatch-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn rec(time: i64, payload: u64) -> EntryRecord {
    EntryRecord {
        time,
        model: 3,
        flags: 1,
        payload,
    }
}

#[test]
fn entries_round_trip_and_come_out_by_due_time() {
    let dir = temp_dir("order");
    let store = StateStore::open_fresh(&dir, StoreMemory::default()).unwrap();
    let mut t = store.tier(0).unwrap();
    let k = |n: u64| RequestKey::from_parts(n, !n);
    t.put(&[
        (k(1), rec(-5, 1), 30),
        (k(2), rec(7, 2), -10),
        (k(3), rec(9, 3), 20),
    ])
    .unwrap();
    assert_eq!(t.get(k(2)).unwrap(), Some(rec(7, 2)));
    assert_eq!(t.get(k(4)).unwrap(), None);
    let mut out = Vec::new();
    t.take_due(25, 10, &mut out).unwrap();
    assert_eq!(out, vec![(k(2), rec(7, 2)), (k(3), rec(9, 3))]);
    assert_eq!(t.get(k(2)).unwrap(), None);
    // A later put below the scan's floor is still found.
    t.put(&[(k(5), rec(0, 5), -100)]).unwrap();
    t.remove(k(1), 30).unwrap();
    out.clear();
    t.take_due(i64::MAX, 10, &mut out).unwrap();
    assert_eq!(out, vec![(k(5), rec(0, 5))]);
    drop(t);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn take_due_in_chunks_matches_the_memory_tier() {
    let dir = temp_dir("chunks");
    let store = StateStore::open_fresh(&dir, StoreMemory::default()).unwrap();
    let mut disk = store.tier(7).unwrap();
    let mut mem = MemoryColdTier::new();
    let mut x: u64 = 12345;
    for n in 0..2_000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let due = i64::try_from(x >> 50).unwrap() - 4_000;
        let entry = [(RequestKey::from_parts(x, n), rec(due - 10, n), due)];
        disk.put(&entry).unwrap();
        mem.put(&entry).unwrap();
    }
    for before in [-3_000, 0, 0, 2_500, i64::MAX] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        loop {
            let n = a.len();
            disk.take_due(before, 64, &mut a).unwrap();
            if a.len() - n < 64 {
                break;
            }
        }
        loop {
            let n = b.len();
            mem.take_due(before, 64, &mut b).unwrap();
            if b.len() - n < 64 {
                break;
            }
        }
        a.sort_by_key(|(k, _)| *k);
        b.sort_by_key(|(k, _)| *k);
        assert_eq!(a, b, "before {before}");
    }
    assert!(mem.is_empty());
}

#[test]
fn opening_wipes_what_an_earlier_store_left() {
    let dir = temp_dir("wipe");
    std::fs::create_dir_all(dir.join(STORE_DIR)).unwrap();
    std::fs::write(dir.join(STORE_DIR).join("left-over"), b"x").unwrap();
    std::fs::write(dir.join("not-ours"), b"x").unwrap();
    let store = StateStore::open_fresh(&dir, StoreMemory::default()).unwrap();
    assert!(!dir.join(STORE_DIR).join("left-over").exists());
    assert!(
        dir.join("not-ours").exists(),
        "only the store's folder is wiped"
    );
    let mut t = store.tier(1).unwrap();
    assert_eq!(t.get(RequestKey::from_parts(1, 1)).unwrap(), None);
    drop(t);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unwritable_dir_is_a_clear_error() {
    let file = temp_dir("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let e = StateStore::open_fresh(&file, StoreMemory::default()).unwrap_err();
    assert!(e.to_string().starts_with("join.state.dir"), "{e}");
    std::fs::remove_file(&file).unwrap();
}

/// A store whose tiers write a run every `n` fresh entries.
fn small_runs(n: u64) -> StoreMemory {
    StoreMemory {
        run_bytes: n * 100,
        ..StoreMemory::default()
    }
}

/// Random puts, look-ups with removal (as the buffer's promotion does) and chunked takes,
/// the same on the disk tier and on the memory tier: every answer is the same, in the same
/// order, whether the entries sit in the fresh map, in runs or in runs partly taken.
fn matches_the_memory_tier_under_random_use(name: &str, memory: StoreMemory) {
    let dir = temp_dir(name);
    let store = StateStore::open_fresh(&dir, memory).unwrap();
    let mut disk = store.tier(0).unwrap();
    let mut mem = MemoryColdTier::new();
    let mut x: u64 = 99;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 20
    };
    let mut keys: Vec<(RequestKey, i64)> = Vec::new();
    let mut watermark = 0i64;
    for round in 0..300u64 {
        match next() % 4 {
            0 | 1 => {
                let batch: Vec<_> = (0..next() % 60)
                    .map(|i| {
                        let due = watermark + i64::try_from(next() % 5_000).unwrap() - 500;
                        let key = RequestKey::from_parts(next(), round * 1000 + i);
                        (key, rec(due - 7, i), due)
                    })
                    .collect();
                keys.extend(batch.iter().map(|(k, _, d)| (*k, *d)));
                disk.put(&batch).unwrap();
                mem.put(&batch).unwrap();
            }
            2 => {
                for _ in 0..5 {
                    if keys.is_empty() {
                        break;
                    }
                    let i = usize::try_from(next()).unwrap() % keys.len();
                    let (key, due) = keys.swap_remove(i);
                    let found = mem.get(key).unwrap();
                    assert_eq!(disk.get(key).unwrap(), found, "round {round}");
                    if found.is_some() {
                        disk.remove(key, due).unwrap();
                        mem.remove(key, due).unwrap();
                    }
                }
            }
            _ => {
                watermark += i64::try_from(next() % 700).unwrap();
                let limit = 1 + usize::try_from(next() % 40).unwrap();
                let (mut a, mut b) = (Vec::new(), Vec::new());
                disk.take_due(watermark, limit, &mut a).unwrap();
                mem.take_due(watermark, limit, &mut b).unwrap();
                assert_eq!(a, b, "round {round}");
            }
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    disk.take_due(i64::MAX, usize::MAX, &mut a).unwrap();
    mem.take_due(i64::MAX, usize::MAX, &mut b).unwrap();
    assert_eq!(a, b);
    assert!(mem.is_empty());
    assert_eq!(disk.run_count(), 0, "every run is dropped once taken");
    drop(disk);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn small_runs_match_the_memory_tier_under_random_use() {
    matches_the_memory_tier_under_random_use("random-runs", small_runs(50));
}

#[test]
fn fresh_entries_match_the_memory_tier_under_random_use() {
    matches_the_memory_tier_under_random_use("random-fresh", StoreMemory::default());
}

#[test]
fn a_persisted_tier_reopens_with_its_runs_and_what_was_taken_from_them() {
    let dir = temp_dir("reopen").join(STORE_DIR);
    let _ = std::fs::remove_dir_all(&dir);
    let k = |n: u64| RequestKey::from_parts(n, 1);
    let store = StateStore::open_wiped(&dir, small_runs(4)).unwrap();
    let mut t = store.tier(0).unwrap();
    let batch: Vec<_> = (0..10u64)
        .map(|n| (k(n), rec(0, n), i64::try_from(n).unwrap()))
        .collect();
    for chunk in batch.chunks(4) {
        t.put(chunk).unwrap();
    }
    let mut out = Vec::new();
    t.take_due(3, 100, &mut out).unwrap();
    assert_eq!(out.len(), 3);
    t.remove(k(5), 5).unwrap();
    t.persist().unwrap();
    let runs = t.run_count();
    assert_eq!(runs, 3, "runs of 4, 4 and 2 (written by the seal)");
    drop(t);
    drop(store);
    let store = StateStore::open_existing(&dir, small_runs(4)).unwrap();
    let mut t = store.tier(0).unwrap();
    assert_eq!(t.run_count(), runs);
    assert_eq!(t.get(k(1)).unwrap(), None, "taken before the seal");
    assert_eq!(t.get(k(5)).unwrap(), None, "removed before the seal");
    assert_eq!(t.get(k(9)).unwrap(), Some(rec(0, 9)));
    out.clear();
    t.take_due(i64::MAX, 100, &mut out).unwrap();
    let left: Vec<u64> = out.iter().map(|(key, _)| key.hi).collect();
    assert_eq!(left, [3, 4, 6, 7, 8, 9]);
    assert_eq!(t.run_count(), 0);
    drop(t);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_larger_than_one_location_batch_is_found_whole() {
    let dir = temp_dir("big-run");
    // Runs of about 2.5 location batches, so a run's locations take several batches.
    let n = (crate::tier::LOCATION_BATCH as u64) * 5 / 2;
    let store = StateStore::open_fresh(
        &dir,
        StoreMemory {
            run_bytes: n * 100,
            ..StoreMemory::default()
        },
    )
    .unwrap();
    let mut t = store.tier(0).unwrap();
    let k = |i: u64| RequestKey::from_parts(i, i.rotate_left(17));
    let items: Vec<_> = (0..n + 10)
        .map(|i| (k(i), rec(i as i64, i), i as i64))
        .collect();
    t.put(&items).unwrap();
    for i in (0..n + 10).step_by(997) {
        assert_eq!(t.get(k(i)).unwrap(), Some(rec(i as i64, i)), "key {i}");
    }
    let mut out = Vec::new();
    t.take_due(i64::MAX, usize::MAX, &mut out).unwrap();
    assert_eq!(out.len() as u64, n + 10);
    drop(t);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
