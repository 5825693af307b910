//! The reference a model version's current performance is compared with.
//!
//! Two sources:
//! - **learned**: the first `samples` labeled outcomes (default 1000) of the version, taken from
//!   matured buckets in bucket order after an optional warm-up (default none) counted from the
//!   version's first matured bucket. Buckets are taken whole, so the baseline may hold a bucket's
//!   worth more than `samples`. Once complete it is frozen: a slow decay must not drag the
//!   reference down with it.
//! - **external**: a reference set by the caller as a [`ModelPartial`] whose bucket spans the
//!   reference period (`bucket_start` .. `bucket_start + bucket_width_ms`), e.g. a validation
//!   set's outcomes. It is frozen at once and replaces a learned baseline.

use serde::{Deserialize, Serialize};

use crate::{ModelPartial, TimestampMs};

use super::metrics::Aggregate;
use super::window::MaturedBucket;

/// How a learned baseline is gathered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Labeled outcomes to learn from. Default 1000: enough for the accuracy's standard error to
    /// be about 1 point at 90 % accuracy, so the z-test is limited by the window, not the
    /// baseline.
    pub samples: u64,
    /// `warmup` (formerly `warmup_ms`): event time skipped after the version's first matured
    /// bucket before learning starts. Default `0s`: a new version is assumed healthy from its
    /// first prediction; set it when traffic ramps up (canary) or caches warm up.
    #[serde(
        rename = "warmup",
        alias = "warmup_ms",
        with = "crate::monitor::duration::warmup"
    )]
    pub warmup_ms: i64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            samples: 1000,
            warmup_ms: 0,
        }
    }
}

/// Where a baseline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSource {
    Learned,
    External,
}

/// A model version's baseline, possibly still being learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    config: BaselineConfig,
    source: BaselineSource,
    first_bucket: Option<TimestampMs>,
    aggregate: Aggregate,
    start: Option<TimestampMs>,
    end: Option<TimestampMs>,
    frozen: bool,
}

impl Baseline {
    /// A baseline to be learned from the stream.
    pub fn learned(config: BaselineConfig) -> Self {
        Baseline {
            config,
            source: BaselineSource::Learned,
            first_bucket: None,
            aggregate: Aggregate::default(),
            start: None,
            end: None,
            frozen: false,
        }
    }

    /// A frozen baseline from a reference the caller supplies.
    pub fn external(reference: &ModelPartial) -> Self {
        Baseline {
            config: BaselineConfig::default(),
            source: BaselineSource::External,
            first_bucket: Some(reference.bucket_start),
            aggregate: Aggregate::from_partial(reference),
            start: Some(reference.bucket_start),
            end: Some(
                reference
                    .bucket_start
                    .saturating_add(reference.bucket_width_ms.max(0)),
            ),
            frozen: true,
        }
    }

    /// Offers a matured bucket; taken while learning, ignored once frozen. Returns whether the
    /// baseline became complete with this bucket.
    pub fn offer(&mut self, bucket: &MaturedBucket) -> bool {
        if self.frozen {
            return false;
        }
        let first = *self.first_bucket.get_or_insert(bucket.start);
        if bucket.start < first.saturating_add(self.config.warmup_ms) {
            return false;
        }
        if bucket.aggregate.labeled() == 0 {
            return false;
        }
        self.aggregate.add_aggregate(&bucket.aggregate);
        self.start = Some(self.start.map_or(bucket.start, |s| s.min(bucket.start)));
        self.end = Some(self.end.map_or(bucket.end, |e| e.max(bucket.end)));
        self.frozen = self.aggregate.labeled() >= self.config.samples;
        self.frozen
    }

    /// Complete (frozen) and usable.
    pub fn is_ready(&self) -> bool {
        self.frozen && self.aggregate.labeled() > 0
    }

    /// Where it came from.
    pub fn source(&self) -> BaselineSource {
        self.source
    }

    /// Its sums.
    pub fn aggregate(&self) -> &Aggregate {
        &self.aggregate
    }

    /// Labeled outcomes it holds.
    pub fn labeled(&self) -> u64 {
        self.aggregate.labeled()
    }

    /// Event-time bounds `[start, end)` of what it was learned from (0, 0 when empty).
    pub fn bounds(&self) -> (TimestampMs, TimestampMs) {
        (self.start.unwrap_or(0), self.end.unwrap_or(0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::join::partial::empty_partial;
    use crate::ConfusionCell;

    fn bucket(minute: i64, n: u64) -> MaturedBucket {
        let mut p = empty_partial("m", "v", minute * 60_000, 60_000, 0);
        p.confusion = vec![ConfusionCell {
            predicted: "a".into(),
            actual: "a".into(),
            count: n,
        }];
        MaturedBucket {
            start: p.bucket_start,
            end: p.bucket_start + 60_000,
            aggregate: Aggregate::from_partial(&p),
        }
    }

    #[test]
    fn learns_after_warmup_then_freezes() {
        let mut b = Baseline::learned(BaselineConfig {
            samples: 250,
            warmup_ms: 120_000,
        });
        assert!(!b.offer(&bucket(10, 100)));
        assert!(!b.offer(&bucket(11, 100)));
        assert_eq!(b.labeled(), 0, "warm-up buckets taken");
        assert!(!b.offer(&bucket(12, 100)));
        assert!(!b.offer(&bucket(13, 100)));
        assert!(!b.is_ready());
        assert!(b.offer(&bucket(14, 100)));
        assert!(b.is_ready());
        assert!(!b.offer(&bucket(15, 100)));
        assert_eq!(b.labeled(), 300);
        assert_eq!(b.bounds(), (12 * 60_000, 15 * 60_000));
        assert_eq!(b.source(), BaselineSource::Learned);
    }

    #[test]
    fn external_is_frozen_at_once() {
        let mut p = empty_partial("m", "v", 1_000, 9_000, 0);
        p.regression.count = 10;
        p.regression.squared_error_sum = 40.0;
        let b = Baseline::external(&p);
        assert!(b.is_ready());
        assert_eq!(b.bounds(), (1_000, 10_000));
        assert_eq!(b.source(), BaselineSource::External);
        assert_eq!(b.labeled(), 10);
    }
}
