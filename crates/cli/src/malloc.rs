//! The C allocator's arena count, set before any thread starts.
//!
//! glibc's malloc gives each thread that meets contention an arena of its own, up to 8 per
//! core, and an arena keeps what its threads freed for reuse by them. A worker runs
//! librdkafka's threads (several per client), tokio's and the local store's: under overload
//! the fetched records are allocated by librdkafka's broker threads and freed by the loop, and
//! the arenas held far more than was in use (`malloc_stats`: 1.12 GB taken for 0.64 GB in
//! use). Two arenas, as `MALLOC_ARENA_MAX=2` would set, brought the peak resident memory of
//! a 30 s overload from 1 779 to 1 224 MiB (BENCHMARKS.md, *Overload*). An explicit
//! `MALLOC_ARENA_MAX` in the environment still wins; other C libraries are left alone.

/// Arenas of glibc's malloc when the environment does not say.
const ARENAS: i32 = 2;

/// Limits glibc's malloc arenas; call first in `main`, before any thread exists.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    set_arena_max(ARENAS);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // One libc call with plain integers, before any other thread runs.
fn set_arena_max(n: i32) {
    // SAFETY: mallopt takes two integers and changes a malloc parameter; no memory is
    // passed, and no other thread allocates yet.
    let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_n: i32) {}
