//! Arbitrary records of a join task's changelog (see `driftwatch_fuzz::records` for how the
//! input is cut into keys and values) folded as a restore does: a malformed record or state is
//! an error, never a panic, and a task that builds is usable.
#![no_main]

use driftwatch_core::join::changelog::ChangelogRestore;
use driftwatch_core::join::JoinConfig;
use driftwatch_fuzz::records;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut restore = ChangelogRestore::new();
    for (key, value) in records(data) {
        if restore.apply(key, value).is_err() {
            return;
        }
    }
    let _ = restore.into_task(JoinConfig::default());
});
