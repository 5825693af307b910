//! Named fault points, for tests that stop a worker at a chosen moment.
//!
//! Compiled in only with the `fault-points` feature (off by default; the integration tests
//! build the `driftwatch` binary with it). A test sets `DRIFTWATCH_FAULT=<point>` or
//! `<point>@<n>`: the `n`-th time (default the first) the process reaches that point, it
//! prints `driftwatch fault point reached: <point>` to stderr and sends itself SIGKILL — no
//! destructor, no flush, no commit, no leaving the group. The line tells the test where the
//! process died.
//!
//! | point | where |
//! |---|---|
//! | `transaction.records_sent` | a transaction is open and this commit's records were produced into it |
//! | `transaction.offsets_sent` | between `send_offsets_to_transaction` and `commit_transaction` |
//! | `dead_letter.sent` | a dead letter was produced into the open transaction |
//! | `restore.record` | a state record was applied during a changelog restore |
//! | `rebalance.restored` | an assignment's state is restored, the assignment not yet taken |
//!
//! Failure points do not kill: from the `n`-th time the process reaches an armed one on,
//! [`fails`] says so and the caller fails as the real fault would.
//!
//! | failure point | what fails |
//! |---|---|
//! | `state.write` | every write to the join's local state store, as on a full disk (`ENOSPC`) |
//!
//! Without the feature [`point`] and [`fails`] are empty inline functions.

/// Marks a fault point (see the module docs).
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn point(_name: &'static str) {}

/// Whether an armed failure point is due (see the module docs).
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn fails(_name: &'static str) -> bool {
    false
}

#[cfg(feature = "fault-points")]
static HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The point `DRIFTWATCH_FAULT` arms and from which hit on.
#[cfg(feature = "fault-points")]
fn armed() -> &'static Option<(String, u64)> {
    static ARMED: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    ARMED.get_or_init(|| {
        let spec = std::env::var("DRIFTWATCH_FAULT").ok()?;
        let (point, nth) = match spec.split_once('@') {
            Some((p, n)) => (p.to_string(), n.trim().parse().unwrap_or(1)),
            None => (spec, 1),
        };
        Some((point.trim().to_string(), nth.max(1)))
    })
}

/// Whether an armed failure point is due (see the module docs).
#[cfg(feature = "fault-points")]
pub fn fails(name: &'static str) -> bool {
    use std::sync::atomic::Ordering;
    match armed() {
        Some((armed, nth)) if armed == name => HITS.fetch_add(1, Ordering::SeqCst) + 1 >= *nth,
        _ => false,
    }
}

/// Marks a fault point (see the module docs).
#[cfg(feature = "fault-points")]
pub fn point(name: &'static str) {
    use std::sync::atomic::Ordering;
    if let Some((armed, nth)) = armed() {
        if armed == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            eprintln!("driftwatch fault point reached: {name}");
            // SIGKILL, as a test's `kill -9` would; abort (SIGABRT) only if that fails.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &std::process::id().to_string()])
                .status();
            std::process::abort();
        }
    }
}
