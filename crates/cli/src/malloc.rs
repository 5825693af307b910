//! The process's allocator: jemalloc, for Rust's allocations and for the C libraries' alike.
//!
//! A worker's librdkafka threads allocate every fetched record (an op and its decompressed
//! batch) and the stage's loop frees it, on another thread. glibc's malloc serves that through
//! arenas guarded by locks: with up to 8 arenas per core the freed fetches stayed in the arenas
//! of the threads that allocated them (`malloc_stats`: 1.12 GB taken for 0.64 GB in use under
//! overload), and with two arenas the loop and librdkafka's threads waited on each other's
//! arena locks (futex waits in a perf profile of the join at half load). jemalloc gives each
//! thread a cache and returns freed pages to the system on a timer. With
//! `unprefixed_malloc_on_supported_platforms` its `malloc` and `free` are the process's own,
//! so librdkafka's and the store's C code use it too (docs/OPERATIONS.md, *The allocator*).

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
