//! Mergeable summaries of a model's inputs and outputs, and drift statistics between them.
//!
//! The join stage decodes every prediction and pre-aggregates, per (model, version, time
//! bucket), the statistical *signature* of what the model saw and said
//! ([`SignatureSummary`]). The monitor stage merges those partial signatures into windows and
//! compares a current window with a reference one ([`drift`]) to see data drift and
//! prediction drift before any label arrives.
//!
//! # Monoids
//! Every summary is a monoid: `Default` is the identity and `merge(&mut self, &other)` is
//! associative, so partials can be merged in any grouping (per task, per window, across
//! restarts) and "summarize the halves, then merge" equals "summarize the whole": exactly for
//! counts, minima, maxima, missing counts, the numeric distinct-value sample and the
//! categorical counts (bit for bit: verdicts do not depend on batching, flush timing or
//! restarts); up to floating-point rounding for mean and variance (Chan et al.'s parallel
//! update). Only the display sketches of a categorical summary past 1024 categories (frequent
//! items, HLL) depend on the order; no verdict reads them (see [`CategoricalSummary`]).
//!
//! # Sketches
//! - numeric distributions: a [`DistinctSample`], the k = [`SAMPLE_K`] = 2048 distinct values
//!   of smallest (fixed, seedless) hash with their exact counts. Exact while a stream has at
//!   most k distinct values; beyond, its weighted CDF is within the DKW bound
//!   ε = √(ln(2/0.01) / (2 n')) of the stream's at 99 % confidence, n' = Kish's effective
//!   size (Σc)² / Σc² of the kept counts (≈ 2048 for continuous data: ε ≈ 3.6 %). Unlike a
//!   randomized quantile sketch (KLL), it is a pure function of the stream's values, so every
//!   merge grouping gives the same sample.
//! - categorical distributions: every category with its exact count while a summary has at
//!   most [`CATEGORY_EXACT_MAX`] = 1024 distinct values; beyond, exact counts of
//!   [`CATEGORY_BUCKETS`] = 1024 buckets by a fixed, seedless hash ([`category_bucket`]).
//!   Which of the two a summary holds depends only on its distinct set, and both are sums, so
//!   the state is a pure function of the multiset of values; the drift tests run on the
//!   category table, or on the bucket table when either side is bucketed (a coarsening: a
//!   valid two-sample test, blind only to shifts between categories of one bucket).
//! - frequent items, for display past 1024 categories: Apache DataSketches' Misra–Gries based
//!   frequent-items sketch with a maximum map size of 2^[`FREQUENT_LG_MAX`] = 1024 (lg_max_k
//!   10, as whylogs): every estimate within ε · N, ε = 3.5 / 1024 ≈ 0.34 % of the stream
//!   length N; its content depends on the update order once it purged.
//! - distinct count: exact below 1024 categories; beyond, DataSketches' HyperLogLog (HLL_8)
//!   with lg_k = [`HLL_LG_K`] = 12:
//!   relative standard error ≈ 1.04 / √4096 ≈ 1.6 % (≈ 0.83 / √4096 ≈ 1.3 % while the HIP
//!   estimator applies, i.e. before any merge); exact-ish (coupon mode) below a few hundred
//!   distinct values. Reported only, never part of a verdict.
//!
//! Memory per categorical summary: at most 1024 names with their counts while exact; once
//! bucketed, 8 KiB of bucket counts plus the two sketches (the exact table is freed).
//!
//! # Hot path
//! 20 features × 1M predictions/s is 20M updates/s, so an update must cost nanoseconds:
//! - feature names are interned once ([`FeatureInterner`], `&str` → `u16` without
//!   allocating) and a signature keeps its features in a `Vec` indexed by that id;
//! - categorical values are first counted exactly in a small per-feature staging table and
//!   flushed into the counts in batches (one table or bucket update, and past 1024 categories
//!   one sketch update, per distinct value per batch), so the cost per value is one
//!   short-string hash and compare;
//! - numeric values update the running moments, are hashed (three multiplies), and go into
//!   an unsorted buffer unless a full sample already rejects their hash; the buffer is sorted
//!   and folded into the sample every 2048 values.
//!
//! Non-finite numbers (NaN, ±∞) count as missing: one infinity would make mean and variance
//! meaningless, and a NaN has no place in an order.
//!
//! # Serialization
//! [`SignatureSummary::to_bytes`] writes a compact, versioned binary form (feature names
//! spelled out, the numeric sample and the exact categories in their canonical order, bucket
//! counts, the display sketches in DataSketches' serialized form) meant for an Avro `bytes`
//! field of
//! `ModelPartial`. [`SignatureSummary::from_bytes`] checks every length, count and invariant
//! and returns [`SummaryError`] on malformed input; it never panics.

mod categorical;
mod codec;
pub mod drift;
mod feature;
mod intern;
mod numeric;
mod sample;

pub use categorical::{category_bucket, CategoricalSummary};
pub use codec::FORMAT_VERSION;
pub use feature::{FeatureKind, FeatureSummary, SignatureSummary};
pub(crate) use intern::same_bytes;
pub use intern::{FeatureId, FeatureInterner};
pub use numeric::{dkw_bound, NumericSummary};
pub use sample::{
    value_hash, DistinctSample, Entry as SampleEntry, SortedSample, PENDING_MAX, SAMPLE_K,
};
/// Most distinct categories a [`CategoricalSummary`] counts one by one; beyond, it counts
/// per hash bucket.
pub const CATEGORY_EXACT_MAX: usize = 1024;
/// Buckets of a [`CategoricalSummary`] past [`CATEGORY_EXACT_MAX`] categories (a power of
/// two; see [`category_bucket`]).
pub const CATEGORY_BUCKETS: usize = 1024;
/// lg of the frequent-items sketch's maximum map size.
pub const FREQUENT_LG_MAX: u8 = 10;
/// lg_k of the HLL distinct-count sketch.
pub const HLL_LG_K: u8 = 12;

/// Largest count a decoded summary may carry. Far above any real bucket, and low enough that
/// merging many decoded summaries cannot overflow the sketches' `u64` stream weights.
pub const MAX_COUNT: u64 = 1 << 48;

/// Errors of the summary module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    /// The feature-name interner is full.
    #[error("feature id space exhausted ({limit} distinct feature names)")]
    FeaturesExhausted { limit: usize },
    /// A serialized summary is malformed, truncated or of an unknown version.
    #[error("malformed summary bytes: {0}")]
    Malformed(String),
    /// A serialized summary has a version this code does not read.
    #[error("unsupported summary format version {0}")]
    UnsupportedVersion(u8),
}

impl SummaryError {
    pub(crate) fn malformed(msg: impl Into<String>) -> Self {
        SummaryError::Malformed(msg.into())
    }
}
