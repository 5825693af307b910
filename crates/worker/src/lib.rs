//! # driftwatch-worker
//!
//! The thin I/O shell around `driftwatch-core`: Kafka consumers and producers (rdkafka on
//! tokio), per-partition task state, offsets, topic checks. All decisions about joining and
//! detecting live in the core crate; this crate moves bytes, time and offsets.
//!
//! - [`settings`]: connection and topic settings (serde, `deny_unknown_fields`).
//! - [`clients`]: librdkafka configurations (range assignor, murmur2 partitioner, manual offsets).
//! - [`group_protocol`]: which consumer-group protocol (KIP-848 `consumer` or `classic`) members speak.
//! - [`changelog`]: the join state's compacted changelog topic: creation and restore.
//! - [`topics`]: start-up checks (topics exist, inputs co-partitioned).
//! - [`routing_sample`]: `check-config`'s sample of live input records, checked against their
//!   key's murmur2 partition.
//! - [`runtime`]: the stage runtime both stages run on: one loop, one exactly-once cycle, one
//!   rebalance hand-off; the hooks a stage implements.
//! - [`join`]: the join stage: predictions and ground truth in; partials and dead letters out.
//! - [`monitor`]: the monitor stage: partials in; drift, retrain and metrics records out.
//! - [`sources`]: the sources stage: Seldon Core 2 / KServe topics in; predictions and dead
//!   letters out.
//! - [`pipeline`]: the stages of a role (sources, join, monitor, or all) started and stopped as one.
//! - [`fault`]: named fault points for tests (only with the `fault-points` feature).
//! - [`error`]: [`WorkerError`], classified retryable or not.
//! - [`schema_registry`]: the HTTP client of a Confluent-compatible Schema Registry (writer
//!   schemas of framed payloads by id; basic auth, TLS).
//! - [`security`]: SASL (PLAIN, SCRAM) and TLS settings; secrets that never reach a log.
//! - [`handshake`]: a failed TLS handshake, explained by the setting to fix.
//! - [`prometheus`]: the [`prometheus::WorkerStatus`] a stage fills and its Prometheus rendering.
//! - [`status`]: the stages' state as the [`prometheus::WorkerStatus`] served over HTTP.
//! - [`http`]: `/metrics`, `/healthz` and `/readyz`.
//! - [`chart`]: inline SVG charts of the console and of the cli's HTML reports.
//! - [`console`]: the web console at `/`: models, accuracy, drift and events of this worker.

pub mod changelog;
pub mod chart;
pub mod client_memory;
pub mod clients;
pub mod console;
pub mod error;
pub mod fault;
pub mod group_protocol;
pub mod handshake;
pub mod http;
pub mod join;
pub mod join_progress;
pub mod monitor;
pub mod pipeline;
pub mod prometheus;
pub mod routing_sample;
pub mod runtime;
pub mod schema_registry;
pub mod security;
pub mod settings;
pub mod sources;
pub mod status;
pub mod topics;

pub use error::{Result, WorkerError};
