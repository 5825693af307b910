//! Memory per pending prediction at 10M pending entries.
//!
//! Inserts 10M distinct pending predictions (no watermark, so none expires) into a
//! `JoinBuffer` grown the ordinary way (no pre-sizing), then reports bytes per entry from the
//! process RSS delta (`/proc/self/statm`) and from the table's own allocation size.
//!
//! Run: `cargo bench -p driftwatch-core --bench join_memory`

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use driftwatch_core::join::{
    ClassId, JoinBuffer, ModelVersionId, Predicted, PredictionIn, RequestKey,
};

const N: u64 = 10_000_000;
const BASE: i64 = 1_760_000_000_000;

/// Resident set size in bytes, from `/proc/self/statm` (Linux).
#[allow(
    clippy::disallowed_methods,
    reason = "the process's resident memory is what this bench measures"
)]
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Runs `f` and returns its wall-clock time. The one clock read of this harness: the core
/// itself may not read clocks (crates/core/clippy.toml).
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "a timing harness measures wall-clock time"
)]
fn timed(f: impl FnOnce()) -> Duration {
    let start = std::time::Instant::now();
    f();
    start.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is ignored.
    let before = rss_bytes();
    let mut buffer = JoinBuffer::new(86_400_000, 86_400_000, 86_400_000 / 8);
    let mut events = 0u64;
    let elapsed = timed(|| {
        for i in 0..N {
            let p = PredictionIn {
                key: RequestKey::from_request_id(i.to_le_bytes()),
                model: ModelVersionId(1 + (i % 8) as u16),
                // 10M predictions over ~2.8 h of event time.
                time: BASE + (i / 1_000) as i64,
                predicted: Predicted::Class(ClassId((i % 5) as u32)),
                score: Some(0.5),
            };
            buffer.on_prediction(&p, &mut |_| events += 1);
        }
    });
    let after = rss_bytes();
    assert_eq!(events, 0, "nothing may be classified while pending");
    assert_eq!(buffer.len() as u64, N);
    let stats = buffer.stats();
    assert_eq!(stats.pending_predictions as u64, N);

    let alloc = buffer.allocation_size() as f64;
    println!("pending entries:            {N}");
    println!(
        "insert time:                {:.2} s ({:.1} M inserts/s)",
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "table allocation:           {:.1} MiB = {:.1} B/entry",
        alloc / (1 << 20) as f64,
        alloc / N as f64
    );
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "process RSS delta:          {:.1} MiB = {:.1} B/entry",
            (a.saturating_sub(b)) as f64 / (1 << 20) as f64,
            a.saturating_sub(b) as f64 / N as f64
        ),
        _ => println!("process RSS delta:          unavailable (/proc/self/statm not readable)"),
    }
    println!("target:                     <= 64 B/entry");
}
