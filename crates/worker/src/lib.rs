//! # driftwatch-worker
//!
//! The thin I/O shell around `driftwatch-core`: Kafka consumers and producers (rdkafka on
//! tokio), per-partition task state, offsets, topic checks. All decisions about joining and
//! detecting live in the core crate; this crate moves bytes, time and offsets.
//!
//! - [`settings`]: connection and topic settings (serde, `deny_unknown_fields`).
//! - [`clients`]: librdkafka configurations (range assignor, murmur2 partitioner, manual offsets).
//! - [`topics`]: start-up checks (topics exist, inputs co-partitioned).
//! - [`error`]: [`WorkerError`], classified retryable or not.

pub mod clients;
pub mod error;
pub mod join_stage;
pub mod settings;
pub mod topics;

pub use error::{Result, WorkerError};
