//! Arbitrary records of a join task's changelog (see `driftwatch_fuzz::records` for how the
//! input is cut into keys and values) replayed record by record, as a restore into the local
//! store streams them: straight into a task whose buffer keeps only four entries hot, the rest
//! going to a cold tier as they arrive. A malformed record or state is an error, never a
//! panic, and a task that finishes is usable: it is polled past every timeout.
#![no_main]

use driftwatch_core::join::changelog::ChangelogReplay;
use driftwatch_core::join::{JoinConfig, JoinTask, MemoryColdTier};
use driftwatch_fuzz::records;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut task) = JoinTask::new(JoinConfig::default()) else {
        return;
    };
    task.set_cold_tier(Box::new(MemoryColdTier::new()), 4);
    let mut replay = ChangelogReplay::new(task);
    for (key, value) in records(data) {
        if replay.apply(key, value).is_err() {
            return;
        }
    }
    if let Ok(mut task) = replay.finish() {
        task.poll(i64::MAX / 4, &mut |_| {});
    }
});
