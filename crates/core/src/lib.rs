//! # driftwatch-core
//!
//! The pure domain of driftwatch. Everything here is deterministic: no Kafka, no async runtime,
//! no clocks, no files. Time is *event time* handed in by the caller, so every piece can be unit
//! and property tested, replayed from a changelog, and benchmarked without a broker.
//!
//! - [`record`]: owned records of every topic (the wire contract is `schemas/*.avsc`).
//! - [`join`]: the join buffer and the two-input join task (event-time watermarks, expiry,
//!   accounting).
//! - [`detect`]: streaming change detectors (ADWIN, DDM, EDDM, Page-Hinkley, HDDM).
//! - [`monitor`]: per-model windows, metrics, performance-decay detection and retrain advice.
//! - [`pairing`]: the request and the response of one inference, joined by id into one
//!   prediction's worth of input (bounded event-time wait, every half accounted).
//! - [`summary`]: mergeable feature/prediction summaries (distinct-value samples, frequent
//!   items, HLL) and drift statistics between them.

pub mod backtest;
pub mod detect;
pub mod join;
pub mod monitor;
pub mod pairing;
pub mod record;
pub mod summary;

pub use record::*;
