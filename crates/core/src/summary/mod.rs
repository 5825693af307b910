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
//! counts, minima, maxima and missing counts; up to floating-point rounding for mean and
//! variance (Chan et al.'s parallel update); and within the sketches' documented error bounds
//! for quantiles, frequencies and distinct counts.
//!
//! # Sketches
//! The sketches are Apache DataSketches' own (`datasketches` crate), so their serialized form
//! is the cross-language one and the error bounds are the published ones:
//! - quantiles: KLL with k = [`KLL_K`] = 256 (as whylogs). Normalized rank error, 99 %
//!   confidence, from the DataSketches formulas: ≈ 1.05 % single-sided (rank / quantile / CDF
//!   queries) and ≈ 1.31 % double-sided (PMF / differences of ranks). (k = 200 gives 1.33 % /
//!   1.65 %.)
//! - frequent items: the Misra–Gries based frequent-items sketch with a maximum map size of
//!   2^[`FREQUENT_LG_MAX`] = 1024 (lg_max_k 10, as whylogs). Counts are exact while fewer than
//!   0.75 · 1024 = 768 distinct values were seen; beyond that every estimate is within
//!   ε · N with ε = 3.5 / 1024 ≈ 0.34 % of the stream length N.
//! - distinct count: HyperLogLog (HLL_8) with lg_k = [`HLL_LG_K`] = 12: relative standard error
//!   ≈ 1.04 / √4096 ≈ 1.6 % (≈ 0.83 / √4096 ≈ 1.3 % while the HIP estimator applies, i.e.
//!   before any merge); exact-ish (coupon mode) below a few hundred distinct values.
//!
//! # Hot path
//! 20 features × 1M predictions/s is 20M updates/s, so an update must cost nanoseconds:
//! - feature names are interned once ([`FeatureInterner`], `&str` → `u16` without
//!   allocating) and a signature keeps its features in a `Vec` indexed by that id;
//! - categorical values are first counted exactly in a small per-feature staging table and
//!   pushed into the frequent-items and HLL sketches in batches (one sketch update per
//!   distinct value per batch, HLL being idempotent per value), so the cost per value is one
//!   short-string hash and compare;
//! - numeric values update the running moments and go into a small batch KLL sketch that is
//!   merged into the main one every 4096 values (a long-lived KLL sketch compacts every few
//!   updates; the batch sketch rarely does, and a merge moves whole levels).
//!
//! Non-finite numbers (NaN, ±∞) count as missing: KLL rejects NaN, and one infinity would
//! make mean and variance meaningless.
//!
//! # Serialization
//! [`SignatureSummary::to_bytes`] writes a compact, versioned binary form (feature names
//! spelled out, sketches in DataSketches' serialized form) meant for an Avro `bytes` field of
//! `ModelPartial`. [`SignatureSummary::from_bytes`] checks every length, count and invariant
//! and returns [`SummaryError`] on malformed input; it never panics.

mod categorical;
mod codec;
pub mod drift;
mod feature;
mod intern;
mod numeric;

pub use categorical::CategoricalSummary;
pub use codec::FORMAT_VERSION;
pub use feature::{FeatureKind, FeatureSummary, SignatureSummary};
pub(crate) use intern::same_bytes;
pub use intern::{FeatureId, FeatureInterner};
pub use numeric::{Kll, NumericSummary, KLL_PMF_ERROR, KLL_RANK_ERROR};

/// KLL parameter k of every numeric summary.
pub const KLL_K: u16 = 256;
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
